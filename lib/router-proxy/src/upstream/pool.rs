//! The HTTP/1.1 connection pool of cleartext upstreams, on hyper's
//! connection-level client (`hyper::client::conn::http1`).
//!
//! hyper-util's general-purpose client paid, on every request, for a SipHash
//! of the (scheme, authority) key at checkout and again at check-in, a pool
//! waiter, and a spawned task per response that waited for the connection to
//! become idle before putting it back. This pool does what the request path
//! needs and no more:
//!
//! * idle connections per authority, most recently used first (the hot ones
//!   stay warm, the rest age out), at most `max_idle_per_endpoint` of them;
//! * a connection returns to the pool when its response body was read to the
//!   end and dropped (see [`super::UpstreamBody`]), not from a task;
//! * checkout takes a connection hyper says is ready for the next request;
//!   one still finishing its last exchange stays pooled, one the peer closed
//!   is dropped;
//! * a request hyper hands back unsent (the server closed the idle connection
//!   in between) goes to the next connection, then a new one: keep-alive
//!   races never reach the client;
//! * a caller that goes away mid-exchange (its client disconnected, a timeout
//!   fired) leaves the exchange to finish in the background, and the drained
//!   connection returns to the pool instead of being closed;
//! * a sweeper task drops connections idle for longer than the idle timeout.

use std::{
    collections::HashMap,
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex, Weak},
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use http::{HeaderValue, Request, Response, Uri, header, uri::Authority};
use http_body_util::BodyExt;
use hyper::{
    body::Incoming,
    client::conn::{TrySendError, http1},
};
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use super::{BoxError, UpstreamBody, UpstreamError};

/// A connection checked out of the pool, handed back by [`Lease::release`].
pub struct Lease<B> {
    pool: Weak<Http1Pool<B>>,
    key: Key,
    sender: http1::SendRequest<B>,
}

impl<B> Lease<B> {
    /// Puts the connection back (the response it carried is complete).
    pub(super) fn release(self) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.key, self.sender);
        }
    }
}

/// A pool key: the authority's bytes as written, hashed in one go (http's own
/// `Hash` for `Authority` lower-cases and hashes byte by byte). Endpoint
/// authorities are IP:port, already canonical.
#[derive(Clone, PartialEq, Eq)]
struct Key(Authority);

impl std::hash::Hash for Key {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write(self.0.as_str().as_bytes());
    }
}

struct Idle<B> {
    sender: http1::SendRequest<B>,
    since: Instant,
}

pub struct Http1Pool<B> {
    connector: HttpConnector,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<HashMap<Key, Vec<Idle<B>>, foldhash::fast::RandomState>>,
    sweeper: std::sync::Once,
}

