use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{LocalObjectReference, SecretUse};

/// A service inside a Galactic VPC: the attachments its endpoints live on,
/// the port and protocol they speak, and how their health is checked.
#[derive(CustomResource, KubeSchema, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    derive = "PartialEq",
    group = "router.datum.net",
    version = "v1alpha1",
    kind = "VPCService",
    plural = "vpcservices",
    singular = "vpcservice",
    shortname = "vsvc",
    namespaced,
    status = "VPCServiceStatus",
    category = "datum-router",
    doc = "A service inside a Galactic VPC, resolved to VPC IP endpoints.",
    printcolumn = r#"{"name":"Protocol","type":"string","jsonPath":".spec.protocol"}"#,
    printcolumn = r#"{"name":"Port","type":"integer","jsonPath":".spec.port"}"#,
    printcolumn = r#"{"name":"VPC","type":"string","jsonPath":".status.vpc.name"}"#,
    printcolumn = r#"{"name":"Endpoints","type":"integer","jsonPath":".status.readyEndpoints"}"#,
    printcolumn = r#"{"name":"Accepted","type":"string","jsonPath":".status.conditions[?(@.type==\"Accepted\")].status"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.vpcAttachmentRef) != has(self.vpcAttachmentSelector)").message("exactly one of vpcAttachmentRef or vpcAttachmentSelector must be set"))]
pub struct VPCServiceSpec {
    /// The one Galactic VPCAttachment (same namespace) whose interface addresses are this service's endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_attachment_ref: Option<LocalObjectReference>,
    /// Selects many VPCAttachments (same namespace) by label; every match contributes endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc_attachment_selector: Option<LabelSelector>,
    /// The protocol the endpoints speak.
    #[serde(default)]
    pub protocol: ServiceProtocol,
    /// The port the endpoints listen on.
    #[schemars(range(min = 1, max = 65535))]
    pub port: i32,
    /// Which addresses of an attachment become endpoints.
    #[serde(default)]
    pub address_family: AddressFamily,
    /// Active health checking; when omitted only passive outlier detection applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// TLS from the gateway to the endpoints (required when protocol is HTTPS; optional client certificate for mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<UpstreamTls>,
    /// PreferClose: each gateway sends to the endpoints nearest to it (same zone, same city,
    /// same region, then any), spilling over by health. Any (the default): distance is ignored.
    /// A VPCRoute destination may override it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<TrafficDistribution>,
}

/// Whether a gateway prefers the endpoints nearest to it (named after the Kubernetes Service field).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum TrafficDistribution {
    /// Distance is ignored.
    #[default]
    Any,
    /// The nearest level of endpoints with enough healthy capacity takes the traffic.
    PreferClose,
}

/// The protocol a VPCService's endpoints speak.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ServiceProtocol {
    /// HTTP/1.1 over TCP.
    #[default]
    #[serde(rename = "HTTP")]
    Http,
    /// HTTP/2 over cleartext TCP (h2c, prior knowledge).
    #[serde(rename = "HTTP2")]
    Http2,
    /// gRPC: HTTP/2 with trailers.
    #[serde(rename = "GRPC")]
    Grpc,
    /// HTTP/1.1 or HTTP/2 over TLS (ALPN decides).
    #[serde(rename = "HTTPS")]
    Https,
}

/// Address family of the endpoints taken from an attachment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum AddressFamily {
    IPv4,
    IPv6,
    /// Both families; IPv6 endpoints are listed first and preferred.
    #[default]
    DualStack,
}

