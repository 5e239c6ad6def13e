use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalObjectReference, SecretUse};

/// External traffic into a VPC: listeners on the gateway that VPCRoutes attach to
/// through `ingressRefs` and hostname intersection (Gateway API rules).
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "router.datum.net",
    version = "v1alpha1",
    kind = "VPCIngress",
    plural = "vpcingresses",
    singular = "vpcingress",
    shortname = "ving",
    namespaced,
    status = "VPCIngressStatus",
    category = "datum-router",
    doc = "Listeners that bring external traffic into a VPC.",
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".spec.vpcRef.name"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Programmed","type":"string","jsonPath":".status.conditions[?(@.type==\"Programmed\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct VPCIngressSpec {
    /// The Galactic VPC (same namespace) this ingress leads into.
    pub vpc_ref: LocalObjectReference,
    /// Listeners, unique by name.
    #[schemars(length(min = 1, max = 64))]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["name"]))]
    pub listeners: Vec<Listener>,
}

impl VPCIngressSpec {
    /// The Secrets (same namespace) the listeners refer to, and what each must hold.
    pub fn secret_refs(&self) -> Vec<(&str, SecretUse)> {
        let mut out = Vec::new();
        for tls in self.listeners.iter().filter_map(|l| l.tls.as_ref()) {
            out.extend(tls.certificate_refs.iter().map(|c| (c.name.as_str(), SecretUse::Certificate)));
            out.extend(tls.client_validation.iter().map(|v| (v.ca_certificate_ref.name.as_str(), SecretUse::CaBundle)));
        }
        out
    }
}

/// One port on the gateway. HTTPS listeners need tls; HTTP listeners must not have it.
#[derive(KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.protocol == 'HTTPS' ? has(self.tls) : !has(self.tls)").message("tls is required for protocol HTTPS and not allowed for HTTP"))]
pub struct Listener {
    #[schemars(length(min = 1, max = 63), regex(pattern = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"))]
    pub name: String,
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    #[serde(default)]
    pub protocol: ListenerProtocol,
    /// Hostnames served (exact or `*.` wildcard); empty serves every host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(
        length(max = 16),
        inner(regex(pattern = r"^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"), length(min = 1, max = 253))
    )]
    pub hostnames: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ListenerProtocol {
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    #[serde(rename = "HTTPS")]
    Https,
}

/// TLS termination on a listener.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `kubernetes.io/tls` Secrets (same namespace); SNI picks among them, the first is the default.
    #[schemars(length(min = 1, max = 64))]
    pub certificate_refs: Vec<LocalObjectReference>,
    /// The oldest TLS version accepted. Only 1.2 and 1.3 exist here: older versions are insecure and refused.
    #[serde(default)]
    pub min_version: TlsVersion,
    /// Require client certificates signed by this CA (a Secret with `ca.crt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_validation: Option<ClientValidation>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TlsVersion {
    #[default]
    #[serde(rename = "1.2")]
    Tls12,
    #[serde(rename = "1.3")]
    Tls13,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClientValidation {
    pub ca_certificate_ref: LocalObjectReference,
}

/// Observed state, written by router-controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VPCIngressStatus {
    /// Conditions, one per type; each type has one writer (docs/ownership.md), which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    pub name: String,
    pub attached_routes: i32,
    /// Conditions, one per type; each type has one writer (docs/ownership.md), which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
}
