//! `/metrics`, `/healthz` and `/readyz` on a port of their own. Liveness is
//! the process answering; readiness is whatever the component says (caches
//! synced, for example), so a rollout waits for a warm replica.

use std::{
    convert::Infallible,
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
};

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use prometheus::{Encoder, TextEncoder};
use tokio::net::TcpListener;

use crate::metrics::KubeMetrics;

/// Set by the component when it is ready to do its job.
#[derive(Default)]
pub struct Readiness(AtomicBool);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    pub fn get(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A plain response with a content type.
pub fn reply(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// The Prometheus text exposition of `registry`.
pub fn render(registry: &prometheus::Registry) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&registry.gather(), &mut out);
    out
}

/// The answers every component's admin port gives: `/metrics` from `registry`,
/// `/healthz`, `/readyz` by `ready`, and `/config` (JSON) when `config` renders one.
pub fn answer<B>(
    req: &Request<B>,
    registry: &prometheus::Registry,
    ready: &Readiness,
    config: Option<&dyn Fn() -> Vec<u8>>,
) -> Response<Full<Bytes>> {
    match (req.uri().path(), config) {
        ("/metrics", _) => reply(StatusCode::OK, "text/plain; version=0.0.4", render(registry)),
        ("/healthz", _) => reply(StatusCode::OK, "text/plain", "ok\n"),
        ("/readyz", _) if ready.get() => reply(StatusCode::OK, "text/plain", "ready\n"),
        ("/readyz", _) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n"),
        ("/config", Some(render_config)) => reply(StatusCode::OK, "application/json", render_config()),
        (_, Some(_)) => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz, /readyz or /config\n"),
        (_, None) => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz or /readyz\n"),
    }
}

/// Serves `answer` on every connection `listener` accepts (HTTP/1.1 or HTTP/2), until the process ends.
pub async fn serve_with<F>(listener: TcpListener, answer: F)
where
    F: Fn(&Request<Incoming>) -> Response<Full<Bytes>> + Send + Sync + 'static,
{
    let answer = Arc::new(answer);
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let answer = answer.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let r = answer(&req);
                async move { Ok::<_, Infallible>(r) }
            });
            let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<KubeMetrics>, ready: Arc<Readiness>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(serve_with(listener, move |req| answer(req, &metrics.registry, &ready, None)));
    Ok(())
}
