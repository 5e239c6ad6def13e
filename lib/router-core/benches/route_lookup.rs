//! Route lookup cost against the number of routes (10, 1,000, 10,000): the
//! table is indexed by host and path segments, so the cost should stay flat.
//! A second shape spreads the routes over 500 host names with a regular
//! expression route on every host (regexes are tried in order, so they are
//! the case that could grow); a third measures building the snapshot itself.
//! Run: cargo bench -p router-core --bench route_lookup

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use router_api::v1alpha1::{Destination, HeaderMatch, MatchType, NamespacedObjectReference, RouteMatch, VPCRoute, VPCRouteSpec};
use router_core::{EndpointStore, RequestView, Snapshot, SnapshotInput};

/// n routes spread over n/10 hostnames, each with its own path prefix and a header match on every other one.
fn routes(n: usize) -> Vec<VPCRoute> {
    routes_over(n, |i| i / 10, |_| None)
}

/// n routes over at most 500 hostnames; every 20th route matches a regular expression instead of a prefix.
fn routes_with_regex(n: usize) -> Vec<VPCRoute> {
    routes_over(n, |i| i % 500, |i| (i % 20 == 0).then(|| format!("^/api/v[0-9]+/items{i}/[a-z]+$")))
}

fn routes_over(n: usize, host: impl Fn(usize) -> usize, regex: impl Fn(usize) -> Option<String>) -> Vec<VPCRoute> {
    (0..n)
        .map(|i| {
            let path_regex = regex(i);
            let mut r = VPCRoute::new(
                &format!("r{i}"),
                VPCRouteSpec {
                    hostnames: vec![format!("svc{}.example.com", host(i))],
                    r#match: Some(RouteMatch {
                        path_prefix: path_regex.is_none().then(|| format!("/api/v{}/items{}", i % 10, i)),
                        path_regex,
                        headers: if i % 2 == 0 {
                            vec![HeaderMatch { name: "x-tenant".into(), value: Some(format!("t{i}")), type_: MatchType::Exact }]
                        } else {
                            vec![]
                        },
                        ..Default::default()
                    }),
                    destinations: vec![Destination {
                        vpc_service_ref: NamespacedObjectReference { name: "svc".into(), namespace: None },
                        weight: 1,
                        traffic_distribution: None,
                    }],
                    ..Default::default()
                },
            );
            r.metadata.namespace = Some("default".into());
            r
        })
        .collect()
}

fn lookup(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup");
    for n in [10usize, 1_000, 10_000] {
        let routes = routes(n);
        let snapshot = Snapshot::build(SnapshotInput { routes: (&routes).into(), ..Default::default() }, &EndpointStore::default());
        let i = (n / 2) | 1; // an odd route: no header condition
        let host = format!("svc{}.example.com", i / 10);
        let path = format!("/api/v{}/items{}/detail", i % 10, i);
        let headers = HeaderMap::new();
        let req = RequestView { host: &host, path: &path, query: Some("page=2"), method: &Method::GET, headers: &headers };
        assert!(snapshot.routes.lookup(&req).is_some(), "benchmark request must match");
        group.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| b.iter(|| snapshot.routes.lookup(std::hint::black_box(req))));
    }
    group.finish();
}

fn lookup_with_regex(c: &mut Criterion) {
    let mut group = c.benchmark_group("route_lookup_500_hosts_regex");
    for n in [10usize, 1_000, 10_000] {
        let routes = routes_with_regex(n);
        let snapshot = Snapshot::build(SnapshotInput { routes: (&routes).into(), ..Default::default() }, &EndpointStore::default());
        // A prefix route on a host that also carries regex routes (when n is large enough).
        let i = (n / 2) | 1;
        let host = format!("svc{}.example.com", i % 500);
        let path = format!("/api/v{}/items{}/detail", i % 10, i);
        let headers = HeaderMap::new();
        let req = RequestView { host: &host, path: &path, query: None, method: &Method::GET, headers: &headers };
        assert!(snapshot.routes.lookup(&req).is_some(), "benchmark request must match");
        group.bench_with_input(BenchmarkId::from_parameter(n), &req, |b, req| b.iter(|| snapshot.routes.lookup(std::hint::black_box(req))));
    }
    group.finish();
}

fn snapshot_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("snapshot_build");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let routes = routes_with_regex(n);
        group.bench_with_input(BenchmarkId::from_parameter(n), &routes, |b, routes| {
            b.iter(|| Snapshot::build(SnapshotInput { routes: routes.into(), ..Default::default() }, &EndpointStore::default()))
        });
    }
    group.finish();
}

criterion_group!(benches, lookup, lookup_with_regex, snapshot_build);
criterion_main!(benches);
