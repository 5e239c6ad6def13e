//! What one tunnel-gateway replica should run, from the TunnelBindings and
//! VPCServices it reads (files or the cluster): a listener per binding on its
//! VPCService's port, and the connectors each may use. Pure: a problem with
//! one binding (its VPCService missing, a conflict, a connector id that does
//! not parse) is reported for that binding and the rest is planned.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
};

use iroh::{PublicKey, RelayUrl};
use router_api::{
    manifest::object_key,
    v1alpha1::{TunnelBinding, VPCService, tunnel_conflicts},
};

use crate::key::parse_endpoint_id;

/// How one connector is reached.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectorPlan {
    pub id: PublicKey,
    pub addresses: Vec<SocketAddr>,
    pub relay: Option<RelayUrl>,
}

/// One tunnel-backed VPCService on this replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingPlan {
    /// `namespace/name` of the TunnelBinding.
    pub binding: String,
    /// The VPCService's port: where this replica listens.
    pub port: u16,
    /// The CONNECT authority.
    pub target: String,
    pub connectors: Vec<ConnectorPlan>,
}

/// Everything to run, and what could not be.
#[derive(Debug, Default)]
pub struct Plan {
    pub bindings: Vec<BindingPlan>,
    /// Problems by `namespace/name` of the binding.
    pub problems: BTreeMap<String, Vec<String>>,
}

impl Plan {
    /// Plans every binding; bindings are taken oldest first, so conflicts resolve the same way everywhere.
    pub fn build(bindings: &[TunnelBinding], services: &[VPCService]) -> Self {
        let mut plan = Plan::default();
        let losers = tunnel_conflicts(bindings);
        let mut ordered: Vec<&TunnelBinding> = bindings.iter().collect();
        ordered.sort_by_key(|b| (b.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |t| t.0.as_second()), object_key(&b.metadata)));
        let mut ports: BTreeMap<u16, String> = BTreeMap::new();
        for b in ordered {
            let (namespace, name) = object_key(&b.metadata);
            let label = format!("{namespace}/{name}");
            let mut problems = Vec::new();
            if let Some((wns, wname)) = losers.get(&(namespace.clone(), name.clone())) {
                problems.push(format!(
                    "conflicts with TunnelBinding {wns}/{wname}, which serves VPCService {} and is older",
                    b.spec.vpc_service_ref.name
                ));
                plan.problems.insert(label, problems);
                continue;
            }
            let service = services.iter().find(|s| object_key(&s.metadata) == (namespace.clone(), b.spec.vpc_service_ref.name.clone()));
            let Some(port) = service.and_then(|s| u16::try_from(s.spec.port).ok()) else {
                problems.push(format!("VPCService {namespace}/{} not found", b.spec.vpc_service_ref.name));
                plan.problems.insert(label, problems);
                continue;
            };
            if let Some(other) = ports.get(&port) {
                problems.push(format!("port {port} is already served for TunnelBinding {other} on this replica"));
                plan.problems.insert(label, problems);
                continue;
            }
            let mut seen = BTreeSet::new();
            let connectors: Vec<ConnectorPlan> = b
                .spec
                .connectors
                .iter()
                .filter_map(|c| {
                    let parsed = parse_endpoint_id(&c.endpoint_id).and_then(|id| {
                        let addresses = addresses(&c.addresses)?;
                        let relay = c
                            .relay_url
                            .as_deref()
                            .map(|u| u.parse::<RelayUrl>().map_err(|e| format!("relayUrl {u:?}: {e}")))
                            .transpose()?;
                        Ok(ConnectorPlan { id, addresses, relay })
                    });
                    match parsed {
                        Ok(p) if seen.insert(p.id) => Some(p),
                        Ok(p) => {
                            problems.push(format!("connector {} is listed twice", p.id.fmt_short()));
                            None
                        }
                        Err(e) => {
                            problems.push(format!("connector {}: {e}", c.endpoint_id));
                            None
                        }
                    }
                })
                .collect();
            if connectors.is_empty() {
                problems.push("no usable connector".to_owned());
            } else {
                ports.insert(port, label.clone());
                plan.bindings.push(BindingPlan { binding: label.clone(), port, target: b.spec.target.authority(), connectors });
            }
            if !problems.is_empty() {
                plan.problems.insert(label, problems);
            }
        }
        plan
    }
}

/// Where a connector is reached, as a TunnelBinding lists it (`IP:port` each).
fn addresses(texts: &[String]) -> Result<Vec<SocketAddr>, String> {
    texts.iter().map(|a| a.parse::<SocketAddr>().map_err(|e| format!("address {a:?}: {e}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u8) -> String {
        iroh::SecretKey::from_bytes(&[seed; 32]).public().to_string()
    }

    fn binding(name: &str, service: &str, created: &str, connectors: serde_json::Value) -> TunnelBinding {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "TunnelBinding",
            "metadata": {"name": name, "namespace": "n", "creationTimestamp": created},
            "spec": {"vpcServiceRef": {"name": service}, "target": {"host": "127.0.0.1", "port": 5173}, "connectors": connectors}
        }))
        .unwrap()
    }

    fn service(name: &str, port: u16) -> VPCService {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService", "metadata": {"name": name, "namespace": "n"},
            "spec": {"vpcAttachmentSelector": {"matchLabels": {"app": "tunnel"}}, "port": port}
        }))
        .unwrap()
    }

    #[test]
    fn bindings_become_listeners_on_their_service_port_with_their_connectors() {
        let plan = Plan::build(
            &[binding(
                "laptop",
                "api",
                "2026-01-01T00:00:00Z",
                serde_json::json!([{"endpointId": id(1), "addresses": ["127.0.0.1:4000"]}]),
            )],
            &[service("api", 8081)],
        );
        assert!(plan.problems.is_empty(), "{:?}", plan.problems);
        let b = &plan.bindings[0];
        assert_eq!((b.binding.as_str(), b.port, b.target.as_str()), ("n/laptop", 8081, "127.0.0.1:5173"));
        assert_eq!(b.connectors[0].addresses, ["127.0.0.1:4000".parse().unwrap()]);
    }

    #[test]
    fn conflicts_missing_services_shared_ports_and_bad_connectors_are_reported_per_binding() {
        let good = serde_json::json!([{"endpointId": id(1)}]);
        let plan = Plan::build(
            &[
                binding("older", "api", "2026-01-01T00:00:00Z", good.clone()),
                binding("newer", "api", "2026-02-01T00:00:00Z", good.clone()),
                binding("orphan", "gone", "2026-01-01T00:00:00Z", good.clone()),
                binding("same-port", "other", "2026-03-01T00:00:00Z", good.clone()),
                binding(
                    "half-bad",
                    "third",
                    "2026-01-01T00:00:00Z",
                    serde_json::json!([{"endpointId": id(2), "addresses": ["nope"]}, {"endpointId": id(3)}]),
                ),
            ],
            &[service("api", 8081), service("other", 8081), service("third", 8082)],
        );
        let served: Vec<&str> = plan.bindings.iter().map(|b| b.binding.as_str()).collect();
        assert_eq!(served, ["n/half-bad", "n/older"]);
        assert!(plan.problems["n/newer"][0].contains("conflicts with TunnelBinding n/older"));
        assert!(plan.problems["n/orphan"][0].contains("VPCService n/gone not found"));
        assert!(plan.problems["n/same-port"][0].contains("port 8081 is already served for TunnelBinding n/older"));
        assert!(plan.problems["n/half-bad"][0].contains("address \"nope\""));
        assert_eq!(plan.bindings[0].connectors.len(), 1, "the good connector of half-bad is kept");
    }
}
