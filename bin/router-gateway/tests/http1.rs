//! The gateway's own HTTP/1.x server, as a client on the wire sees it:
//! `Expect: 100-continue`, chunked uploads with trailers, keep-alive after an
//! answer that did not need the upload, HEAD, HTTP/1.0 keep-alive, and the
//! framing of a response whose length the upstream did not say.

use std::time::Duration;

use router_tests::{
    backend::{raw_backend, start_backends},
    gateway::{GatewayProcess, attachment, route, service, service_on, vpc},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

/// One client connection and the bytes read from it but not yet taken.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn open(gw: &GatewayProcess) -> Self {
        Self { stream: TcpStream::connect(gw.addr).await.unwrap(), buf: Vec::new() }
    }

    async fn send(&mut self, raw: &[u8]) {
        self.stream.write_all(raw).await.unwrap();
    }

    async fn fill(&mut self) -> usize {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut chunk)).await.expect("an answer in time").unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n
    }

    /// The next response head (lowercased), once it is all there.
    async fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end + 4]).to_ascii_lowercase();
                self.buf.drain(..end + 4);
                return head;
            }
            assert!(self.fill().await > 0, "closed before a response head: {:?}", String::from_utf8_lossy(&self.buf));
        }
    }

    /// The next response with a Content-Length: its head and body.
    async fn response(&mut self) -> (String, String) {
        let head = self.head().await;
        let length: usize = field(&head, "content-length").and_then(|v| v.parse().ok()).expect("content-length");
        while self.buf.len() < length {
            assert!(self.fill().await > 0, "closed inside a body");
        }
        let body = String::from_utf8_lossy(&self.buf[..length]).into_owned();
        self.buf.drain(..length);
        (head, body)
    }

    /// Everything until the gateway closes the connection.
    async fn rest(&mut self) -> String {
        while self.fill().await > 0 {}
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }
}

fn field<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':')).map(str::trim)
}

fn status(head: &str) -> u16 {
    head[9..12].parse().expect("a status code")
}

async fn echo_gateway() -> (GatewayProcess, Vec<router_tests::backend::Backend>) {
    let b = start_backends(&["h1"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0]], "HTTP"),
        route("r", "  hostnames: [echo.example]\n  destinations: [{vpcServiceRef: {name: svc}}]"),
    ]
    .concat();
    (GatewayProcess::start(BIN, &config, &[]).await, b)
}

#[tokio::test]
async fn expect_100_continue_is_answered_before_the_body_is_sent() {
    let (gw, _b) = echo_gateway().await;
    let mut c = Conn::open(&gw).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: echo.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n").await;
    let interim = c.head().await;
    assert!(interim.starts_with("http/1.1 100 continue"), "{interim}");
    c.send(b"hello").await;
    let (head, body) = c.response().await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(body.contains("\"body_len\":5"), "the body reached the backend: {body}");
}

