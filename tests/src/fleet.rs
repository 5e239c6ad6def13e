//! A synthetic fleet of the shape the control-plane scale measurements use:
//! N VPCAttachments (ready) in one VPC, N VPCServices (one per attachment)
//! and `routes_per_service` × N VPCRoutes (one hostname per service, a path
//! prefix each). The controller's benchmark and its write-amplification tests
//! reconcile it in memory; the cluster scale test creates it on an API server.

use router_api::{
    galactic::{VPC, VPCAttachment},
    v1alpha1::{VPCRoute, VPCService},
};
use serde_json::json;

/// The objects of one fleet, all in `namespace`.
pub struct Fleet {
    pub vpcs: Vec<VPC>,
    pub attachments: Vec<VPCAttachment>,
    pub services: Vec<VPCService>,
    pub routes: Vec<VPCRoute>,
}

fn typed<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).expect("fleet objects are valid")
}

/// `services` services with `routes_per_service` routes each; every object has a uid,
/// a generation, a resourceVersion and a creation time, as the API server gives them.
pub fn fleet(namespace: &str, services: usize, routes_per_service: usize) -> Fleet {
    let meta = |name: String, i: usize| {
        json!({ "name": name, "namespace": namespace, "generation": 1, "resourceVersion": "1", "uid": format!("uid-{name}"),
                "creationTimestamp": format!("2026-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60) })
    };
    let vpc = typed(json!({
        "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC", "metadata": meta("vpc".into(), 0),
        "spec": { "networks": ["10.0.0.0/8"] }, "status": { "ready": true, "identifier": "0a1b2c3d4e5f" },
    }));
    let attachments = (0..services)
        .map(|i| {
            typed(json!({
                "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPCAttachment", "metadata": meta(format!("att-{i}"), i),
                "spec": { "vpc": { "name": "vpc" },
                          "interface": { "name": "galactic0", "addresses": [format!("10.{}.{}.{}/16", i / 65536 % 256, i / 256 % 256, i % 256)] } },
                "status": { "ready": true, "identifier": format!("{i:04x}") },
            }))
        })
        .collect();
    let service_objects = (0..services)
        .map(|i| {
            typed(json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService", "metadata": meta(format!("svc-{i}"), i),
                "spec": { "vpcAttachmentRef": { "name": format!("att-{i}") }, "port": 8080, "protocol": "HTTP" },
            }))
        })
        .collect();
    let routes = (0..services)
        .flat_map(|i| {
            (0..routes_per_service).map(move |p| {
                typed(json!({
                    "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute", "metadata": meta(format!("route-{i}-{p}"), i),
                    "spec": { "hostnames": [format!("svc-{i}.example.com")],
                              "matches": [{ "pathPrefix": format!("/p{p}") }],
                              "destinations": [{ "vpcServiceRef": { "name": format!("svc-{i}") } }] },
                }))
            })
        })
        .collect();
    Fleet { vpcs: vec![vpc], attachments, services: service_objects, routes }
}
