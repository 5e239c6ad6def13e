//! The metrics every control-plane component exposes. Labels are kinds and
//! results, never object names: a cluster's object count must not become
//! the metric's cardinality.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry};

pub struct KubeMetrics {
    pub registry: Registry,
    /// Reconcile passes, by kind (`pass`: the controller's whole-world pass;
    /// `VPCService`: discovery's walk) and result. A pass only offers writes:
    /// their failures count in `status_writes`.
    pub reconciles: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    /// Status writes, by kind and result: applied, error (each failed attempt;
    /// retried), gone (the object was deleted), coalesced (replaced by a newer
    /// status before it was sent).
    pub status_writes: IntCounterVec,
    /// Status writes waiting or in flight.
    pub status_queue: IntGauge,
    /// Watches that failed and were restarted, by kind.
    pub watch_restarts: IntCounterVec,
    /// 1 while this replica holds the lease.
    pub leader: IntGauge,
}

fn must<T>(r: prometheus::Result<T>) -> T {
    r.expect("static metric definition")
}

impl KubeMetrics {
    /// Metrics named `datum_router_<component>_*`.
    pub fn new(component: &str) -> Self {
        let registry = Registry::new_custom(Some(format!("datum_router_{component}")), None).expect("static prefix");
        let reconciles =
            must(IntCounterVec::new(Opts::new("reconciles_total", "Reconcile passes, by kind and result."), &["kind", "result"]));
        let reconcile_duration = must(HistogramVec::new(
            HistogramOpts::new("reconcile_duration_seconds", "Time of a reconcile pass, by kind.")
                .buckets(vec![0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0]),
            &["kind"],
        ));
        let status_writes = must(IntCounterVec::new(
            Opts::new("status_writes_total", "Status writes, by kind and result (applied, error, gone, coalesced)."),
            &["kind", "result"],
        ));
        let status_queue = must(IntGauge::new("status_queue_depth", "Status writes waiting or in flight."));
        let watch_restarts =
            must(IntCounterVec::new(Opts::new("watch_restarts_total", "Watches that failed and were restarted, by kind."), &["kind"]));
        let leader = must(IntGauge::new("leader", "1 while this replica holds the leader lease."));
        for c in [
            Box::new(reconciles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(reconcile_duration.clone()),
            Box::new(status_writes.clone()),
            Box::new(status_queue.clone()),
            Box::new(watch_restarts.clone()),
            Box::new(leader.clone()),
        ] {
            must(registry.register(c));
        }
        Self { registry, reconciles, reconcile_duration, status_writes, status_queue, watch_restarts, leader }
    }
}