impl<B> Http1Pool<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    pub fn new(connector: HttpConnector, idle_timeout: Duration, max_idle: usize) -> Arc<Self> {
        Arc::new(Self { connector, idle_timeout, max_idle, idle: Mutex::new(HashMap::default()), sweeper: std::sync::Once::new() })
    }

    /// Sends `req` (an absolute URI naming the endpoint) in origin form over a
    /// pooled connection, or a new one.
    pub async fn send(self: &Arc<Self>, mut req: Request<B>) -> Result<Response<UpstreamBody<B>>, UpstreamError> {
        let Some(mut key) = req.uri().authority().cloned().map(Key) else {
            return Err(UpstreamError::request("the request URI names no endpoint"));
        };
        if !req.headers().contains_key(header::HOST)
            && let Ok(host) = HeaderValue::from_str(key.0.as_str())
        {
            req.headers_mut().insert(header::HOST, host);
        }
        *req.uri_mut() = match req.uri().path_and_query() {
            Some(pq) => Uri::from(pq.clone()),
            None => Uri::from_static("/"),
        };
        while let Some(sender) = self.checkout(&key) {
            let (result, sender, key_back) = Exchange::start(self, sender, key, req).await;
            key = key_back;
            match result {
                Ok(response) => return Ok(self.lease(response, key, sender)),
                Err(mut e) => match e.take_message() {
                    // Never written: the connection was closed under us; the request is intact.
                    Some(unsent) => req = unsent,
                    None => return Err(UpstreamError::request(e.into_error())),
                },
            }
        }
        tracing::debug!(authority = %key.0, "no idle upstream connection is ready: opening one");
        let sender = self.connect(&key.0).await?;
        let (result, sender, key) = Exchange::start(self, sender, key, req).await;
        match result {
            Ok(response) => Ok(self.lease(response, key, sender)),
            Err(e) => Err(UpstreamError::request(e.into_error())),
        }
    }

    fn lease(self: &Arc<Self>, response: Response<Incoming>, key: Key, sender: http1::SendRequest<B>) -> Response<UpstreamBody<B>> {
        // After 101 the connection belongs to the upgraded stream.
        let lease = (response.status() != http::StatusCode::SWITCHING_PROTOCOLS).then(|| Lease { pool: Arc::downgrade(self), key, sender });
        response.map(|body| UpstreamBody::new(body, lease))
    }

    async fn connect(self: &Arc<Self>, authority: &Authority) -> Result<http1::SendRequest<B>, UpstreamError> {
        self.sweeper.call_once(|| {
            tokio::spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        });
        let uri = Uri::builder().scheme("http").authority(authority.clone()).path_and_query("/").build().map_err(UpstreamError::connect)?;
        let io = self.connector.clone().call(uri).await.map_err(UpstreamError::connect)?;
        // A bounded read buffer bounds what each upstream connection holds for a client that reads
        // slowly or not at all (hyper's default grows to ~400 KiB); response heads stay far below it.
        let (sender, connection) =
            http1::Builder::new().max_buf_size(UPSTREAM_READ_BUFFER).handshake(io).await.map_err(UpstreamError::connect)?;
        tokio::spawn(async move {
            if let Err(e) = connection.with_upgrades().await {
                tracing::debug!(error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }
}

/// Largest read buffer of an upstream HTTP/1.1 connection.
const UPSTREAM_READ_BUFFER: usize = 64 * 1024;

impl<B> Http1Pool<B> {
    /// The most recently used connection that can take a request now.
    fn checkout(&self, key: &Key) -> Option<http1::SendRequest<B>> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        // From the most recent end, so the usual case touches one entry; the sweeper handles the rest.
        while let Some(i) = list.iter().rposition(|c| c.sender.is_ready() || c.sender.is_closed()) {
            let c = list.remove(i);
            if !c.sender.is_closed() && now.duration_since(c.since) < self.idle_timeout {
                return Some(c.sender);
            }
        }
        None
    }

    fn put(&self, key: Key, sender: http1::SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < self.max_idle {
            list.push(Idle { sender, since: Instant::now() });
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| !c.sender.is_closed() && now.duration_since(c.since) < self.idle_timeout);
            !list.is_empty()
        });
    }

    /// Idle connections pooled now, over all authorities.
    #[cfg(test)]
    fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

/// How long, and how many response bytes, an abandoned exchange may take to
/// finish in the background before its connection is given up instead.
const DRAIN_TIME: Duration = Duration::from_secs(2);
const DRAIN_BYTES: usize = 256 * 1024;

type Sent<B> = Pin<Box<dyn Future<Output = Result<Response<Incoming>, TrySendError<Request<B>>>> + Send>>;

/// One request on one connection, up to the response head. If the caller
/// goes away first (its client disconnected, a timeout fired), the exchange
/// finishes in the background and the connection is drained back into the
/// pool rather than closed: a client that gives up costs no upstream
/// connection (within [`DRAIN_TIME`] and [`DRAIN_BYTES`]).
struct Exchange<B: Send + 'static> {
    sent: Option<Sent<B>>,
    sender: Option<http1::SendRequest<B>>,
    key: Option<Key>,
    pool: Weak<Http1Pool<B>>,
}

impl<B> Exchange<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn start(pool: &Arc<Http1Pool<B>>, mut sender: http1::SendRequest<B>, key: Key, req: Request<B>) -> Self {
        let sent: Sent<B> = Box::pin(sender.try_send_request(req));
        Self { sent: Some(sent), sender: Some(sender), key: Some(key), pool: Arc::downgrade(pool) }
    }
}

impl<B: Send + 'static> Future for Exchange<B> {
    type Output = (Result<Response<Incoming>, TrySendError<Request<B>>>, http1::SendRequest<B>, Key);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = ready!(self.sent.as_mut().expect("polled after completion").as_mut().poll(cx));
        self.sent = None;
        Poll::Ready((result, self.sender.take().expect("held until completion"), self.key.take().expect("held until completion")))
    }
}

impl<B: Send + 'static> Drop for Exchange<B> {
    fn drop(&mut self) {
        if let (Some(sent), Some(sender), Some(key)) = (self.sent.take(), self.sender.take(), self.key.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(finish_abandoned(sent, sender, key, self.pool.clone()));
        }
    }
}

/// Reads an abandoned exchange's response to its end, then pools the connection.
async fn finish_abandoned<B: Send + 'static>(sent: Sent<B>, sender: http1::SendRequest<B>, key: Key, pool: Weak<Http1Pool<B>>) {
    let drained = tokio::time::timeout(DRAIN_TIME, async {
        let response = sent.await.ok()?;
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            return None;
        }
        let mut body = response.into_body();
        let mut left = DRAIN_BYTES;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame.ok()?.data_ref() {
                left = left.checked_sub(data.len())?;
            }
        }
        Some(())
    })
    .await;
    if let (Ok(Some(())), Some(pool)) = (drained, pool.upgrade()) {
        pool.put(key, sender);
    }
}

