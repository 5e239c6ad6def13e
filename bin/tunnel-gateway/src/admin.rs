//! `/metrics`, `/healthz`, `/readyz` and, on serve, `/config` (each binding as
//! this replica serves it: listener, connectors, problems; never a key).

use std::{net::SocketAddr, sync::Arc};

use router_kube::admin::{Readiness, answer, serve_with};
use router_tunnel::{metrics::TunnelMetrics, serve::Tunnels};
use tokio::net::TcpListener;

/// Binds `addr` and serves the admin endpoints; readiness is the caller's to set.
/// `/config` is rendered when asked, so it is never behind what is served.
pub async fn start(addr: SocketAddr, metrics: Arc<TunnelMetrics>, tunnels: Option<Arc<Tunnels>>) -> Result<Arc<Readiness>, String> {
    let listener = TcpListener::bind(addr).await.map_err(|e| format!("admin listener {addr}: {e}"))?;
    let ready = Arc::new(Readiness::default());
    let readiness = ready.clone();
    tokio::spawn(serve_with(listener, move |req| {
        let config = tunnels.as_ref().map(|t| move || serde_json::to_vec_pretty(&t.report()).unwrap_or_default());
        answer(req, &metrics.registry, &readiness, config.as_ref().map(|c| c as &dyn Fn() -> Vec<u8>))
    }));
    Ok(ready)
}
