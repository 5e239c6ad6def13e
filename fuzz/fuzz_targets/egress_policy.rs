//! VPCEgress policies compiled from specs that skipped schema validation (see
//! route_table for why), then asked about arbitrary destinations and clients.
//! Input: a JSON array `[<VPCEgressSpec>, [network CIDR, ...], [[host, port], ...], [client IP, ...]]`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_api::v1alpha1::{VPCEgress, VPCEgressSpec};
use router_core::egress::EgressPolicy;

type Input = (VPCEgressSpec, Vec<String>, Vec<(String, u16)>, Vec<String>);

fuzz_target!(|data: &[u8]| {
    let Ok((spec, networks, destinations, clients)) = serde_json::from_slice::<Input>(data) else { return };
    let egress = VPCEgress::new("egress", spec);
    let mut problems = Vec::new();
    let policy = EgressPolicy::compile(&egress, &networks, &mut problems);
    for (host, port) in destinations.iter().take(64) {
        let first = policy.decide(host, *port);
        assert_eq!(first, policy.decide(host, *port), "decisions are deterministic");
    }
    for client in clients.iter().take(64) {
        if let Ok(ip) = client.parse() {
            policy.covers(ip);
        }
    }
});
