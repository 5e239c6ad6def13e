//! The HTTP/1.1 connection pool of cleartext upstreams, on the gateway's own
//! client ([`super::h1`]).
//!
//! hyper-util's general-purpose client paid, on every request, for a SipHash
//! of the (scheme, authority) key at checkout and again at check-in, a pool
//! waiter, and a spawned task per response that waited for the connection to
//! become idle before putting it back; hyper's connection-level client then
//! ran each connection as a task of its own. This pool does what the request
//! path needs and no more:
//!
//! * idle connections per authority, most recently used first (the hot ones
//!   stay warm, the rest age out), at most `max_idle_per_endpoint` of them;
//! * a connection returns to the pool the moment the last byte of its
//!   response is read (see [`super::h1::ResponseBody`]);
//! * checkout takes a connection the upstream has neither closed nor sent
//!   anything on since its last response; a bodiless idempotent request that
//!   finds its connection closed under it (the upstream closed it just as it
//!   was reused) goes again on a new one: keep-alive races never reach the
//!   client;
//! * a caller that goes away while waiting for the response head (its client
//!   disconnected, a timeout fired) leaves the exchange to finish in the
//!   background, and the drained connection returns to the pool instead of
//!   being closed;
//! * a sweeper task drops connections idle for longer than the idle timeout.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
    time::{Duration, Instant},
};

use bytes::Bytes;
use http::{Method, Request, Response, Uri, uri::Authority};
use http_body::Body;
use hyper_util::client::legacy::connect::HttpConnector;
use tower_service::Service;

use crate::http::field_lines::FieldLines;

use super::{
    BoxError, UpstreamBody, UpstreamError,
    h1::{
        self, Connection, DRAIN_TIME, H1Error, Release, ResponseBody, Written,
        wire::{self, RequestFraming, RequestHead, ResponseHead},
    },
};

/// Where a connection goes back to: its pool, under its key.
pub struct Lease {
    pool: Weak<Http1Pool>,
    key: Key,
}

