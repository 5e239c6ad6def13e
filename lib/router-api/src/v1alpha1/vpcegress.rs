use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::LocalObjectReference;

/// Outbound traffic from a VPC to outside services, for VPC clients that use the
/// gateway as their HTTP proxy (plain requests and CONNECT). The first rule that
/// matches decides; otherwise defaultAction does.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "router.datum.net",
    version = "v1alpha1",
    kind = "VPCEgress",
    plural = "vpcegresses",
    singular = "vpcegress",
    shortname = "vegr",
    namespaced,
    status = "VPCEgressStatus",
    category = "datum-router",
    doc = "Rules for outbound traffic from a VPC to outside services.",
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".spec.vpcRef.name"}"#,
    printcolumn = r#"{"name":"Default","type":"string","jsonPath":".spec.defaultAction"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VPCEgressSpec {
    pub vpc_ref: LocalObjectReference,
    #[serde(default)]
    pub default_action: EgressAction,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub rules: Vec<EgressRule>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum EgressAction {
    #[default]
    Deny,
    Allow,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EgressRule {
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    pub to: EgressTarget,
    /// Destination ports; empty means any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64), inner(range(min = 1, max = 65535)))]
    pub ports: Vec<i32>,
    pub action: EgressAction,
}

/// An IPv4 network (dotted quad, each octet 0–255, prefix 0–32) or an IPv6 one
/// (hex groups and colons, an optional embedded IPv4 tail, prefix 0–128).
pub const CIDR_PATTERN: &str = concat!(
    r"^(((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])/(3[0-2]|[12]?[0-9])",
    r"|[0-9a-fA-F]{0,4}(:[0-9a-fA-F]{0,4}){1,7}(:((25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))?/(12[0-8]|1[01][0-9]|[1-9]?[0-9]))$"
);

/// Destinations by host name (exact or `*.` wildcard) or by CIDR.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("size(self.hosts) + size(self.cidrs) > 0").message("at least one of hosts and cidrs is required"))]
pub struct EgressTarget {
    #[serde(default)]
    #[schemars(
        length(max = 64),
        inner(length(min = 1, max = 253), regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"))
    )]
    pub hosts: Vec<String>,
    /// IPv4 or IPv6 networks such as `203.0.113.0/24` or `2001:db8::/32`.
    // A pattern, not CEL's isCIDR: every API server from 1.24 on checks patterns, isCIDR came
    // in 1.31. The gateways parse each entry exactly and report one that does not parse.
    #[serde(default)]
    #[schemars(length(max = 64), inner(length(min = 1, max = 43), regex(pattern = CIDR_PATTERN)))]
    pub cidrs: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VPCEgressStatus {
    /// Conditions, one per type; each type has one writer (docs/ownership.md), which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
