//! Prometheus metrics. Labels are bounded by configuration, never by
//! traffic: route and service are object names, method is folded to the
//! standard set, status to its class. The raw path is never a label.

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, TryLockError},
};

use http::Method;
use prometheus::{Histogram, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, exponential_buckets};
use router_core::{ServiceKey, Snapshot, snapshot::ServiceTarget};

use super::series::{RequestLabels, RequestSeries, SeriesCache};

pub struct Metrics {
    registry: Registry,
    pub requests: IntCounterVec,
    pub duration: HistogramVec,
    pub request_size: HistogramVec,
    pub response_size: HistogramVec,
    pub upstream_errors: IntCounterVec,
    pub active_connections: IntGauge,
    pub in_flight: IntGauge,
    pub endpoints: IntGaugeVec,
    pub reloads: IntCounterVec,
    /// Seconds from a configuration change being read to its snapshot published.
    pub config_build: Histogram,
    pub routes: IntGauge,
    pub mirrors: IntCounterVec,
    pub egress: IntCounterVec,
    pub endpoint_health: IntGaugeVec,
    pub health_checks: IntCounterVec,
    pub health_transitions: IntCounterVec,
    pub retries: IntCounterVec,
    pub breaker_transitions: IntCounterVec,
    pub breaker_state: IntGaugeVec,
    pub tls_handshakes: IntCounterVec,
    pub tls_handshake_errors: IntCounterVec,
    pub listeners: IntGaugeVec,
    pub listener_bind_errors: IntCounterVec,
    pub watch_restarts: IntCounterVec,
    pub timeouts: IntCounterVec,
    pub connections_refused: IntCounterVec,
    pub http2_floods: IntCounterVec,
    pub http2_goaways: IntCounterVec,
    pub locality_requests: IntCounterVec,
    /// Series of recent label sets, found without hashing strings ([`super::series`]).
    series: Mutex<SeriesCache>,
    /// The service targets whose endpoint gauges are set.
    recorded_services: Mutex<BTreeMap<ServiceKey, Arc<ServiceTarget>>>,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    // Metric definitions are static: a failure here is a programming error caught by every test run.
    r.expect("static metric definition")
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("datum_router".into()), None).expect("static prefix");
        let requests = must(IntCounterVec::new(
            Opts::new("requests_total", "Requests answered, by route, destination service, method and status class."),
            &["route", "service", "method", "status_class"],
        ));
        let duration = must(HistogramVec::new(
            HistogramOpts::new("request_duration_seconds", "Time from request head to response head, by route and status class.")
                .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0]),
            &["route", "status_class"],
        ));
        let sizes = || exponential_buckets(64.0, 4.0, 10).expect("static buckets");
        let request_size = must(HistogramVec::new(
            HistogramOpts::new("request_size_bytes", "Request body sizes where Content-Length is known, by route.").buckets(sizes()),
            &["route"],
        ));
        let response_size = must(HistogramVec::new(
            HistogramOpts::new(
                "response_size_bytes",
                "Response body sizes where the length is known (the body's exact length, else Content-Length), by route.",
            )
            .buckets(sizes()),
            &["route"],
        ));
        let upstream_errors = must(IntCounterVec::new(
            Opts::new("upstream_errors_total", "Failed upstream attempts, by service and error label."),
            &["service", "error"],
        ));
        let active_connections = must(IntGauge::new("active_connections", "Open client connections."));
        let in_flight = must(IntGauge::new("in_flight_requests", "Requests being processed."));
        let endpoints = must(IntGaugeVec::new(
            Opts::new("service_endpoints", "Endpoints per VPCService, by state (ready = resolved and ready; total = all listed)."),
            &["service", "state"],
        ));
        let reloads = must(IntCounterVec::new(Opts::new("config_reloads_total", "Configuration snapshot loads, by result."), &["result"]));
        let config_build = must(Histogram::with_opts(
            HistogramOpts::new(
                "config_build_seconds",
                "Time to build and publish a configuration snapshot (standalone: read, parse and build; cluster: build from the caches).",
            )
            .buckets(vec![0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
        ));
        let routes = must(IntGauge::new("routes", "Routes in the current snapshot."));
        let egress = must(IntCounterVec::new(
            Opts::new("egress_decisions_total", "VPCEgress decisions on proxy requests, by policy, rule and action."),
            &["policy", "rule", "action"],
        ));
        let endpoint_health = must(IntGaugeVec::new(
            Opts::new("endpoint_health", "1 for the current active-check state of each checked endpoint (unknown, healthy, unhealthy)."),
            &["service", "endpoint", "state"],
        ));
        let health_checks = must(IntCounterVec::new(
            Opts::new("health_checks_total", "Active health check probes, by service and result."),
            &["service", "result"],
        ));
        let health_transitions = must(IntCounterVec::new(
            Opts::new("health_transitions_total", "Endpoint health state changes, by service and new state."),
            &["service", "state"],
        ));
        let retries = must(IntCounterVec::new(
            Opts::new(
                "retries_total",
                "Retry decisions, by route, the failure that asked for one, and outcome (retried, budget-exhausted).",
            ),
            &["route", "reason", "outcome"],
        ));
        let breaker_transitions = must(IntCounterVec::new(
            Opts::new("breaker_transitions_total", "Endpoint circuit breaker state changes, by route and new state (open, closed)."),
            &["route", "state"],
        ));
        let breaker_state = must(IntGaugeVec::new(
            Opts::new("endpoint_breaker_state", "1 for each endpoint's breaker state as of its last transition (open, closed), by route."),
            &["route", "endpoint", "state"],
        ));
        let mirrors = must(IntCounterVec::new(
            Opts::new("mirrored_requests_total", "Mirror filter copies, by outcome (sent, failed, skipped-body, no-endpoint, unresolved)."),
            &["outcome"],
        ));
        let tls_handshakes = must(IntCounterVec::new(
            Opts::new("tls_handshakes_total", "Completed client TLS handshakes, by protocol version and ALPN protocol."),
            &["version", "alpn"],
        ));
        let tls_handshake_errors = must(IntCounterVec::new(
            Opts::new("tls_handshake_errors_total", "Failed client TLS handshakes, by reason (handshake, timeout, no-listener)."),
            &["reason"],
        ));
        let listeners = must(IntGaugeVec::new(
            Opts::new("listeners", "Open listening sockets, by port and protocol (HTTP, HTTPS)."),
            &["port", "protocol"],
        ));
        let listener_bind_errors = must(IntCounterVec::new(
            Opts::new("listener_bind_errors_total", "VPCIngress ports that could not be opened, by port."),
            &["port"],
        ));
        let watch_restarts = must(IntCounterVec::new(
            Opts::new("watch_restarts_total", "Cluster mode: watches of the API server that failed and were restarted, by kind."),
            &["kind"],
        ));
        let timeouts = must(IntCounterVec::new(
            Opts::new(
                "timeouts_total",
                "Timeouts, by route and kind: connect (the endpoint did not accept in time), per-try, request (the deadline across tries), idle (a response stream went quiet), pending (waiting for one of maxConnections).",
            ),
            &["route", "kind"],
        ));
        let connections_refused = must(IntCounterVec::new(
            Opts::new("connections_refused_total", "Client connections refused before serving, by reason (max-connections)."),
            &["reason"],
        ));
        let http2_floods = must(IntCounterVec::new(
            Opts::new(
                "http2_flood_closes_total",
                "HTTP/2 client connections closed by the flood guard, by the bound passed (control-frames, resets, window-updates).",
            ),
            &["bound"],
        ));
        let http2_goaways = must(IntCounterVec::new(
            Opts::new(
                "http2_goaways_sent_total",
                "GOAWAY frames sent to HTTP/2 clients, by error code (NO_ERROR on a drain, ENHANCE_YOUR_CALM on a flood).",
            ),
            &["code"],
        ));
        let locality_requests = must(IntCounterVec::new(
            Opts::new(
                "locality_requests_total",
                "Requests to destinations with trafficDistribution PreferClose, by route and the level of the endpoint picked (zone, city, region, any).",
            ),
            &["route", "level"],
        ));
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(locality_requests.clone()),
            Box::new(connections_refused.clone()),
            Box::new(http2_floods.clone()),
            Box::new(http2_goaways.clone()),
            Box::new(timeouts.clone()),
            Box::new(watch_restarts.clone()),
            Box::new(tls_handshakes.clone()),
            Box::new(tls_handshake_errors.clone()),
            Box::new(listeners.clone()),
            Box::new(listener_bind_errors.clone()),
            Box::new(duration.clone()),
            Box::new(request_size.clone()),
            Box::new(response_size.clone()),
            Box::new(upstream_errors.clone()),
            Box::new(active_connections.clone()),
            Box::new(in_flight.clone()),
            Box::new(endpoints.clone()),
            Box::new(reloads.clone()),
            Box::new(config_build.clone()),
            Box::new(routes.clone()),
            Box::new(mirrors.clone()),
            Box::new(egress.clone()),
            Box::new(endpoint_health.clone()),
            Box::new(health_checks.clone()),
            Box::new(health_transitions.clone()),
            Box::new(retries.clone()),
            Box::new(breaker_transitions.clone()),
            Box::new(breaker_state.clone()),
        ] {
            must(registry.register(c));
        }
        Self {
            registry,
            requests,
            duration,
            request_size,
            response_size,
            upstream_errors,
            active_connections,
            in_flight,
            endpoints,
            reloads,
            config_build,
            routes,
            mirrors,
            egress,
            endpoint_health,
            health_checks,
            health_transitions,
            retries,
            breaker_transitions,
            breaker_state,
            tls_handshakes,
            tls_handshake_errors,
            listeners,
            listener_bind_errors,
            watch_restarts,
            timeouts,
            connections_refused,
            http2_floods,
            http2_goaways,
            locality_requests,
            series: Mutex::default(),
            recorded_services: Mutex::default(),
        }
    }

    /// Records a snapshot built and published in `took`.
    pub fn record_load(&self, took: std::time::Duration) {
        self.reloads.with_label_values(&["success"]).inc();
        self.config_build.observe(took.as_secs_f64());
    }

    /// Records an answered request: its count, its duration in seconds, and
    /// its request and response sizes where Content-Length said them.
    pub fn record_request(&self, labels: &RequestLabels<'_>, seconds: f64, request_size: Option<u64>, response_size: Option<u64>) {
        match self.series.try_lock() {
            Ok(mut cache) => cache.get(self, labels).record(seconds, request_size, response_size),
            Err(TryLockError::Poisoned(p)) => p.into_inner().get(self, labels).record(seconds, request_size, response_size),
            // Another worker holds the table: the families (a shared read lock) rather than a wait.
            Err(TryLockError::WouldBlock) => RequestSeries::of(self, labels).record(seconds, request_size, response_size),
        }
    }

    /// Gauges that follow the snapshot: routes and endpoints per service.
    /// Only services whose target is not the one recorded last time are set
    /// (a rebuild shares the targets of unchanged services), and only the
    /// series of services that are gone are removed: resetting and creating
    /// 5,000 series at 2,500 services cost a fifth of a cluster rebuild.
    pub fn record_snapshot(&self, snapshot: &Snapshot) {
        self.routes.set(snapshot.route_count as i64);
        let mut recorded = self.recorded_services.lock().unwrap_or_else(|p| p.into_inner());
        for (key, svc) in &snapshot.services {
            if recorded.get(key).is_some_and(|was| Arc::ptr_eq(was, svc)) {
                continue;
            }
            self.endpoints.with_label_values(&[&*svc.label, "ready"]).set(svc.endpoints.len() as i64);
            self.endpoints.with_label_values(&[&*svc.label, "total"]).set(svc.total_endpoints as i64);
            recorded.insert(key.clone(), svc.clone());
        }
        // Every service of the snapshot is recorded now: more recorded ones means some are gone.
        if recorded.len() > snapshot.services.len() {
            recorded.retain(|key, svc| {
                let present = snapshot.services.contains_key(key);
                if !present {
                    for state in ["ready", "total"] {
                        let _ = self.endpoints.remove_label_values(&[&*svc.label, state]);
                    }
                }
                present
            });
        }
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> Vec<u8> {
        router_kube::admin::render(&self.registry)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// A bounded label for a method.
pub fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::CONNECT => "CONNECT",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::PATCH => "PATCH",
        _ => "OTHER",
    }
}

