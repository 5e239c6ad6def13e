//! `/metrics`, `/healthz`, `/readyz` and, on serve, `/config` (each binding as
//! this replica serves it: listener, connectors, problems; never a key).

use std::{net::SocketAddr, sync::Arc, time::Duration};

use router_kube::admin::{Readiness, answer, serve_with};
use router_tunnel::{metrics::TunnelMetrics, serve::Tunnels};
use tokio::net::TcpListener;

/// How often `/config` is refreshed from the running tunnels.
const REPORT_EVERY: Duration = Duration::from_millis(250);

/// Binds `addr` and serves the admin endpoints; readiness is the caller's to set.
pub async fn start(addr: SocketAddr, metrics: Arc<TunnelMetrics>, tunnels: Option<Arc<Tunnels>>) -> Result<Arc<Readiness>, String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("admin listener {addr}: {e}"))?;
    let ready = Arc::new(Readiness::default());
    let report = Arc::new(std::sync::Mutex::new(b"[]".to_vec()));
    let serving = tunnels.is_some();
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
    tokio::spawn(serve_with(listener, move |req| {
        let config = || report.lock().unwrap_or_else(|p| p.into_inner()).clone();
        answer(req, &metrics.registry, &readiness, serving.then_some(&config as &dyn Fn() -> Vec<u8>))
    }));
    Ok(ready)
}
