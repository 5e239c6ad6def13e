//! Bindings to Galactic's `galactic.datumapis.com/v1alpha` API, read-only.
//!
//! The CRDs belong to Galactic (`fixtures/galactic/` holds the real ones); these
//! types mirror them field for field so that whatever Galactic writes
//! deserialises and serialises back unchanged. Nothing here generates a CRD.

mod identifier;
mod vpc;
mod vpcattachment;

pub use identifier::{IdentifierError, base62, tenant_id, vrf_device_name};
pub use vpc::{VPC, VPCSpec, VPCStatus};
pub use vpcattachment::{AttachmentInterface, VPCAttachment, VPCAttachmentRoute, VPCAttachmentSpec, VPCAttachmentStatus};

/// The API group.
pub const GROUP: &str = "galactic.datumapis.com";
/// The version this project reads.
pub const VERSION: &str = "v1alpha";

/// The pod annotation that joins a pod to a VPC through the named VPCAttachment
/// (in the pod's namespace).
pub const POD_ATTACHMENT_ANNOTATION: &str = "k8s.v1alpha.galactic.datumapis.com/vpc-attachment";

/// The label on Galactic's per-pod EndpointSlices: `<vpc base62>-<attachment base62>`.
pub const TENANT_ID_LABEL: &str = "galactic.datum.net/tenant-id";

/// The annotation carrying the SRv6 SID on Galactic's per-pod EndpointSlices.
pub const SRV6_SID_ANNOTATION: &str = "galactic.datum.net/srv6-sid";