/// Active health checking of every endpoint, once per endpoint per gateway.
/// Exactly one probe kind applies: httpPath, grpcService, or tcp (the default when none is given).
#[derive(KubeSchema, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("[has(self.httpPath), has(self.grpcService), has(self.tcp)].filter(x, x).size() <= 1").message("at most one of httpPath, grpcService and tcp may be set"))]
#[x_kube(validation = Rule::new("self.timeoutSeconds < self.intervalSeconds").message("timeoutSeconds must be less than intervalSeconds"))]
pub struct HealthCheck {
    /// HTTP GET of this path; a status within expectedStatuses passes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/"))]
    pub http_path: Option<String>,
    /// grpc.health.v1.Health/Check with this service name ("" checks the server as a whole).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub grpc_service: Option<String>,
    /// A TCP connect check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpHealthCheck>,
    /// HTTP status codes that pass, as an inclusive range; default 200-399.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<StatusRange>,
    /// Seconds between probes of one endpoint (each gateway adds up to 10% jitter).
    #[serde(default = "default_interval")]
    #[schemars(range(min = 1, max = 3600))]
    pub interval_seconds: i32,
    /// Seconds a probe may take before it counts as failed.
    #[serde(default = "default_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: i32,
    /// Consecutive passes that make an endpoint healthy.
    #[serde(default = "default_healthy")]
    #[schemars(range(min = 1, max = 100))]
    pub healthy_threshold: i32,
    /// Consecutive failures that make an endpoint unhealthy.
    #[serde(default = "default_unhealthy")]
    #[schemars(range(min = 1, max = 100))]
    pub unhealthy_threshold: i32,
}

fn default_interval() -> i32 {
    10
}
fn default_timeout() -> i32 {
    2
}
fn default_healthy() -> i32 {
    2
}
fn default_unhealthy() -> i32 {
    3
}

/// A TCP connect probe (no settings).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TcpHealthCheck {}

/// An inclusive range of HTTP status codes.
#[derive(KubeSchema, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max"))]
pub struct StatusRange {
    #[schemars(range(min = 100, max = 599))]
    pub min: i32,
    #[schemars(range(min = 100, max = 599))]
    pub max: i32,
}

impl VPCServiceSpec {
    /// The Secrets (same namespace) of its upstream TLS, and what each must hold.
    pub fn secret_refs(&self) -> Vec<(&str, SecretUse)> {
        let Some(tls) = &self.tls else { return Vec::new() };
        let ca = tls.ca_certificate_ref.iter().map(|r| (r.name.as_str(), SecretUse::CaBundle));
        ca.chain(tls.client_certificate_ref.iter().map(|r| (r.name.as_str(), SecretUse::Certificate))).collect()
    }
}

/// TLS from the gateway to a service's endpoints.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UpstreamTls {
    /// The name to verify in the endpoint's certificate and to send as SNI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253))]
    pub server_name: Option<String>,
    /// A Secret (same namespace) whose `ca.crt` holds the CA bundle that signs the endpoints' certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate_ref: Option<LocalObjectReference>,
    /// A `kubernetes.io/tls` Secret (same namespace) presented to the endpoints (mTLS).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<LocalObjectReference>,
}

/// The observed state of a VPCService. `vpc`, `endpoints` and `readyEndpoints` are written
/// by service-discovery (or by router-controller from a ServiceBinding); conditions by their owners (docs/ownership.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VPCServiceStatus {
    /// Conditions, one per type; each type has one writer (docs/ownership.md), which server-side apply keeps apart.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// The VPC the attachments belong to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vpc: Option<VpcIdentity>,
    /// The resolved endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<ServiceEndpoint>,
    /// How many endpoints are ready.
    #[serde(default)]
    pub ready_endpoints: i32,
}

/// A VPC by name and its Galactic identifier.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct VpcIdentity {
    pub name: String,
    /// The VPC's 12-hex-digit Galactic identifier, when assigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
}

/// One resolved endpoint of a VPCService.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ServiceEndpoint {
    /// The VPC IP address (no prefix length).
    pub address: String,
    pub port: i32,
    /// The VPCAttachment the address comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attachment: Option<String>,
    /// The pod the address belongs to (endpoints from a ServiceBinding).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<String>,
    pub ready: bool,
    /// Where the endpoint is (from its attachment's topology labels or Location), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Datum's city code (`topology.datum.net/city-code`), e.g. DFW.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city_code: Option<String>,
}

impl ServiceEndpoint {
    pub fn locality(&self) -> crate::datum::Locality {
        crate::datum::Locality { region: self.region.clone(), zone: self.zone.clone(), city_code: self.city_code.clone() }
    }
}