impl Release for Lease {
    fn release(self, conn: Connection) {
        if let Some(pool) = self.pool.upgrade() {
            pool.put(self.key, conn);
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

struct Idle {
    conn: Connection,
    since: Instant,
}

pub struct Http1Pool {
    connector: HttpConnector,
    idle_timeout: Duration,
    max_idle: usize,
    idle: Mutex<HashMap<Key, Vec<Idle>, foldhash::fast::RandomState>>,
    sweeper: std::sync::Once,
}

impl Http1Pool {
    pub fn new(connector: HttpConnector, idle_timeout: Duration, max_idle: usize) -> Arc<Self> {
        Arc::new(Self { connector, idle_timeout, max_idle, idle: Mutex::new(HashMap::default()), sweeper: std::sync::Once::new() })
    }

    /// Sends `req` (an absolute URI naming the endpoint) in origin form.
    pub async fn send<B>(self: &Arc<Self>, req: Request<B>) -> Result<Response<UpstreamBody>, UpstreamError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let Some(authority) = req.uri().authority().cloned() else {
            return Err(UpstreamError::request("the request URI names no endpoint"));
        };
        let (parts, body) = req.into_parts();
        let target = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let head = RequestHead { method: &parts.method, target, headers: &parts.headers, added: None };
        Ok(self.send_head(&authority, head, body, Some(0)).await?.0)
    }

    /// Sends a request with `head` and `body` to `authority`, over a pooled
    /// connection or a new one. The response's fields are in its map (with
    /// room for `map` more fields) or, with `map` None and a plain response
    /// (see [`ResponseHead::fields`]), left as they were read, beside the empty map.
    pub async fn send_head<B>(
        self: &Arc<Self>,
        authority: &Authority,
        head: RequestHead<'_>,
        body: B,
        map: Option<usize>,
    ) -> Result<(Response<UpstreamBody>, FieldLines), UpstreamError>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let key = Key(authority.clone());
        let framing = match body.size_hint().exact() {
            _ if body.is_end_stream() => RequestFraming::Empty,
            Some(n) => RequestFraming::Length(n),
            None => RequestFraming::Chunked,
        };
        let mut bytes = Vec::with_capacity(512);
        wire::write_request_head(&mut bytes, &head, authority.as_str(), framing);
        // Without a body to lose, an idempotent request found on a closed connection can go again.
        let resend = framing == RequestFraming::Empty && head.method.is_idempotent();
        let mut body = (framing != RequestFraming::Empty).then_some(body);
        loop {
            let (conn, reused) = match self.checkout(&key) {
                Some(conn) => (conn, true),
                None => {
                    tracing::debug!(%authority, "no idle upstream connection: opening one");
                    (self.connect(authority).await?, false)
                }
            };
            let mut flight = InFlight::new(self, key.clone(), conn, head.method.clone());
            match flight.exchange(&bytes, body.take(), framing, map).await {
                Ok((head, early)) => return flight.respond(head, early).map_err(UpstreamError::request),
                Err(e) if reused && resend && e.is_stale_connection() => {
                    tracing::debug!(%authority, error = %e, "pooled connection closed under the request: sending it on another");
                }
                Err(e) => return Err(UpstreamError::request(e)),
            }
        }
    }

    async fn connect(self: &Arc<Self>, authority: &Authority) -> Result<Connection, UpstreamError> {
        self.sweeper.call_once(|| {
            tokio::spawn(sweep(Arc::downgrade(self), self.idle_timeout));
        });
        let uri = Uri::builder().scheme("http").authority(authority.clone()).path_and_query("/").build().map_err(UpstreamError::connect)?;
        let io = self.connector.clone().call(uri).await.map_err(UpstreamError::connect)?;
        Ok(Connection::new(io.into_inner()))
    }

    /// The most recently used connection that can take a request now.
    fn checkout(&self, key: &Key) -> Option<Connection> {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        // From the most recent end, so the usual case touches one entry; the sweeper handles the rest.
        while let Some(c) = list.pop() {
            if now.duration_since(c.since) < self.idle_timeout && c.conn.is_idle_and_open() {
                return Some(c.conn);
            }
        }
        None
    }

    fn put(&self, key: Key, conn: Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        let list = idle.entry(key).or_default();
        if list.len() < self.max_idle {
            list.push(Idle { conn, since: Instant::now() });
        }
    }

    fn sweep(&self) {
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        idle.retain(|_, list| {
            list.retain(|c| now.duration_since(c.since) < self.idle_timeout && c.conn.is_idle_and_open());
            !list.is_empty()
        });
    }

    /// Idle connections pooled now, over all authorities.
    #[cfg(test)]
    pub(super) fn idle_count(&self) -> usize {
        self.idle.lock().unwrap_or_else(|p| p.into_inner()).values().map(Vec::len).sum()
    }
}

/// One request on one connection, up to the response head. If the caller
/// goes away after the request was written, the exchange finishes in the
/// background and the connection is drained back into the pool rather than
/// closed: a client that gives up costs no upstream connection (within
/// [`DRAIN_TIME`] and [`h1::DRAIN_BYTES`]). Gone while writing, the connection
/// closes: the upstream has half a request.
struct InFlight {
    conn: Option<Connection>,
    written: bool,
    lease: Option<Lease>,
    method: Method,
}

impl InFlight {
    fn new(pool: &Arc<Http1Pool>, key: Key, conn: Connection, method: Method) -> Self {
        Self { conn: Some(conn), written: false, lease: Some(Lease { pool: Arc::downgrade(pool), key }), method }
    }

    /// Writes the request; returns the response head and whether it came
    /// before the body was all written.
    async fn exchange<B>(
        &mut self,
        head: &[u8],
        body: Option<B>,
        framing: RequestFraming,
        map: Option<usize>,
    ) -> Result<(ResponseHead, bool), H1Error>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let conn = self.conn.as_mut().expect("held until the exchange ends");
        let result = match conn.write_request(head, body, framing, map).await {
            Ok(Written::AnsweredEarly(head)) => Ok((head, true)),
            Ok(Written::Complete) => {
                self.written = true;
                conn.read_head(map).await.map(|head| (head, false))
            }
            Err(e) => Err(e),
        };
        if result.is_err() {
            // A connection an exchange failed on carries nothing more.
            self.conn = None;
        }
        result
    }

