//! `router.datum.net/v1alpha1`: the user-facing kinds. Field semantics are
//! documented in `docs/api.md`; every field doc here becomes the CRD's
//! description, which `kubectl explain` shows.

mod common;
mod conditions;
mod duration;
mod servicebinding;
mod vpcegress;
mod vpcingress;
mod vpcroute;
mod vpcservice;

pub use common::{LocalObjectReference, NamespacedObjectReference};
pub use conditions::{ConditionStatus, Conditions, condition_types, reasons};
pub use duration::{Duration, DurationError};
pub use servicebinding::*;
pub use vpcegress::*;
pub use vpcingress::*;
pub use vpcroute::*;
pub use vpcservice::*;

/// The API group of every router kind.
pub const GROUP: &str = "router.datum.net";
/// The served (and stored) version.
pub const VERSION: &str = "v1alpha1";

/// Every CRD this crate defines, in a stable order (the order `crdgen` writes them).
pub fn crds() -> Vec<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> {
    use kube::CustomResourceExt;
    vec![VPCService::crd(), VPCRoute::crd(), ServiceBinding::crd(), VPCIngress::crd(), VPCEgress::crd()]
}

/// Every CRD rendered as YAML, with the file name it is checked in under
/// (`<plural>.<group>.yaml`).
pub fn render_crds() -> Result<Vec<(String, String)>, serde_saphyr::ser::Error> {
    crds()
        .into_iter()
        .map(|crd| {
            let file = format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"));
            serde_saphyr::to_string(&crd).map(|yaml| (file, yaml))
        })
        .collect()
}
