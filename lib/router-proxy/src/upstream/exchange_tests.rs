//! The HTTP/1.1 pool against upstreams scripted byte by byte on 127.0.0.1:
//! what a real server may do that a well-behaved test server never does
//! (answer early, close a kept-alive connection, send interim answers,
//! trailers, framing that cannot be trusted).

use std::{
    collections::VecDeque,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{Method, Request, Response, uri::Authority};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

use super::{UpstreamBody, pool::Http1Pool};

/// What the scripted upstream does with the `n`th request on a connection.
enum Answer {
    Bytes(&'static [u8]),
    /// Close the connection without answering.
    Close,
}

/// An upstream that reads each request (head and body) and answers it with
/// `script(connection, request on it, request text)`; counts connections.
async fn scripted(script: fn(usize, usize, &str) -> Answer) -> (Authority, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let connection = count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for n in 0.. {
                    let Some(request) = read_request(&mut stream, &mut buf).await else { return };
                    match script(connection, n, &request) {
                        Answer::Bytes(b) => stream.write_all(b).await.unwrap(),
                        Answer::Close => return,
                    }
                }
            });
        }
    });
    (authority, accepted)
}

/// One request's text, its body decoded as sent (Content-Length or chunked, as is).
async fn read_request(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    let mut chunk = [0u8; 16 * 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).to_ascii_lowercase();
            let body_end =
                if let Some(len) = head.split("content-length: ").nth(1).and_then(|r| r.split("\r\n").next()?.parse::<usize>().ok()) {
                    (buf.len() >= end + 4 + len).then_some(end + 4 + len)
                } else if head.contains("transfer-encoding: chunked") {
                    buf.windows(5).position(|w| w == b"0\r\n\r\n").map(|p| p + 5)
                } else {
                    Some(end + 4)
                };
            if let Some(body_end) = body_end {
                let request = String::from_utf8_lossy(&buf[..body_end]).into_owned();
                buf.drain(..body_end);
                return Some(request);
            }
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn new_pool() -> Arc<Http1Pool> {
    Http1Pool::new(HttpConnector::new(), Duration::from_secs(60), 8)
}

fn request<B>(method: Method, authority: &Authority, body: B) -> Request<B> {
    Request::builder().method(method).uri(format!("http://{authority}/")).body(body).unwrap()
}

async fn collect(r: Response<UpstreamBody>) -> (Bytes, Option<http::HeaderMap>) {
    let collected = r.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned();
    (collected.to_bytes(), trailers)
}

#[tokio::test]
async fn chunked_responses_keep_their_trailers_and_their_connection() {
    let (authority, accepted) = scripted(|_, _, _| {
        Answer::Bytes(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\nx-t: 1\r\n\r\n")
    })
    .await;
    let pool = new_pool();
    for _ in 0..3 {
        let r = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
        assert!(r.headers().contains_key("transfer-encoding"), "framing headers are the response's, for the gateway to strip");
        let (data, trailers) = collect(r).await;
        assert_eq!(data, "abcde");
        assert_eq!(trailers.unwrap()["x-t"], "1");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn interim_answers_are_read_past() {
    let (authority, _) = scripted(|_, _, _| {
        Answer::Bytes(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nlink: </a>\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
        )
    })
    .await;
    let r = new_pool().send(request(Method::POST, &authority, Full::new(Bytes::from_static(b"hi")))).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(collect(r).await.0, "ok");
}

#[tokio::test]
async fn head_and_no_content_answers_have_no_body_and_keep_the_connection() {
    let (authority, accepted) = scripted(|_, _, request| {
        Answer::Bytes(if request.starts_with("HEAD") {
            b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n"
        } else {
            b"HTTP/1.1 204 No Content\r\n\r\n"
        })
    })
    .await;
    let pool = new_pool();
    for method in [Method::HEAD, Method::GET, Method::HEAD] {
        let r = pool.send(request(method, &authority, Empty::new())).await.unwrap();
        assert!(r.body().is_end_stream());
        assert_eq!(collect(r).await.0, "");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(pool.idle_count(), 1);
}

#[tokio::test]
async fn a_response_delimited_by_close_is_read_to_the_end_and_not_reused() {
    let (authority, accepted) = scripted(|_, _, _| Answer::Bytes(b"HTTP/1.0 200 OK\r\n\r\nuntil the end")).await;
    let pool = new_pool();
    // The scripted server keeps the connection open after writing; the body ends when it closes.
    let r = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
    let mut body = r.into_body();
    let first = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "until the end");
    assert_eq!(pool.idle_count(), 0);
    drop(body);
    let _ = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_kept_alive_connection_closed_under_a_request_sends_it_on_a_new_one() {
    // The first connection answers once, then closes on the next request without answering.
    let (authority, accepted) = scripted(|connection, n, _| match (connection, n) {
        (0, 1) => Answer::Close,
        _ => Answer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    })
    .await;
    let pool = new_pool();
    for _ in 0..2 {
        let r = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
        assert_eq!(collect(r).await.0, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 2);

    // A POST with a body is not sent twice: the upstream may have acted on it.
    let (authority, _) = scripted(|connection, n, _| match (connection, n) {
        (0, 1) => Answer::Close,
        _ => Answer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    })
    .await;
    let pool = new_pool();
    let first = pool.send(request(Method::POST, &authority, Full::new(Bytes::from_static(b"a")))).await.unwrap();
    let _ = collect(first).await;
    let second = pool.send(request(Method::POST, &authority, Full::new(Bytes::from_static(b"a")))).await;
    assert!(second.is_err_and(|e| !e.is_connect()));
}

#[tokio::test]
async fn ambiguous_or_broken_answers_are_errors_and_the_next_request_works() {
    let (authority, _) = scripted(|connection, _, _| match connection {
        0 => Answer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"),
        1 => Answer::Bytes(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n"),
        2 => Answer::Bytes(b"not http\r\n\r\n"),
        _ => Answer::Bytes(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
    })
    .await;
    let pool = new_pool();
    assert!(pool.send(request(Method::GET, &authority, Empty::new())).await.is_err(), "both framing headers");
    let broken = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
    assert!(broken.into_body().collect().await.is_err(), "a malformed chunk");
    assert!(pool.send(request(Method::GET, &authority, Empty::new())).await.is_err(), "not HTTP");
    let r = pool.send(request(Method::GET, &authority, Empty::new())).await.unwrap();
    assert_eq!(collect(r).await.0, "ok");
    assert_eq!(pool.idle_count(), 1, "only the good connection was kept");
}

/// A body of unknown length, one frame per part.
struct Parts(VecDeque<Bytes>);

impl Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Poll::Ready(self.get_mut().0.pop_front().map(|b| Ok(Frame::data(b))))
    }
}

#[tokio::test]
async fn bodies_of_unknown_length_go_chunked_and_known_ones_with_their_length() {
    let (authority, _) = scripted(|_, _, request| {
        let chunked = request.contains("transfer-encoding: chunked\r\n\r\n5\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\n\r\n");
        let sized = request.contains("content-length: 3\r\n\r\nabc");
        Answer::Bytes(if chunked || sized {
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        } else {
            b"HTTP/1.1 400 Bad\r\ncontent-length: 0\r\n\r\n"
        })
    })
    .await;
    let parts = Parts(["hello", " ", "world"].into_iter().map(Bytes::from).collect());
    let r = new_pool().send(request(Method::POST, &authority, parts)).await.unwrap();
    assert_eq!(r.status(), 200, "chunked on the wire");
    let r = new_pool().send(request(Method::PUT, &authority, Full::new(Bytes::from_static(b"abc")))).await.unwrap();
    assert_eq!(r.status(), 200, "content-length on the wire");
}

#[tokio::test]
async fn an_answer_before_the_body_is_sent_ends_the_upload() {
    // The upstream answers after the head and never reads the 64 MiB body.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
    tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            stream.read_exact(&mut byte).await.unwrap();
            head.push(byte[0]);
        }
        stream.write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 0\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let pool = new_pool();
    let body = Full::new(Bytes::from(vec![b'x'; 64 << 20]));
    let r = tokio::time::timeout(Duration::from_secs(10), pool.send(request(Method::POST, &authority, body))).await.unwrap().unwrap();
    assert_eq!(r.status(), 413);
    let _ = collect(r).await;
    assert_eq!(pool.idle_count(), 0, "a connection with half a request on it is not reused");
}
