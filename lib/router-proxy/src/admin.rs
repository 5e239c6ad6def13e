//! The admin listener, apart from the data ports: `/metrics` (Prometheus),
//! `/healthz` (the process is alive), `/readyz` (a first snapshot is loaded
//! and the gateway is not draining) and `/config` (a read-only summary of the
//! current snapshot, with every problem found while building it).

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use router_core::balance::Level;
use router_kube::admin::reply;
use serde_json::json;
use tokio::net::TcpListener;

use crate::{config::SnapshotCell, telemetry::Metrics};

/// Shared with the data listener: flips to draining on shutdown.
#[derive(Default)]
pub struct Health {
    draining: AtomicBool,
}

impl Health {
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

pub struct Admin {
    pub cell: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

impl Admin {
    fn answer(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        match req.uri().path() {
            "/metrics" => reply(StatusCode::OK, "text/plain; version=0.0.4", self.metrics.render()),
            "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n"),
            "/readyz" if self.health.is_draining() => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "draining\n"),
            "/readyz" if !self.cell.is_loaded() => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "no configuration loaded yet\n"),
            "/readyz" => reply(StatusCode::OK, "text/plain", "ready\n"),
            "/config" => reply(StatusCode::OK, "application/json", self.config_json()),
            _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: try /metrics, /healthz, /readyz or /config\n"),
        }
    }

    fn config_json(&self) -> String {
        let snapshot = self.cell.load();
        let services: serde_json::Map<String, serde_json::Value> = snapshot
            .services
            .iter()
            .map(|(k, s)| {
                (
                    k.to_string(),
                    json!({
                        "protocol": format!("{:?}", s.protocol),
                        "trafficDistribution": format!("{:?}", s.traffic_distribution),
                        "readyEndpoints": s.endpoints.iter().zip(&s.localities).map(|(e, at)| json!({
                            "address": e.addr.to_string(), "health": e.health().as_str(), "inFlight": e.in_flight(),
                            "locality": at.to_string(),
                            // Its distance from this gateway, when the gateway knows where it is.
                            "level": snapshot.locality.as_ref().map(|gw| Level::of(gw, at).label()),
                        })).collect::<Vec<_>>(),
                        "totalEndpoints": s.total_endpoints,
                        "problems": snapshot.report.services.get(k).cloned().unwrap_or_default(),
                    }),
                )
            })
            .collect();
        let routes: serde_json::Map<String, serde_json::Value> =
            snapshot.report.routes.iter().map(|(k, problems)| (k.to_string(), json!({ "problems": problems }))).collect();
        let listeners: serde_json::Map<String, serde_json::Value> = snapshot
            .report
            .listeners
            .iter()
            .map(|(k, l)| {
                (
                    k.clone(),
                    json!({ "port": l.port, "programmed": l.programmed, "attachedRoutes": l.attached_routes, "problems": l.problems }),
                )
            })
            .collect();
        serde_json::to_string_pretty(&json!({
            "generation": self.cell.generation(),
            "locality": snapshot.locality.as_ref().map(ToString::to_string),
            "routesServed": snapshot.route_count,
            "routes": routes,
            "services": services,
            "ingresses": snapshot.report.ingresses,
            "listeners": listeners,
            "egress": snapshot.report.egress,
        }))
        .unwrap_or_default()
    }
}

/// Serves the admin endpoints until the process ends.
pub async fn serve(listener: TcpListener, admin: Arc<Admin>) {
    router_kube::admin::serve_with(listener, move |req| admin.answer(req)).await;
}