/// Drops expired idle connections until the pool is gone.
async fn sweep<B>(pool: Weak<Http1Pool<B>>, idle_timeout: Duration)
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let period = (idle_timeout / 2).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(period).await;
        let Some(pool) = pool.upgrade() else { return };
        pool.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::{body::Incoming, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepted.
    /// `/close` answers with `Connection: close`; `/big` sends 1 MiB; `/slow` answers after 100 ms.
    async fn server() -> (Authority, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let service = service_fn(|req: Request<Incoming>| async move {
                        if req.uri().path() == "/slow" {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        let mut r = match req.uri().path() {
                            "/big" => Response::new(Full::new(Bytes::from(vec![b'x'; 1 << 20]))),
                            _ => Response::new(Full::new(Bytes::from_static(b"ok"))),
                        };
                        if req.uri().path() == "/close" {
                            r.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    });
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
                });
            }
        });
        (authority, accepted)
    }

    fn pool(idle_timeout: Duration, max_idle: usize) -> Arc<Http1Pool<Empty<Bytes>>> {
        Http1Pool::new(HttpConnector::new(), idle_timeout, max_idle)
    }

    fn get(authority: &Authority, path: &str) -> Request<Empty<Bytes>> {
        Request::builder().uri(format!("http://{authority}{path}")).body(Empty::new()).unwrap()
    }

    async fn read(response: Response<UpstreamBody<Empty<Bytes>>>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    /// hyper marks a connection ready for its next request on its own task.
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    #[tokio::test]
    async fn sequential_requests_share_one_connection() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        for _ in 0..20 {
            assert_eq!(read(pool.send(get(&authority, "/")).await.unwrap()).await, "ok");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
        assert_eq!(pool.idle_count(), 1);
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_that_are_then_reused() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        for _ in 0..3 {
            let responses = futures_join(&pool, &authority, 4).await;
            for r in responses {
                assert_eq!(read(r).await, "ok");
            }
            settle().await;
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4, "the first round opens four, later rounds reuse them");
        assert_eq!(pool.idle_count(), 4);
    }

    async fn futures_join(
        pool: &Arc<Http1Pool<Empty<Bytes>>>,
        authority: &Authority,
        n: usize,
    ) -> Vec<Response<UpstreamBody<Empty<Bytes>>>> {
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (pool, req) = (pool.clone(), get(authority, "/"));
            tasks.push(tokio::spawn(async move { pool.send(req).await.unwrap() }));
        }
        let mut out = Vec::new();
        for t in tasks {
            out.push(t.await.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn a_body_dropped_before_its_end_does_not_return_the_connection() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        let response = pool.send(get(&authority, "/big")).await.unwrap();
        let mut body = response.into_body();
        let _first = body.frame().await.unwrap().unwrap();
        drop(body);
        assert_eq!(pool.idle_count(), 0);
        settle().await;
        assert_eq!(read(pool.send(get(&authority, "/")).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_server_closed_is_replaced_without_failing_the_request() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        assert_eq!(read(pool.send(get(&authority, "/close")).await.unwrap()).await, "ok");
        settle().await;
        assert_eq!(read(pool.send(get(&authority, "/")).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn idle_connections_expire_and_the_pool_keeps_at_most_max_idle() {
        let (authority, _) = server().await;
        let pool = pool(Duration::from_millis(200), 2);
        for r in futures_join(&pool, &authority, 5).await {
            read(r).await;
        }
        settle().await;
        assert_eq!(pool.idle_count(), 2, "three of five connections are closed rather than kept");
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert_eq!(pool.idle_count(), 0, "the sweeper dropped the expired ones");
    }

    #[tokio::test]
    async fn an_abandoned_exchange_finishes_in_the_background_and_keeps_its_connection() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        let gave_up = tokio::time::timeout(Duration::from_millis(20), pool.send(get(&authority, "/slow"))).await;
        assert!(gave_up.is_err(), "the caller gave up before the answer");
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(pool.idle_count(), 1, "the drained connection is back in the pool");
        assert_eq!(read(pool.send(get(&authority, "/")).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_refused_connect_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap().port();
        let authority: Authority = format!("127.0.0.1:{port}").parse().unwrap();
        let Err(err) = pool(Duration::from_secs(60), 8).send(get(&authority, "/")).await else { panic!("a refused connect succeeded") };
        assert!(err.is_connect(), "{err}");
    }

    #[tokio::test]
    async fn requests_go_in_origin_form_with_the_endpoint_as_host() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority: Authority = listener.local_addr().unwrap().to_string().parse().unwrap();
        let server = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = tokio::io::AsyncReadExt::read(&mut stream, &mut buf).await.unwrap();
                head.extend_from_slice(&buf[..n]);
            }
            tokio::io::AsyncWriteExt::write_all(&mut stream, b"HTTP/1.1 204 No Content\r\n\r\n").await.unwrap();
            String::from_utf8(head).unwrap()
        });
        let response = pool(Duration::from_secs(60), 8).send(get(&authority, "/a?b=c")).await.unwrap();
        assert_eq!(response.status(), http::StatusCode::NO_CONTENT);
        let head = server.await.unwrap().to_ascii_lowercase();
        assert!(head.starts_with("get /a?b=c http/1.1\r\n"), "{head}");
        assert!(head.contains(&format!("host: {authority}\r\n")), "{head}");
    }
}
