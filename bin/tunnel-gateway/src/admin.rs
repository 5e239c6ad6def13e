//! `/metrics`, `/healthz`, `/readyz` and, on serve, `/config` (each binding as
//! this replica serves it: listener, connectors, problems; never a key).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use http::StatusCode;
use router_kube::admin::{Readiness, render, reply, serve_with};
use router_tunnel::{metrics::TunnelMetrics, serve::Tunnels};
use tokio::net::TcpListener;

/// How often `/config` is refreshed from the running tunnels.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Binds `addr` and serves the admin endpoints; readiness is the caller's to set.
pub async fn start(addr: SocketAddr, metrics: Arc<TunnelMetrics>, tunnels: Option<Arc<Tunnels>>) -> Result<Arc<Readiness>, String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("admin listener {addr}: {e}"))?;
    let ready = Arc::new(Readiness::default());
    let report = Arc::new(std::sync::Mutex::new(b"[]".to_vec()));
    if let Some(tunnels) = tunnels {
        let report = report.clone();
        tokio::spawn(async move {
            loop {
                let json = serde_json::to_vec_pretty(&tunnels.report().await).unwrap_or_default();
                *report.lock().unwrap_or_else(|p| p.into_inner()) = json;
                tokio::time::sleep(REPORT_EVERY).await;
            }
        });
    }
    let readiness = ready.clone();
    tokio::spawn(serve_with(listener, move |req| match req.uri().path() {
        "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", render(&metrics.registry)),
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
        "/readyz" if readiness.get() => reply(StatusCode::OK, "text/plain", "ready\n"),
        "/readyz" => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n"),
        "/config" => reply(StatusCode::OK, "application/json", report.lock().unwrap_or_else(|p| p.into_inner()).clone()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz, /readyz or /config\n"),
    }));
    Ok(ready)
}
