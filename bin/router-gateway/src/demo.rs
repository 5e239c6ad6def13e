//! `--demo-backends`: tiny HTTP servers on the configuration's loopback
//! endpoints, so the README's one command shows routed traffic on a laptop.
//! Each answers with its own address and the request it saw.

use std::{collections::BTreeSet, convert::Infallible, net::SocketAddr};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::{body::Incoming, service::service_fn};
use hyper_util::{
    rt::{TokioExecutor, TokioIo},
    server::conn::auto,
};
use router_core::Snapshot;
use tokio::net::TcpListener;

pub async fn start_backends(snapshot: &Snapshot) -> std::io::Result<()> {
    let addrs: BTreeSet<SocketAddr> =
        snapshot.services.values().flat_map(|s| s.endpoints.iter().map(|e| e.addr)).filter(|a| a.ip().is_loopback()).collect();
    for addr in addrs {
        let listener = TcpListener::bind(addr).await?;
        tracing::info!(%addr, "demo backend listening");
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| async move {
                        let body = serde_json::json!({
                            "backend": addr.to_string(),
                            "method": req.method().as_str(),
                            "path": req.uri().path(),
                            "host": req.headers().get("host").and_then(|h| h.to_str().ok()),
                            "x-forwarded-for": req.headers().get("x-forwarded-for").and_then(|h| h.to_str().ok()),
                            "traceparent": req.headers().get("traceparent").and_then(|h| h.to_str().ok()),
                        });
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(format!("{body}\n")))))
                    });
                    let _ = auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), svc).await;
                });
            }
        });
    }
    Ok(())
}
