//! Building a snapshot over the fleet the control-plane scale test runs
//! (`tests/tests/e2e_scale.rs`, `bench/cluster-scale.sh`): N/4 VPCServices,
//! each with one ready endpoint, and four VPCRoutes per service (one
//! hostname per service, four path prefixes), held as a reflector holds them
//! (`Arc`s). Measured at 1,000 and 10,000 routes:
//!
//! * `full`: a snapshot from nothing (a gateway's first build);
//! * `one_route_changed` / `one_service_changed`: a rebuild after one route's
//!   spec or one service's endpoints changed, which is what a cluster gateway
//!   does on nearly every watch event.
//!
//! Run: cargo bench -p router-core --bench snapshot_build

use std::sync::Arc;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use router_api::v1alpha1::{VPCRoute, VPCService};
use router_core::{EndpointStore, Objects, Snapshot, SnapshotBuilder, SnapshotInput};

fn service(s: usize, ready: bool) -> VPCService {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
        "metadata": {"name": format!("svc{s}"), "namespace": "default", "uid": format!("uid-svc{s}"), "resourceVersion": "1"},
        "spec": {"port": 8080, "vpcRef": {"name": "vpc"}},
        "status": {
            "endpoints": [{"address": format!("10.{}.{}.{}", s >> 16 & 255, s >> 8 & 255, s & 255), "port": 8080, "ready": ready}],
            "readyEndpoints": i32::from(ready)
        }
    }))
    .expect("a service")
}

fn route(i: usize, prefix: &str) -> VPCRoute {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
        "metadata": {"name": format!("r{i}"), "namespace": "default", "uid": format!("uid-r{i}"), "resourceVersion": "1",
                     "creationTimestamp": "2026-12-04T00:00:00Z"},
        "spec": {
            "hostnames": [format!("svc{}.example.com", i / 4)],
            "match": {"pathPrefix": prefix},
            "destinations": [{"vpcServiceRef": {"name": format!("svc{}", i / 4)}}]
        }
    }))
    .expect("a route")
}

struct Fleet {
    services: Vec<Arc<VPCService>>,
    routes: Vec<Arc<VPCRoute>>,
}

impl Fleet {
    fn new(routes: usize) -> Self {
        Self {
            services: (0..routes / 4).map(|s| Arc::new(service(s, true))).collect(),
            routes: (0..routes).map(|i| Arc::new(route(i, &format!("/p{}", i % 4)))).collect(),
        }
    }

    fn input(&self) -> SnapshotInput<'_> {
        SnapshotInput { services: Objects::Shared(&self.services), routes: Objects::Shared(&self.routes), ..Default::default() }
    }
}

fn full(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build/full");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let fleet = Fleet::new(n);
        let store = EndpointStore::default();
        group.bench_with_input(BenchmarkId::from_parameter(n), &fleet, |b, fleet| b.iter(|| Snapshot::build(fleet.input(), &store)));
    }
    group.finish();
}

/// Rebuilds with a [`SnapshotBuilder`] that built the fleet before, each
/// after `change` swapped one object for another version of it (made
/// beforehand: parsing it is not what is measured).
fn rebuild(c: &mut Criterion, name: &str, change: impl Fn(&mut Fleet, bool)) {
    let mut group = c.benchmark_group(name);
    group.sample_size(20);
    for n in [1_000usize, 10_000] {
        let mut fleet = Fleet::new(n);
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let mut previous = builder.build(fleet.input(), &store);
        let mut flip = false;
        group.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| {
                flip = !flip;
                change(&mut fleet, flip);
                // Replacing the previous snapshot frees it, as publishing one does.
                previous = builder.build(fleet.input(), &store);
            })
        });
        assert!(previous.route_count == n);
    }
    group.finish();
}

fn one_route_changed(c: &mut Criterion) {
    let versions = |n: usize| [Arc::new(route(n / 2, "/changed")), Arc::new(route(n / 2, "/p2"))];
    let (small, large) = (versions(1_000), versions(10_000));
    rebuild(c, "snapshot_build/one_route_changed", |fleet, flip| {
        let n = fleet.routes.len();
        fleet.routes[n / 2] = (if n == 1_000 { &small } else { &large })[usize::from(flip)].clone();
    });
}

fn one_service_changed(c: &mut Criterion) {
    let versions = |n: usize| [Arc::new(service(n / 8, false)), Arc::new(service(n / 8, true))];
    let (small, large) = (versions(1_000), versions(10_000));
    rebuild(c, "snapshot_build/one_service_changed", |fleet, flip| {
        let n = fleet.routes.len();
        fleet.services[n / 8] = (if n == 1_000 { &small } else { &large })[usize::from(flip)].clone();
    });
}

criterion_group!(benches, full, one_route_changed, one_service_changed);
criterion_main!(benches);
