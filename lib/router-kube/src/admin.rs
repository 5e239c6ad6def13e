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
use hyper::service::service_fn;
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

fn answer<B>(req: &Request<B>, metrics: &KubeMetrics, ready: &Readiness) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => {
            let mut out = Vec::new();
            let _ = TextEncoder::new().encode(&metrics.registry.gather(), &mut out);
            (StatusCode::OK, "text/plain; version=0.0.4", Bytes::from(out))
        }
        "/healthz" => (StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/readyz" if ready.get() => (StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "text/plain", Bytes::from_static(b"not ready\n")),
        _ => (StatusCode::NOT_FOUND, "text/plain", Bytes::from_static(b"not found\n")),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    r
}

/// Binds `addr` and serves until the process ends.
pub async fn serve(addr: SocketAddr, metrics: Arc<KubeMetrics>, ready: Arc<Readiness>) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let (metrics, ready) = (metrics.clone(), ready.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req| {
                    let r = answer(&req, &metrics, &ready);
                    async move { Ok::<_, Infallible>(r) }
                });
                let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
    Ok(())
}
