//! The route table compiler and lookup on route specs that skipped schema
//! validation: the cluster path takes whatever the API server stored, and an
//! older API server (Kubernetes 1.24, without the CRDs' CEL rules) stores
//! more than the schemas here would allow. Input: a JSON array
//! `[[<VPCRouteSpec>, ...], [[host, path-and-query, method], ...]]`.
#![no_main]

use std::sync::Arc;

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use router_api::v1alpha1::{VPCRoute, VPCRouteSpec, VPCService, VPCServiceSpec};
use router_core::{EndpointStore, Objects, RequestView, Snapshot, SnapshotInput, normalize_host};

fuzz_target!(|data: &[u8]| {
    let Ok((specs, requests)) = serde_json::from_slice::<(Vec<VPCRouteSpec>, Vec<(String, String, String)>)>(data) else { return };
    let routes: Vec<VPCRoute> = specs
        .into_iter()
        .take(64)
        .enumerate()
        .map(|(i, spec)| {
            let mut route = VPCRoute::new(&format!("r{i}"), spec);
            route.metadata.namespace = Some("default".to_owned());
            route
        })
        .collect();
    let mut service = VPCService::new("svc", serde_json::from_str::<VPCServiceSpec>(r#"{"port": 80}"#).expect("a minimal service"));
    service.metadata.namespace = Some("default".to_owned());
    let services = [service];
    let input = SnapshotInput {
        services: (&services).into(),
        routes: (&routes).into(),
        egress: Objects::Owned(&[]),
        vpcs: Objects::Owned(&[]),
        ingresses: Objects::Owned(&[]),
        reserved_ports: &[],
        locality: None,
    };
    let snapshot = Snapshot::build(input, &EndpointStore::default());
    let headers = HeaderMap::new();
    for (host, target, method) in requests.iter().take(64) {
        let host = normalize_host(host);
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (target.as_str(), None),
        };
        let method = Method::from_bytes(method.as_bytes()).unwrap_or(Method::GET);
        let view = RequestView { host: &host, path, query, method: &method, headers: &headers };
        let first = snapshot.routes.lookup(&view).map(Arc::as_ptr);
        assert_eq!(first, snapshot.routes.lookup(&view).map(Arc::as_ptr), "lookups are deterministic");
    }
});
