use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A Galactic VPC: one Layer 3 network spanning clouds.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "galactic.datumapis.com",
    version = "v1alpha",
    kind = "VPC",
    plural = "vpcs",
    singular = "vpc",
    namespaced,
    status = "VPCStatus",
    schema = "disabled"
)]
pub struct VPCSpec {
    /// The VPC's networks in IPv4 or IPv6 CIDR notation.
    pub networks: Vec<String>,
}

/// Written by Galactic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VPCStatus {
    /// 12 hex digits, assigned by Galactic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default)]
    pub ready: bool,
}

impl VPC {
    /// Whether Galactic reports the VPC ready.
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }

    /// The Galactic identifier, once assigned.
    pub fn identifier(&self) -> Option<&str> {
        self.status.as_ref()?.identifier.as_deref()
    }
}
