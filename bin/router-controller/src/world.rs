//! Everything the controller reads, as one consistent picture, and the
//! helpers its status computations share. Statuses are pure functions of a
//! `World`: a change to any object recomputes every status that could depend
//! on it (the reverse mapping is the whole picture), and only statuses that
//! differ from what is stored are written.

use k8s_openapi::{
    api::{
        core::v1::{Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta},
    jiff::Timestamp,
};
use router_api::{
    galactic::{VPC, VPCAttachment},
    v1alpha1::{ConditionStatus, Conditions, ServiceBinding, VPCEgress, VPCIngress, VPCRoute, VPCService},
};
use router_core::{EndpointStore, Snapshot, SnapshotInput};

/// The objects of the cluster the controller reconciles from.
#[derive(Default)]
pub struct World {
    pub vpcs: Vec<VPC>,
    pub attachments: Vec<VPCAttachment>,
    pub services: Vec<VPCService>,
    pub routes: Vec<VPCRoute>,
    pub bindings: Vec<ServiceBinding>,
    pub ingresses: Vec<VPCIngress>,
    pub egress: Vec<VPCEgress>,
    pub secrets: Vec<Secret>,
    pub kube_services: Vec<Service>,
    pub pods: Vec<Pod>,
    pub endpoint_slices: Vec<EndpointSlice>,
}

/// (namespace, name) of an object; `default` for objects without a namespace.
pub fn key(meta: &ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| "default".to_owned()), meta.name.clone().unwrap_or_default())
}

impl World {
    /// The routing snapshot the gateways build from these objects: route
    /// compilation, listener conflicts and attachment, egress policies. The
    /// controller reports what the data plane will do, computed by the same code.
    pub fn snapshot(&self) -> Snapshot {
        let input = SnapshotInput {
            services: &self.services,
            routes: &self.routes,
            egress: &self.egress,
            vpcs: &self.vpcs,
            ingresses: &self.ingresses,
            reserved_ports: &[],
        };
        Snapshot::build(input, &EndpointStore::default())
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&VPCService> {
        self.services.iter().find(|s| key(&s.metadata) == (namespace.to_owned(), name.to_owned()))
    }

    pub fn vpc(&self, namespace: &str, name: &str) -> Option<&VPC> {
        self.vpcs.iter().find(|v| key(&v.metadata) == (namespace.to_owned(), name.to_owned()))
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        self.secrets.iter().find(|s| key(&s.metadata) == (namespace.to_owned(), name.to_owned()))
    }

    /// Whether a Secret exists with every one of `fields` in its data.
    pub fn secret_problem(&self, namespace: &str, name: &str, fields: &[&str]) -> Option<String> {
        let Some(secret) = self.secret(namespace, name) else { return Some(format!("Secret {namespace}/{name} not found")) };
        let has = |f: &&str| {
            secret.data.as_ref().is_some_and(|d| d.contains_key(*f)) || secret.string_data.as_ref().is_some_and(|d| d.contains_key(*f))
        };
        let missing: Vec<&str> = fields.iter().filter(|f| !has(f)).copied().collect();
        (!missing.is_empty()).then(|| format!("Secret {namespace}/{name} has no {}", missing.join(", ")))
    }
}

/// One desired condition.
pub struct Desired<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Merges the desired conditions of the types this writer owns into the
/// stored ones (keeping lastTransitionTime unless a status flips). Returns the
/// owned conditions only (what server-side apply sends) and whether anything changed.
pub fn merge_conditions(
    stored: &[Condition],
    desired: Vec<Desired<'_>>,
    generation: Option<i64>,
    now: Timestamp,
) -> (Vec<Condition>, bool) {
    let owned: Vec<&str> = desired.iter().map(|d| d.type_).collect();
    let mut conditions: Vec<Condition> = stored.iter().filter(|c| owned.contains(&c.type_.as_str())).cloned().collect();
    let mut changed = conditions.len() != owned.len();
    for d in desired {
        changed |= conditions.set(d.type_, ConditionStatus::from(d.status), d.reason, d.message, generation, now);
    }
    conditions.sort_by_key(|c| owned.iter().position(|t| *t == c.type_));
    (conditions, changed)
}