#[tokio::test]
async fn chunked_uploads_reach_the_backend_and_the_connection_stays_open() {
    let (gw, b) = echo_gateway().await;
    let mut c = Conn::open(&gw).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: echo.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n3;ext=1\r\nabc\r\n0\r\nx-sum: 8\r\n\r\n")
        .await;
    let (head, body) = c.response().await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(body.contains("\"body_len\":8"), "{body}");
    // The next request on the same connection, pipelined behind a CRLF some clients send after a body.
    c.send(b"\r\nGET /again HTTP/1.1\r\nHost: echo.example\r\n\r\n").await;
    let (head, body) = c.response().await;
    assert_eq!(status(&head), 200, "{head}");
    assert!(body.contains("\"path\":\"/again\""), "{body}");
    assert_eq!(b[0].hits.load(std::sync::atomic::Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_upload_the_answer_did_not_need_is_drained_and_the_connection_kept() {
    let (gw, b) = echo_gateway().await;
    let mut c = Conn::open(&gw).await;
    // No route for this host: 404 without reading the body, which is then drained.
    c.send(b"POST /up HTTP/1.1\r\nHost: nowhere.example\r\nContent-Length: 10\r\n\r\n0123456789").await;
    let (head, _) = c.response().await;
    assert_eq!(status(&head), 404, "{head}");
    assert_ne!(field(&head, "connection"), Some("close"), "{head}");
    c.send(b"GET /next HTTP/1.1\r\nHost: echo.example\r\n\r\n").await;
    let (head, body) = c.response().await;
    assert_eq!(status(&head), 200, "the body's bytes were not read as a request: {head}");
    assert!(body.contains("\"path\":\"/next\""), "{body}");
    assert_eq!(b[0].hits.load(std::sync::atomic::Ordering::SeqCst), 1);

    // A chunked upload that never ends is not waited for: the answer, then the close.
    let mut c = Conn::open(&gw).await;
    c.send(b"POST /up HTTP/1.1\r\nHost: nowhere.example\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n").await;
    let (head, _) = c.response().await;
    assert_eq!(status(&head), 404, "{head}");
    assert_eq!(c.rest().await, "", "closed after the answer, nothing more written");
}

#[tokio::test]
async fn head_and_http_1_0_keep_alive() {
    let (gw, _b) = echo_gateway().await;
    let mut c = Conn::open(&gw).await;
    c.send(b"HEAD /bytes/100 HTTP/1.1\r\nHost: echo.example\r\n\r\n").await;
    let head = c.head().await;
    assert_eq!((status(&head), field(&head, "content-length")), (200, Some("100")), "{head}");
    assert!(field(&head, "date").is_some(), "a Date is added: {head}");
    c.send(b"GET /bytes/3 HTTP/1.1\r\nHost: echo.example\r\n\r\n").await;
    let (head, body) = c.response().await;
    assert_eq!((status(&head), body.as_str()), (200, "xxx"), "no body followed the HEAD answer: {head}");

    let mut c = Conn::open(&gw).await;
    c.send(b"GET /bytes/2 HTTP/1.0\r\nHost: echo.example\r\nConnection: keep-alive\r\n\r\n").await;
    let (head, _) = c.response().await;
    assert!(head.starts_with("http/1.0 200"), "{head}");
    assert_eq!(field(&head, "connection"), Some("keep-alive"), "{head}");
    c.send(b"GET /bytes/2 HTTP/1.0\r\nHost: echo.example\r\n\r\n").await;
    let (head, _) = c.response().await;
    assert_eq!(field(&head, "connection"), Some("close"), "{head}");
    assert_eq!(c.rest().await, "", "an HTTP/1.0 request without keep-alive closes");
}

#[tokio::test]
async fn a_body_of_unknown_length_is_chunked_for_http_1_1_and_close_delimited_for_http_1_0() {
    // An upstream that says no length and ends its body by closing.
    let upstream = raw_backend("127.0.0.1:0".parse().unwrap(), |mut stream| async move {
        let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nconnection: close\r\n\r\nhello, world").await;
    })
    .await;
    let config = [
        vpc("raw-vpc"),
        attachment("raw-a", "raw-vpc", &[upstream.ip()], true, "raw"),
        service("raw", "raw", upstream.port(), "HTTP"),
        route("raw", "  destinations: [{vpcServiceRef: {name: raw}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;

    let mut c = Conn::open(&gw).await;
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let head = c.head().await;
    assert_eq!(field(&head, "transfer-encoding"), Some("chunked"), "{head}");
    while !c.buf.ends_with(b"0\r\n\r\n") {
        assert!(c.fill().await > 0, "the chunked body ends");
    }
    assert_eq!(String::from_utf8_lossy(&c.buf), "c\r\nhello, world\r\n0\r\n\r\n");
    c.buf.clear();
    c.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status(&c.head().await), 200, "the connection carries another request after a chunked body");

    let mut c = Conn::open(&gw).await;
    c.send(b"GET / HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\n\r\n").await;
    let head = c.head().await;
    assert_eq!((field(&head, "transfer-encoding"), field(&head, "connection")), (None, Some("close")), "{head}");
    assert_eq!(c.rest().await, "hello, world", "the body ends with the connection");
}

/// An upstream's fields reach the client as the upstream spelled them, less
/// those that describe its hop to the gateway (Connection, Keep-Alive, the
/// fields a Connection names) and those the gateway sets itself; a route's
/// response header modifier still applies to them.
#[tokio::test]
async fn upstream_fields_pass_as_spelled_less_their_hops_own_and_the_gateways() {
    let plain = raw_backend("127.0.0.1:0".parse().unwrap(), |mut stream| async move {
        let _ = stream
            .write_all(
                b"HTTP/1.1 200 OK\r\nServer: raw\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-Upstream: A\r\n\
                  X-Request-Id: forged\r\nContent-Length: 2\r\n\r\nok",
            )
            .await;
    })
    .await;
    let naming = raw_backend("127.0.0.1:0".parse().unwrap(), |mut stream| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nX-Secret: 1\r\nX-Upstream: B\r\nContent-Length: 2\r\n\r\nok")
            .await;
    })
    .await;
    let config = [
        vpc("raw-vpc"),
        attachment("raw-a", "raw-vpc", &[plain.ip()], true, "raw"),
        service("plain", "raw", plain.port(), "HTTP"),
        service("naming", "raw", naming.port(), "HTTP"),
        route("plain", "  match: {path: /plain}\n  destinations: [{vpcServiceRef: {name: plain}}]"),
        route("naming", "  match: {path: /naming}\n  destinations: [{vpcServiceRef: {name: naming}}]"),
        route(
            "modified",
            "  match: {path: /modified}\n  filters:\n    responseHeaders: {set: {x-upstream: changed}, add: {x-added: here}}\n  \
             destinations: [{vpcServiceRef: {name: plain}}]",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;

    let mut c = Conn::open(&gw).await;
    c.send(b"GET /plain HTTP/1.1\r\nHost: x\r\nX-Request-Id: mine\r\n\r\n").await;
    while !c.buf.windows(4).any(|w| w == b"\r\n\r\n") {
        assert!(c.fill().await > 0, "a response head");
    }
    let spelled = String::from_utf8_lossy(&c.buf).into_owned();
    assert!(
        spelled.contains("\r\nServer: raw\r\n") && spelled.contains("\r\nX-Upstream: A\r\n"),
        "as the upstream spelled them: {spelled}"
    );
    let (head, body) = c.response().await;
    assert_eq!((status(&head), body.as_str()), (200, "ok"));
    assert_eq!(field(&head, "x-request-id"), Some("mine"), "the gateway's request id, not the upstream's: {head}");
    assert_eq!(head.matches("x-request-id").count(), 1, "{head}");
    assert_eq!(field(&head, "keep-alive"), None, "{head}");
    assert_eq!(field(&head, "connection"), None, "the client's connection stays open, unannounced: {head}");

    c.send(b"GET /naming HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, _) = c.response().await;
    assert_eq!(field(&head, "x-upstream"), Some("b"), "{head}");
    assert_eq!(field(&head, "x-secret"), None, "a field the upstream's Connection names is hop-by-hop: {head}");

    c.send(b"GET /modified HTTP/1.1\r\nHost: x\r\n\r\n").await;
    let (head, _) = c.response().await;
    assert_eq!((field(&head, "x-upstream"), field(&head, "x-added")), (Some("changed"), Some("here")), "{head}");
    assert_eq!((field(&head, "server"), field(&head, "keep-alive")), (Some("raw"), None), "{head}");
}
