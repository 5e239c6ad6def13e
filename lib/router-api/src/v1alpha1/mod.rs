//! `router.datum.net/v1alpha1`: the user-facing kinds. Field semantics are
//! documented in `docs/api.md`; every field doc here becomes the CRD's
//! description, which `kubectl explain` shows.

mod common;
mod conditions;
mod duration;
mod servicebinding;
mod tunnelbinding;
mod vpcegress;
mod vpcingress;
mod vpcroute;
mod vpcservice;

pub use common::{CA_CERT, LocalObjectReference, NamespacedObjectReference, SecretUse, TLS_CERT, TLS_KEY, secret_value};
pub use conditions::{ConditionStatus, Conditions, condition_types, reasons};
pub use duration::{Duration, DurationError};
pub use servicebinding::*;
pub use tunnelbinding::*;
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
    [VPCService::crd(), VPCRoute::crd(), ServiceBinding::crd(), VPCIngress::crd(), VPCEgress::crd(), TunnelBinding::crd()]
        .into_iter()
        .map(for_every_server)
        .collect()
}

/// Rewrites what schemars generates into what every API server from 1.24 on
/// accepts. An `Option` of an enum comes out as `nullable: true` with a
/// `null` member in `enum`; kubectl before 1.28's OpenAPI handling refuses
/// that member (`enum: unknown object type "nil"`), and `nullable` alone
/// already says the same, so the member is dropped.
fn for_every_server(
    crd: k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
) -> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    fn drop_null_enum_members(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::Array(members)) = map.get_mut("enum") {
                    members.retain(|m| !m.is_null());
                }
                map.values_mut().for_each(drop_null_enum_members);
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(drop_null_enum_members),
            _ => {}
        }
    }
    let Ok(mut value) = serde_json::to_value(&crd) else { return crd };
    drop_null_enum_members(&mut value);
    serde_json::from_value(value).unwrap_or(crd)
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

/// namespace/name of every Secret these VPCIngresses and VPCServices refer to.
pub fn referenced_secrets<'a>(
    ingresses: impl IntoIterator<Item = &'a VPCIngress>,
    services: impl IntoIterator<Item = &'a VPCService>,
) -> std::collections::BTreeSet<(String, String)> {
    let namespace = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.namespace.clone().unwrap_or_else(|| crate::manifest::DEFAULT_NAMESPACE.to_owned())
    };
    let from_ingresses = ingresses.into_iter().flat_map(|i| {
        let ns = namespace(&i.metadata);
        i.spec.secret_refs().into_iter().map(move |(name, _)| (ns.clone(), name.to_owned()))
    });
    let from_services = services.into_iter().flat_map(|s| {
        let ns = namespace(&s.metadata);
        s.spec.secret_refs().into_iter().map(move |(name, _)| (ns.clone(), name.to_owned()))
    });
    from_ingresses.chain(from_services).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn referenced_secrets_cover_listener_certificates_client_cas_and_upstream_tls() {
        let ingress: VPCIngress = serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress", "metadata": {"name": "i", "namespace": "a"},
            "spec": {"vpcRef": {"name": "v"}, "listeners": [{"name": "https", "port": 443, "protocol": "HTTPS",
                "tls": {"certificateRefs": [{"name": "cert"}], "clientValidation": {"caCertificateRef": {"name": "clients"}}}}]}
        }))
        .unwrap();
        let service: VPCService = serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService", "metadata": {"name": "s"},
            "spec": {"vpcAttachmentRef": {"name": "x"}, "port": 443, "protocol": "HTTPS",
                "tls": {"caCertificateRef": {"name": "ca"}, "clientCertificateRef": {"name": "me"}}}
        }))
        .unwrap();
        assert_eq!(ingress.spec.secret_refs(), [("cert", SecretUse::Certificate), ("clients", SecretUse::CaBundle)]);
        assert_eq!(service.spec.secret_refs(), [("ca", SecretUse::CaBundle), ("me", SecretUse::Certificate)]);
        let all: Vec<(String, String)> = referenced_secrets([&ingress], [&service]).into_iter().collect();
        let want = [("a", "cert"), ("a", "clients"), ("default", "ca"), ("default", "me")];
        assert_eq!(all, want.map(|(n, s)| (n.to_owned(), s.to_owned())));
    }
}
