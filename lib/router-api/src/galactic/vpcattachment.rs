use k8s_openapi::api::core::v1::ObjectReference;
use kube::CustomResource;
use serde::{Deserialize, Serialize};

/// A Galactic VPCAttachment: one network interface joined to a VPC. Its interface
/// addresses (CIDR form, `10.1.1.1/24`) are where workloads on it are reached.
#[derive(CustomResource, Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[kube(
    group = "galactic.datumapis.com",
    version = "v1alpha",
    kind = "VPCAttachment",
    plural = "vpcattachments",
    singular = "vpcattachment",
    namespaced,
    status = "VPCAttachmentStatus",
    schema = "disabled"
)]
pub struct VPCAttachmentSpec {
    /// The VPC this attachment belongs to.
    pub vpc: ObjectReference,
    pub interface: AttachmentInterface,
    /// Additional routing entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routes: Option<Vec<VPCAttachmentRoute>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttachmentInterface {
    /// Interface name; Galactic defaults it to `galactic0`.
    #[serde(default = "default_interface")]
    pub name: String,
    /// IPv4 or IPv6 addresses in CIDR form.
    pub addresses: Vec<String>,
}

fn default_interface() -> String {
    "galactic0".to_owned()
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VPCAttachmentRoute {
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub via: Option<String>,
}

/// Written by Galactic.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VPCAttachmentStatus {
    /// 4 hex digits, assigned by Galactic.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<String>,
    #[serde(default)]
    pub ready: bool,
}

impl VPCAttachment {
    pub fn is_ready(&self) -> bool {
        self.status.as_ref().is_some_and(|s| s.ready)
    }

    pub fn identifier(&self) -> Option<&str> {
        self.status.as_ref()?.identifier.as_deref()
    }

    /// The namespace of the VPC this attachment refers to (the attachment's own when unset).
    pub fn vpc_namespace<'a>(&'a self, own: &'a str) -> &'a str {
        self.spec.vpc.namespace.as_deref().unwrap_or(own)
    }
}