/// `2xx`, `4xx`, ...
pub fn status_class(status: u16) -> &'static str {
    match status {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_request_recorded_while_another_worker_holds_the_series_table_still_counts() {
        let metrics = Metrics::new();
        let route: Arc<str> = "default/r".into();
        let labels = RequestLabels { route: Some(&route), service: None, method: "GET", class: "2xx" };
        let held = metrics.series.lock().unwrap();
        metrics.record_request(&labels, 0.01, Some(5), None);
        drop(held);
        metrics.record_request(&labels, 0.01, None, Some(7));
        assert_eq!(metrics.requests.with_label_values(&["default/r", "none", "GET", "2xx"]).get(), 2);
        assert_eq!(metrics.request_size.with_label_values(&["default/r"]).get_sample_count(), 1);
        assert_eq!(metrics.response_size.with_label_values(&["default/r"]).get_sample_count(), 1);
    }

    fn service(name: &str, ready: usize) -> Arc<router_api::v1alpha1::VPCService> {
        let endpoints: Vec<_> =
            (0..ready).map(|i| serde_json::json!({"address": format!("10.0.0.{i}"), "port": 80, "ready": true})).collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
                "metadata": {"name": name, "namespace": "default"}, "spec": {"port": 80},
                "status": {"endpoints": endpoints, "readyEndpoints": ready}
            }))
            .expect("a service"),
        )
    }

    /// The endpoint gauges as the exposition shows them: (service, state, value).
    fn endpoint_gauges(metrics: &Metrics) -> Vec<(String, String, i64)> {
        let families = metrics.registry.gather();
        let Some(family) = families.iter().find(|f| f.name() == "datum_router_service_endpoints") else { return Vec::new() };
        let mut gauges: Vec<_> = family
            .get_metric()
            .iter()
            .map(|m| (m.get_label()[0].value().to_owned(), m.get_label()[1].value().to_owned(), m.get_gauge().get_value() as i64))
            .collect();
        gauges.sort();
        gauges
    }

    #[test]
    fn endpoint_gauges_follow_the_snapshots_services_changed_and_gone() {
        let (metrics, store, mut builder) =
            (Metrics::new(), router_core::EndpointStore::default(), router_core::SnapshotBuilder::default());
        let build = |builder: &mut router_core::SnapshotBuilder, services: &[Arc<router_api::v1alpha1::VPCService>]| {
            builder.build(router_core::SnapshotInput { services: router_core::Objects::Shared(services), ..Default::default() }, &store)
        };
        metrics.record_snapshot(&build(&mut builder, &[service("a", 1), service("b", 2)]));
        let g = |s: &str, state: &str, n: i64| (format!("default/{s}"), state.to_owned(), n);
        assert_eq!(endpoint_gauges(&metrics), [g("a", "ready", 1), g("a", "total", 1), g("b", "ready", 2), g("b", "total", 2)]);
        // b changed, a went away and c came: the same number of services.
        metrics.record_snapshot(&build(&mut builder, &[service("b", 3), service("c", 0)]));
        assert_eq!(endpoint_gauges(&metrics), [g("b", "ready", 3), g("b", "total", 3), g("c", "ready", 0), g("c", "total", 0)]);
    }
}
