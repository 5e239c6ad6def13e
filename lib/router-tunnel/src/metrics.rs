//! The tunnel's Prometheus metrics. Labels are bounded: a binding's
//! `namespace/name` (on a connector, the target it serves), a connector's
//! endpoint id, and small fixed sets (results, directions, paths, sides).

use prometheus::{GaugeVec, IntCounterVec, IntGaugeVec, Opts, Registry};

/// Every tunnel metric, registered in `registry`.
pub struct TunnelMetrics {
    pub registry: Registry,
    /// `result`: ok, refused, no-connector, open-failed, forbidden, bad-gateway.
    pub connections: IntCounterVec,
    pub active_streams: IntGaugeVec,
    /// `direction`: to-origin, from-origin.
    pub bytes: IntCounterVec,
    pub connector_up: IntGaugeVec,
    /// 1 for the path in use (`Direct` or `Relay`), 0 for the other.
    pub connector_path: IntGaugeVec,
    pub connector_rtt: GaugeVec,
    /// `result`: ok, error.
    pub dials: IntCounterVec,
    /// `side`: connector (a gateway not in --allow-gateway), gateway (a peer that dialed a gateway).
    pub denied_peers: IntCounterVec,
    /// Cluster mode: watch restarts by kind.
    pub watch_restarts: IntCounterVec,
}

impl TunnelMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        macro_rules! metric {
            ($ty:ident, $name:literal, $help:literal, $labels:expr) => {{
                let m = $ty::new(Opts::new($name, $help), $labels).expect("metric definition");
                registry.register(Box::new(m.clone())).expect("metric registered once");
                m
            }};
        }
        Self {
            connections: metric!(
                IntCounterVec,
                "datum_tunnel_connections_total",
                "TCP connections carried (or not) through a tunnel, by outcome",
                &["binding", "result"]
            ),
            active_streams: metric!(IntGaugeVec, "datum_tunnel_active_streams", "Tunnel streams open now", &["binding"]),
            bytes: metric!(IntCounterVec, "datum_tunnel_bytes_total", "Bytes spliced through tunnels", &["binding", "direction"]),
            connector_up: metric!(
                IntGaugeVec,
                "datum_tunnel_connector_up",
                "1 while the connection to a connector is up",
                &["binding", "connector"]
            ),
            connector_path: metric!(
                IntGaugeVec,
                "datum_tunnel_connector_path",
                "1 for the path the connection to a connector uses",
                &["binding", "connector", "path"]
            ),
            connector_rtt: metric!(
                GaugeVec,
                "datum_tunnel_connector_rtt_seconds",
                "Round-trip time to a connector",
                &["binding", "connector"]
            ),
            dials: metric!(IntCounterVec, "datum_tunnel_dials_total", "Connection attempts to connectors", &["result"]),
            denied_peers: metric!(IntCounterVec, "datum_tunnel_denied_peers_total", "Peers refused after the handshake", &["side"]),
            watch_restarts: metric!(
                IntCounterVec,
                "datum_tunnel_watch_restarts_total",
                "Watches restarted after an error (cluster mode)",
                &["kind"]
            ),
            registry,
        }
    }
}

impl Default for TunnelMetrics {
    fn default() -> Self {
        Self::new()
    }
}
