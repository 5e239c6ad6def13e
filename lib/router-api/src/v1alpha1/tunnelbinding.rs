use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// An endpoint id: an Ed25519 public key as 64 hex digits, or as 52 characters
/// of base32 (RFC 4648, lower case) or z-base-32, the encodings iroh prints.
pub const ENDPOINT_ID_PATTERN: &str = "^([0-9a-f]{64}|[a-z1-9]{52})$";

/// Makes a service that is not on any VPC (a laptop, an on-prem box behind NAT)
/// the backend of a VPCService. The tunnel-gateway replicas are the VPCService's
/// endpoints; each dials the listed connectors by endpoint id over Iroh and
/// carries every TCP connection it accepts on the VPCService's port through a
/// tunnel to one live connector, which connects to `target` next to the service.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "router.datum.net",
    version = "v1alpha1",
    kind = "TunnelBinding",
    plural = "tunnelbindings",
    singular = "tunnelbinding",
    shortname = "tbind",
    namespaced,
    status = "TunnelBindingStatus",
    category = "datum-router",
    doc = "A service outside every VPC, reached over Iroh tunnels, as the backend of a VPCService.",
    printcolumn = r#"{"name":"VPCService","type":"string","jsonPath":".spec.vpcServiceRef.name"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Connectors","type":"integer","jsonPath":".status.reachableConnectors"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("self.connectors.all(c, self.connectors.exists_one(d, d.endpointId == c.endpointId))").message("connectors: each endpointId may be listed once"))]
#[serde(rename_all = "camelCase")]
pub struct TunnelBindingSpec {
    /// The VPCService (same namespace) this tunnel serves; tunnel-gateway listens on its
    /// `spec.port`, and the VPCService selects the tunnel-gateway replicas' VPCAttachments.
    pub vpc_service_ref: LocalObjectReference,
    /// Where the connector connects, next to the service (the CONNECT authority).
    pub target: TunnelTarget,
    /// The connectors that may carry this service: only these ids are dialed and accepted.
    #[schemars(length(min = 1, max = 16))]
    pub connectors: Vec<TunnelConnector>,
}

/// A host and port as the connector sees them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TunnelTarget {
    /// A host name or an IP address.
    #[schemars(length(min = 1, max = 253), regex(pattern = r"^[A-Za-z0-9.:\-\[\]]+$"))]
    pub host: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
}

/// One connector agent (`tunnel-gateway connect`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelConnector {
    /// The connector's endpoint id, as `tunnel-gateway id` prints it.
    #[schemars(regex(pattern = ENDPOINT_ID_PATTERN))]
    pub endpoint_id: String,
    /// Direct addresses (`IP:port`) the connector can be reached on, if any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 8), inner(length(min = 1, max = 64)))]
    pub addresses: Vec<String>,
    /// The connector's home relay, if it uses one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = "^https?://"))]
    pub relay_url: Option<String>,
}

/// Observed state: Accepted and ResolvedRefs by router-controller; Ready, connectors,
/// reachableConnectors and gatewayEndpointIds by tunnel-gateway (docs/ownership.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TunnelBindingStatus {
    /// Conditions, one per type; each type has one writer, which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The endpoint ids of the tunnel-gateway replicas: give them to each connector's
    /// `--allow-gateway`. Each replica applies its own id, so the set is their union.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "set"))]
    pub gateway_endpoint_ids: Vec<String>,
    /// Each connector as the tunnel-gateway leader sees it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["endpointId"]))]
    pub connectors: Vec<ConnectorStatus>,
    /// How many connectors are reachable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reachable_connectors: Option<i32>,
}

/// One connector's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConnectorStatus {
    pub endpoint_id: String,
    pub reachable: bool,
    /// `Direct` or `Relay`: the path the connection uses now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

impl TunnelTarget {
    /// The CONNECT authority: `host:port`, an IPv6 host in brackets.
    pub fn authority(&self) -> String {
        if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Bindings that lose a conflict, each with the winner: two TunnelBindings for
/// one VPCService conflict, and the oldest (then the first by namespace/name) wins.
pub fn tunnel_conflicts(bindings: &[TunnelBinding]) -> std::collections::BTreeMap<(String, String), (String, String)> {
    let order = |b: &TunnelBinding| {
        (b.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |t| t.0.as_second()), crate::manifest::object_key(&b.metadata))
    };
    let mut winner: std::collections::BTreeMap<(String, String), &TunnelBinding> = std::collections::BTreeMap::new();
    for b in bindings {
        let service = (crate::manifest::object_key(&b.metadata).0, b.spec.vpc_service_ref.name.clone());
        winner
            .entry(service)
            .and_modify(|w| {
                if order(b) < order(w) {
                    *w = b
                }
            })
            .or_insert(b);
    }
    bindings
        .iter()
        .filter_map(|b| {
            let key = crate::manifest::object_key(&b.metadata);
            let w = winner.get(&(key.0.clone(), b.spec.vpc_service_ref.name.clone()))?;
            let winner_key = crate::manifest::object_key(&w.metadata);
            (winner_key != key).then_some((key, winner_key))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(name: &str, service: &str, created: &str) -> TunnelBinding {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "TunnelBinding",
            "metadata": {"name": name, "namespace": "n", "creationTimestamp": created},
            "spec": {"vpcServiceRef": {"name": service}, "target": {"host": "127.0.0.1", "port": 80},
                     "connectors": [{"endpointId": "0".repeat(64)}]}
        }))
        .unwrap()
    }

    #[test]
    fn two_bindings_for_one_service_conflict_and_the_oldest_wins() {
        let bindings = [
            binding("newer", "svc", "2026-02-01T00:00:00Z"),
            binding("older", "svc", "2026-01-01T00:00:00Z"),
            binding("alone", "other", "2026-03-01T00:00:00Z"),
        ];
        let losers = tunnel_conflicts(&bindings);
        assert_eq!(losers.len(), 1);
        assert_eq!(losers[&("n".to_owned(), "newer".to_owned())], ("n".to_owned(), "older".to_owned()));
    }

    #[test]
    fn ipv6_targets_are_bracketed_in_the_authority() {
        assert_eq!(TunnelTarget { host: "::1".into(), port: 8080 }.authority(), "[::1]:8080");
        assert_eq!(TunnelTarget { host: "localhost".into(), port: 5173 }.authority(), "localhost:5173");
    }
}
