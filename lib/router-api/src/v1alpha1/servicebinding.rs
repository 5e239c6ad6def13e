use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalObjectReference, ServiceEndpoint};

/// Makes the pods behind a Kubernetes Service the endpoints of a VPCService: each pod
/// joins a VPC through its Galactic attachment annotation, and its VPC address (from the
/// pod's Galactic EndpointSlice, else the attachment's interface addresses) becomes an endpoint.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "router.datum.net",
    version = "v1alpha1",
    kind = "ServiceBinding",
    plural = "servicebindings",
    singular = "servicebinding",
    shortname = "sbind",
    namespaced,
    status = "ServiceBindingStatus",
    category = "datum-router",
    doc = "A Kubernetes Service's pods as the endpoints of a VPCService.",
    printcolumn = r#"{"name":"Service","type":"string","jsonPath":".spec.serviceRef.name"}"#,
    printcolumn = r#"{"name":"VPCService","type":"string","jsonPath":".spec.vpcServiceRef.name"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.readyEndpoints"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.conditions[?(@.type==\"Synced\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingSpec {
    /// The Kubernetes Service (same namespace) whose selector picks the pods.
    pub service_ref: LocalObjectReference,
    /// The VPCService (same namespace) that receives the endpoints.
    pub vpc_service_ref: LocalObjectReference,
    /// Service port → VPC port. Empty: every endpoint uses the VPCService's port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub port_mappings: Vec<PortMapping>,
    /// Follow pod changes; false syncs once.
    #[serde(default = "yes")]
    pub auto_sync: bool,
}

fn yes() -> bool {
    true
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[schemars(range(min = 1, max = 65535))]
    pub service_port: i32,
    #[schemars(range(min = 1, max = 65535))]
    pub vpc_port: i32,
}

/// Observed state, written by router-controller.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingStatus {
    /// Conditions, one per type; each type has one writer (docs/ownership.md), which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<ServiceEndpoint>,
    #[serde(default)]
    pub ready_endpoints: i32,
    /// Pods selected by the Service that carry no Galactic attachment annotation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unattached_pods: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
}
