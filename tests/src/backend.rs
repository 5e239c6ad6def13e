//! Real HTTP backends on loopback addresses: HTTP/1.1 and h2c on one port
//! (hyper's auto server), answering with what they saw so tests can assert
//! what the gateway forwarded. A few paths change behaviour:
//!
//! * `/status/<code>` answers with that status;
//! * `/slow/<ms>` waits before answering;
//! * `/ws` accepts a WebSocket and echoes every message.

use std::{
    convert::Infallible,
    net::{IpAddr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicUsize, Ordering},
    },
    time::Duration,
};

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use serde_json::json;
use tokio::{net::TcpListener, task::JoinHandle};

/// A distinct 127.x.y.0/24 block per call, so tests running in parallel
/// never share backend addresses.
pub fn loopback_block() -> [u8; 2] {
    static NEXT: AtomicU8 = AtomicU8::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    [(std::process::id() % 200) as u8 + 20, n]
}

/// `127.<block>.<host>`.
pub fn loopback_ip(block: [u8; 2], host: u8) -> IpAddr {
    IpAddr::from([127, block[0], block[1], host])
}

pub struct Backend {
    pub name: String,
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    /// Request body bytes received, over all requests.
    pub body_bytes: Arc<AtomicUsize>,
    task: JoinHandle<()>,
    /// Closes every open connection when set: a killed backend answers nothing.
    dead: tokio::sync::watch::Sender<bool>,
    faults: Arc<Faults>,
}

/// Faults a test can switch on and off while the backend runs.
#[derive(Default)]
struct Faults {
    /// Answer every request with this status (0: off).
    status: std::sync::atomic::AtomicU16,
    /// Wait this long before answering (0: off).
    delay_ms: std::sync::atomic::AtomicU64,
    /// Answer every request as a gRPC trailers-only error with this status (0: off).
    grpc_status: std::sync::atomic::AtomicU8,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::Relaxed)
    }

    /// Answers every request with `status` from now on (None: normal again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.faults.status.store(status.unwrap_or(0), Ordering::Relaxed);
    }

    /// Answers every request as a gRPC trailers-only error (`content-type:
    /// application/grpc`, `grpc-status` in the head, no body) with `code`
    /// from now on (None: normal again).
    pub fn fail_grpc_with(&self, code: Option<u8>) {
        self.faults.grpc_status.store(code.unwrap_or(0), Ordering::Relaxed);
    }

    /// Delays every answer by `delay` from now on (zero: normal again), like a hanging backend.
    pub fn delay(&self, delay: Duration) {
        self.faults.delay_ms.store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Stops accepting, closes the listener and every open connection (the backend "dies").
    pub fn kill(&self) {
        self.task.abort();
        self.dead.send_replace(true);
    }
}

/// Starts backends named `names` on `ip(1)`, `ip(2)`, ... of one fresh block, all on the same port.
pub async fn start_backends(names: &[&str]) -> Vec<Backend> {
    start(names, None).await
}

/// As [`start_backends`], speaking TLS with `config` (HTTP/2 or HTTP/1.1 by ALPN).
pub async fn start_tls_backends(names: &[&str], config: Arc<rustls::ServerConfig>) -> Vec<Backend> {
    start(names, Some(tokio_rustls::TlsAcceptor::from(config))).await
}

