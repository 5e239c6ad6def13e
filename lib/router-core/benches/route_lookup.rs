//! Route lookup cost against the number of routes (10, 1,000, 10,000): the
//! table is indexed by host and path segments, so the cost should stay flat.
//! Run: cargo bench -p router-core --bench route_lookup

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use http::{HeaderMap, Method};
use router_api::v1alpha1::{Destination, HeaderMatch, MatchType, NamespacedObjectReference, RouteMatch, VPCRoute, VPCRouteSpec};
use router_core::{EndpointStore, RequestView, Snapshot, SnapshotInput};

/// n routes spread over n/10 hostnames, each with its own path prefix and a header match on every other one.
fn routes(n: usize) -> Vec<VPCRoute> {
    (0..n)
        .map(|i| {
            let mut r = VPCRoute::new(
                &format!("r{i}"),
                VPCRouteSpec {
                    hostnames: vec![format!("svc{}.example.com", i / 10)],
                    r#match: Some(RouteMatch {
                        path_prefix: Some(format!("/api/v{}/items{}", i % 10, i)),
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
        let snapshot = Snapshot::build(SnapshotInput { routes: &routes, ..Default::default() }, &EndpointStore::default());
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

criterion_group!(benches, lookup);
criterion_main!(benches);
