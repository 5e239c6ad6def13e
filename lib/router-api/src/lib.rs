//! The Datum Router API.
//!
//! * [`v1alpha1`]: the router's own kinds in `router.datum.net/v1alpha1`
//!   (VPCService, VPCRoute, ServiceBinding, VPCIngress, VPCEgress). Their CRDs
//!   are generated from these types by the `crdgen` binary; the YAML under
//!   `manifests/crds/` is never edited by hand.
//! * [`galactic`]: read-only bindings to Galactic's `galactic.datumapis.com/v1alpha`
//!   VPC and VPCAttachment, plus the identifier rules Galactic uses on the wire.
//!   Their CRDs belong to Galactic and are not generated here.
//! * [`schema`]: validation of untyped objects against the generated CRD schemas
//!   (structural schema and CEL rules) without an API server, so standalone mode
//!   and tests reject exactly what a cluster would.
//! * [`manifest`]: reading multi-document YAML into typed objects.
#![forbid(unsafe_code)]

pub mod datum;
pub mod galactic;
pub mod manifest;
pub mod schema;
pub mod v1alpha1;