async fn start(names: &[&str], tls: Option<tokio_rustls::TlsAcceptor>) -> Vec<Backend> {
    for _ in 0..20 {
        let block = loopback_block();
        let first = match TcpListener::bind((loopback_ip(block, 1), 0)).await {
            Ok(l) => l,
            Err(_) => continue,
        };
        let port = first.local_addr().expect("bound").port();
        let mut listeners = vec![first];
        for i in 1..names.len() {
            match TcpListener::bind((loopback_ip(block, i as u8 + 1), port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == names.len() {
            return listeners.into_iter().zip(names).map(|(l, n)| serve(l, n, tls.clone())).collect();
        }
    }
    panic!("could not bind test backends on loopback");
}

fn serve(listener: TcpListener, name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
    let addr = listener.local_addr().expect("bound");
    let hits = Arc::new(AtomicUsize::new(0));
    let body_bytes = Arc::new(AtomicUsize::new(0));
    let (name_c, hits_c, bytes_c) = (name.to_owned(), hits.clone(), body_bytes.clone());
    let dead = tokio::sync::watch::Sender::new(false);
    let faults = Arc::new(Faults::default());
    let faults_c = faults.clone();
    let dead_rx = dead.subscribe();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let (name, hits, bytes, faults) = (name_c.clone(), hits_c.clone(), bytes_c.clone(), faults_c.clone());
            let mut dead = dead_rx.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let (name, hits, bytes, faults) = (name.clone(), hits.clone(), bytes.clone(), faults.clone());
                    async move {
                        let delay = faults.delay_ms.load(Ordering::Relaxed);
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                        let mut r = handle(req, name, hits, bytes, addr).await?;
                        if let Some(status) = StatusCode::from_u16(faults.status.load(Ordering::Relaxed))
                            .ok()
                            .filter(|_| faults.status.load(Ordering::Relaxed) != 0)
                        {
                            *r.status_mut() = status;
                        }
                        let grpc = faults.grpc_status.load(Ordering::Relaxed);
                        if grpc != 0 {
                            *r.body_mut() = Default::default();
                            r.headers_mut().remove(http::header::CONTENT_LENGTH);
                            r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/grpc"));
                            r.headers_mut().insert("grpc-status", http::HeaderValue::from(u16::from(grpc)));
                        }
                        Ok::<_, Infallible>(r)
                    }
                });
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = dead.wait_for(|d| *d) => {}
                        }
                    }
                    Some(acceptor) => {
                        // A failed handshake (a client without the right certificate) just ends the connection.
                        let Ok(stream) = acceptor.accept(stream).await else { return };
                        let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
                        tokio::select! {
                            _ = conn => {}
                            _ = dead.wait_for(|d| *d) => {}
                        }
                    }
                }
            });
        }
    });
    Backend { name: name.to_owned(), addr, hits, body_bytes, task, dead, faults }
}

async fn handle(
    mut req: Request<Incoming>,
    name: String,
    hits: Arc<AtomicUsize>,
    body_bytes: Arc<AtomicUsize>,
    addr: SocketAddr,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::Relaxed);
    let path = req.uri().path().to_owned();
    if path == "/ws" {
        return Ok(websocket_echo(&mut req));
    }
    let headers: serde_json::Map<String, serde_json::Value> =
        req.headers().iter().map(|(k, v)| (k.as_str().to_owned(), json!(v.to_str().unwrap_or("")))).collect();
    let (method, query, version) = (req.method().to_string(), req.uri().query().map(str::to_owned), format!("{:?}", req.version()));
    let body = req.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    body_bytes.fetch_add(body.len(), Ordering::Relaxed);
    if let Some(n) = path.strip_prefix("/bytes/").and_then(|n| n.parse::<usize>().ok()) {
        // Static bytes: many large answers at once cost the test process nothing.
        static BYTES: [u8; 1 << 20] = [b'x'; 1 << 20];
        return Ok(Response::new(Full::new(Bytes::from_static(&BYTES[..n.min(BYTES.len())]))));
    }
    let mut status = StatusCode::OK;
    if let Some(code) = path.strip_prefix("/status/") {
        status = code.parse().ok().and_then(|c| StatusCode::from_u16(c).ok()).unwrap_or(StatusCode::BAD_REQUEST);
    }
    if let Some(ms) = path.strip_prefix("/slow/").and_then(|ms| ms.parse().ok()) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    let answer = json!({
        "backend": name, "addr": addr.to_string(), "method": method, "path": path, "query": query,
        "version": version, "headers": headers, "body_len": body.len(),
    });
    let mut r = Response::new(Full::new(Bytes::from(answer.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert("x-backend", name.parse().expect("test names are valid header values"));
    Ok(r)
}

fn websocket_echo(req: &mut Request<Incoming>) -> Response<Full<Bytes>> {
    use tokio_tungstenite::tungstenite::{handshake::derive_accept_key, protocol::Role};
    let Some(key) = req.headers().get("sec-websocket-key").map(|k| derive_accept_key(k.as_bytes())) else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"not a websocket handshake")));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_close() || ws.send(msg).await.is_err() {
                break;
            }
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-accept", key)
        .body(Full::new(Bytes::new()))
        .expect("static response")
}

/// A hand-rolled backend for misbehaviour a real server would not produce:
/// binds `addr`, and for every connection reads the request head, then hands
/// the stream to `answer`. Returns the bound address.
pub async fn raw_backend<F, Fut>(addr: SocketAddr, answer: F) -> SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind(addr).await.expect("bind raw backend");
    let bound = listener.local_addr().expect("bound");
    let answer = Arc::new(answer);
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { continue };
            let answer = answer.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = stream.read(&mut buf).await;
                answer(stream).await;
            });
        }
    });
    bound
}