    /// The response to hand on: its body reads the connection; after 101 the
    /// connection belongs to the upgraded stream instead. A response whose
    /// body cannot be delimited safely is the upstream's failure.
    fn respond(mut self, head: ResponseHead, early: bool) -> Result<(Response<UpstreamBody>, FieldLines), H1Error> {
        let conn = self.conn.take().expect("held until the exchange ends");
        let lease = self.lease.take().expect("held until the exchange ends");
        let framing = wire::response_framing(&self.method, &head)?;
        let reusable = !early && head.keep_alive;
        let mut response = Response::new(());
        *response.status_mut() = head.status;
        *response.version_mut() = head.version;
        *response.headers_mut() = head.headers;
        let lines = head.fields;
        if response.status() == http::StatusCode::SWITCHING_PROTOCOLS {
            response.extensions_mut().insert(h1::Upgrade::new(conn));
            return Ok((response.map(|()| UpstreamBody::empty()), lines));
        }
        Ok((response.map(|()| UpstreamBody::http1(ResponseBody::new(conn, framing, reusable, lease))), lines))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let (true, Some(conn), Some(lease)) = (self.written, self.conn.take(), self.lease.take())
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(finish_abandoned(conn, lease, self.method.clone()));
        }
    }
}

/// Reads an abandoned exchange's response to its end, then pools the connection.
async fn finish_abandoned(mut conn: Connection, lease: Lease, method: Method) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        let head = conn.read_head(Some(0)).await.ok()?;
        let framing = wire::response_framing(&method, &head).ok()?;
        if head.status == http::StatusCode::SWITCHING_PROTOCOLS || !head.keep_alive {
            return None;
        }
        ResponseBody::new(conn, framing, true, lease).drain().await
    })
    .await;
}

/// Drops expired idle connections until the pool is gone.
async fn sweep(pool: Weak<Http1Pool>, idle_timeout: Duration) {
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

    use http::{HeaderValue, header};
    use http_body_util::{BodyExt, Empty, Full};
    use hyper::{body::Incoming, service::service_fn};
    use hyper_util::rt::TokioIo;
    use tokio::net::TcpListener;

    use super::*;

    /// An HTTP/1.1 server on 127.0.0.1 that counts the connections it accepted.
    /// `/close` answers with `Connection: close`; `/big` sends 1 MiB, `/64k` 64 KiB; `/slow` answers after 100 ms.
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
                            "/64k" => Response::new(Full::new(Bytes::from(vec![b'x'; 64 << 10]))),
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

    fn pool(idle_timeout: Duration, max_idle: usize) -> Arc<Http1Pool> {
        Http1Pool::new(HttpConnector::new(), idle_timeout, max_idle)
    }

    fn get(authority: &Authority, path: &str) -> Request<Empty<Bytes>> {
        Request::builder().uri(format!("http://{authority}{path}")).body(Empty::new()).unwrap()
    }

    async fn read(response: Response<UpstreamBody>) -> Bytes {
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

    async fn futures_join(pool: &Arc<Http1Pool>, authority: &Authority, n: usize) -> Vec<Response<UpstreamBody>> {
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
    async fn a_body_dropped_before_its_end_is_drained_and_its_connection_pooled() {
        let (authority, accepted) = server().await;
        let pool = pool(Duration::from_secs(60), 8);
        let response = pool.send(get(&authority, "/64k")).await.unwrap();
        drop(response);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(pool.idle_count(), 1, "the drained connection is back in the pool");
        assert_eq!(read(pool.send(get(&authority, "/")).await.unwrap()).await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_further_than_the_drain_allows_from_its_end_closes_the_connection() {
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
