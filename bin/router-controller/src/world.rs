//! Everything the controller reads, as one consistent picture, and the
//! helpers its status computations share. Statuses are pure functions of a
//! `World`: a change to any object recomputes every status that could depend
//! on it (the reverse mapping is the whole picture), and only statuses that
//! differ from the ones the world shows — the controller's own last word,
//! laid over the cache (`plan::overlay`) — are offered for writing.

use std::{
    borrow::Cow,
    collections::{BTreeMap, HashMap},
};

use k8s_openapi::{
    api::{
        core::v1::{Node, Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta},
    jiff::Timestamp,
};
use kube::Resource;
use router_api::{
    galactic::{VPC, VPCAttachment},
    schema::{InvalidObject, Verdicts},
    v1alpha1::{
        CA_CERT, ConditionStatus, Conditions, SecretUse, ServiceBinding, TLS_CERT, TLS_KEY, TunnelBinding, VPCEgress, VPCIngress, VPCRoute,
        VPCService, condition_types, reasons, secret_value,
    },
};
use router_core::{EndpointStore, Objects, Snapshot, SnapshotInput, SnapshotReport};

use crate::{discovery_wait::DiscoveryWait, memo::PassMemo};

/// The objects of the cluster the controller reconciles from.
#[derive(Default)]
pub struct World {
    pub vpcs: Vec<VPC>,
    pub attachments: Vec<VPCAttachment>,
    pub services: Vec<VPCService>,
    pub routes: Vec<VPCRoute>,
    pub bindings: Vec<ServiceBinding>,
    pub tunnels: Vec<TunnelBinding>,
    pub ingresses: Vec<VPCIngress>,
    pub egress: Vec<VPCEgress>,
    pub secrets: Vec<Secret>,
    pub kube_services: Vec<Service>,
    pub pods: Vec<Pod>,
    pub nodes: Vec<Node>,
    pub endpoint_slices: Vec<EndpointSlice>,
    /// Verdicts on Secret contents, kept across passes: parsing a key is the
    /// costliest check here, and a Secret's resourceVersion says when to redo it.
    pub secret_checks: SecretChecks,
    /// Router objects that break their CRD's schema or CEL rules.
    pub invalid: Invalid,
    /// What the last pass computed from specs alone, kept for the next (shared across worlds).
    pub memo: PassMemo,
    /// Whether route statuses wait for service-discovery's first word (`discovery_wait`); None: never.
    pub discovery_wait: Option<DiscoveryWait>,
    /// Lookups by namespace and name, built on first use: a world is not changed once read.
    pub(crate) index: std::sync::OnceLock<Index>,
}

/// namespace → name → position.
type ByKey = HashMap<String, HashMap<String, usize>>;

/// Positions of a world's objects, so that a pass over N routes naming M
/// services costs N lookups rather than N × M comparisons.
#[derive(Default)]
pub(crate) struct Index {
    services: ByKey,
    vpcs: ByKey,
    attachments: ByKey,
    secrets: ByKey,
    kube_services: ByKey,
    ingresses: ByKey,
    /// namespace → positions.
    pods: HashMap<String, Vec<usize>>,
    endpoint_slices: HashMap<String, Vec<usize>>,
    nodes: HashMap<String, usize>,
}

fn by_key<K: Resource>(objects: &[K]) -> ByKey {
    let mut map = ByKey::new();
    for (i, o) in objects.iter().enumerate() {
        let (namespace, name) = key(o.meta());
        map.entry(namespace).or_default().entry(name).or_insert(i);
    }
    map
}

fn by_namespace<K: Resource>(objects: &[K]) -> HashMap<String, Vec<usize>> {
    let mut map: HashMap<String, Vec<usize>> = HashMap::new();
    for (i, o) in objects.iter().enumerate() {
        map.entry(o.meta().namespace.clone().unwrap_or_default()).or_default().push(i);
    }
    map
}

fn find<'a, K>(objects: &'a [K], index: &ByKey, namespace: &str, name: &str) -> Option<&'a K> {
    index.get(namespace).and_then(|m| m.get(name)).map(|&i| &objects[i])
}

/// (namespace, name) → why, per router kind.
type InvalidByKey = BTreeMap<(String, String), InvalidObject>;

/// Router objects that break their CRD's schema or CEL rules, which the API
/// server may not have enforced (1.24 without the CEL gate, a dropped rule).
/// They get `Accepted=False` reason `Invalid` with the field-named message,
/// and the snapshot is built without them, as the gateways build theirs.
#[derive(Default)]
pub struct Invalid {
    pub services: InvalidByKey,
    pub routes: InvalidByKey,
    pub bindings: InvalidByKey,
    pub ingresses: InvalidByKey,
    pub egress: InvalidByKey,
    pub tunnels: InvalidByKey,
}

impl Invalid {
    /// Judges every router object of `world`; `verdicts` remembers them per generation.
    pub fn of(world: &World, verdicts: &Verdicts) -> Self {
        Self {
            services: verdicts.invalid(&world.services),
            routes: verdicts.invalid(&world.routes),
            bindings: verdicts.invalid(&world.bindings),
            ingresses: verdicts.invalid(&world.ingresses),
            egress: verdicts.invalid(&world.egress),
            tunnels: verdicts.invalid(&world.tunnels),
        }
    }
}

/// `objects` without those in `invalid`; borrowed when there are none (the usual case).
fn valid<'a, K: Resource + Clone>(objects: &'a [K], invalid: &InvalidByKey) -> Cow<'a, [K]> {
    if invalid.is_empty() {
        return Cow::Borrowed(objects);
    }
    Cow::Owned(objects.iter().filter(|o| !invalid.contains_key(&key(o.meta()))).cloned().collect())
}

/// Accepted=True with `message`.
pub fn accepted(message: impl Into<String>) -> Desired<'static> {
    Desired { type_: condition_types::ACCEPTED, status: true, reason: reasons::ACCEPTED, message: message.into() }
}

/// Programmed=False for an object that is not accepted.
pub fn not_programmed() -> Desired<'static> {
    Desired { type_: condition_types::PROGRAMMED, status: false, reason: reasons::PENDING, message: "not accepted".to_owned() }
}

/// Accepted=False reason Invalid, or None for a valid object.
pub fn rejected(invalid: &InvalidByKey, meta: &ObjectMeta) -> Option<Desired<'static>> {
    invalid.get(&key(meta)).map(|e| Desired {
        type_: condition_types::ACCEPTED,
        status: false,
        reason: reasons::INVALID,
        message: e.to_string(),
    })
}

/// (namespace, name, resourceVersion, use) of a checked Secret.
type CheckKey = (String, String, Option<String>, SecretUse);

/// Cached results of checking Secret contents; shared by the passes of one controller.
#[derive(Clone, Default)]
pub struct SecretChecks(std::sync::Arc<std::sync::Mutex<std::collections::HashMap<CheckKey, Option<RefProblem>>>>);

impl SecretChecks {
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Forgets verdicts on Secret versions that are gone.
    pub fn retain_current(&self, secrets: &[Secret]) {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.retain(|(ns, name, rv, _), _| {
            secrets.iter().any(|s| key(&s.metadata) == (ns.clone(), name.clone()) && s.metadata.resource_version == *rv)
        });
    }
}

pub use router_api::manifest::object_key as key;

impl World {
    /// A world of routing objects alone (no bindings, tunnels, listeners or Secrets).
    pub fn routing(vpcs: Vec<VPC>, attachments: Vec<VPCAttachment>, services: Vec<VPCService>, routes: Vec<VPCRoute>) -> Self {
        Self { vpcs, attachments, services, routes, ..Self::default() }
    }

    /// The routing snapshot the gateways build from these objects: route
    /// compilation, listener conflicts and attachment, egress policies.
    /// Invalid objects are left out, as the gateways leave them out.
    pub fn snapshot(&self) -> Snapshot {
        self.with_input(|input| Snapshot::build(input, &EndpointStore::default()))
    }

    /// What building the snapshot reports, which is all the controller reads of it: it
    /// reports what the data plane will do, computed by the same code. Kept across passes
    /// while no object it is built from changes (see `memo`).
    pub fn report(&self) -> std::sync::Arc<SnapshotReport> {
        self.with_input(|input| self.memo.report(input))
    }

    /// `build` over the snapshot's input: the valid objects.
    fn with_input<R>(&self, build: impl FnOnce(SnapshotInput<'_>) -> R) -> R {
        let (services, routes) = (valid(&self.services, &self.invalid.services), valid(&self.routes, &self.invalid.routes));
        let (egress, ingresses) = (valid(&self.egress, &self.invalid.egress), valid(&self.ingresses, &self.invalid.ingresses));
        let input = SnapshotInput {
            services: Objects::Owned(&services),
            routes: Objects::Owned(&routes),
            egress: Objects::Owned(&egress),
            vpcs: Objects::Owned(&self.vpcs),
            ingresses: Objects::Owned(&ingresses),
            reserved_ports: &[],
            // The controller is no gateway: its report needs no levels.
            locality: None,
        };
        build(input)
    }

    fn index(&self) -> &Index {
        self.index.get_or_init(|| Index {
            services: by_key(&self.services),
            vpcs: by_key(&self.vpcs),
            attachments: by_key(&self.attachments),
            secrets: by_key(&self.secrets),
            kube_services: by_key(&self.kube_services),
            ingresses: by_key(&self.ingresses),
            pods: by_namespace(&self.pods),
            endpoint_slices: by_namespace(&self.endpoint_slices),
            nodes: self.nodes.iter().enumerate().filter_map(|(i, n)| Some((n.metadata.name.clone()?, i))).collect(),
        })
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&VPCService> {
        find(&self.services, &self.index().services, namespace, name)
    }

    pub fn vpc(&self, namespace: &str, name: &str) -> Option<&VPC> {
        find(&self.vpcs, &self.index().vpcs, namespace, name)
    }

    pub fn secret(&self, namespace: &str, name: &str) -> Option<&Secret> {
        find(&self.secrets, &self.index().secrets, namespace, name)
    }

    pub fn attachment(&self, namespace: &str, name: &str) -> Option<&VPCAttachment> {
        find(&self.attachments, &self.index().attachments, namespace, name)
    }

    pub fn kube_service(&self, namespace: &str, name: &str) -> Option<&Service> {
        find(&self.kube_services, &self.index().kube_services, namespace, name)
    }

    pub fn ingress(&self, namespace: &str, name: &str) -> Option<&VPCIngress> {
        find(&self.ingresses, &self.index().ingresses, namespace, name)
    }

    pub fn pods_in(&self, namespace: &str) -> impl Iterator<Item = &Pod> {
        self.index().pods.get(namespace).into_iter().flatten().map(|&i| &self.pods[i])
    }

    pub fn endpoint_slices_in(&self, namespace: &str) -> impl Iterator<Item = &EndpointSlice> {
        self.index().endpoint_slices.get(namespace).into_iter().flatten().map(|&i| &self.endpoint_slices[i])
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index().nodes.get(name).map(|&i| &self.nodes[i])
    }

    /// What is wrong with a referenced Secret, if anything: missing, missing
    /// one of the keys `usage` needs, or holding TLS material that does not
    /// parse (the gateways would keep their last good copy, or have none).
    pub fn secret_problem(&self, namespace: &str, name: &str, usage: SecretUse) -> Option<RefProblem> {
        let Some(secret) = self.secret(namespace, name) else {
            return Some(RefProblem::missing(format!("Secret {namespace}/{name} not found")));
        };
        let missing: Vec<&str> = usage.keys().iter().filter(|k| secret_value(secret, k).is_none()).copied().collect();
        if !missing.is_empty() {
            return Some(RefProblem::missing(format!("Secret {namespace}/{name} has no {}", missing.join(", "))));
        }
        let cache_key = (namespace.to_owned(), name.to_owned(), secret.metadata.resource_version.clone(), usage);
        if let Some(verdict) = self.secret_checks.0.lock().unwrap_or_else(|p| p.into_inner()).get(&cache_key) {
            return verdict.clone();
        }
        let checked = match usage {
            SecretUse::Certificate => router_tls::Certificate::from_pem(
                secret_value(secret, TLS_CERT)?,
                secret_value(secret, TLS_KEY)?,
                &rustls::crypto::ring::default_provider(),
            )
            .map(drop),
            SecretUse::CaBundle => router_tls::ca_roots(secret_value(secret, CA_CERT)?, CA_CERT).map(drop),
        };
        let verdict =
            checked.err().map(|e| RefProblem { reason: reasons::INVALID_CERTIFICATE, message: format!("Secret {namespace}/{name}: {e}") });
        self.secret_checks.0.lock().unwrap_or_else(|p| p.into_inner()).insert(cache_key, verdict.clone());
        verdict
    }

    /// The problems of every Secret in `refs` (namespace `namespace`).
    pub fn secret_problems(&self, namespace: &str, refs: Vec<(&str, SecretUse)>) -> impl Iterator<Item = RefProblem> {
        refs.into_iter().filter_map(move |(name, usage)| self.secret_problem(namespace, name, usage))
    }
}

/// A reference that does not resolve, and why (a condition reason).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefProblem {
    pub reason: &'static str,
    pub message: String,
}

impl RefProblem {
    pub fn missing(message: String) -> Self {
        Self { reason: reasons::REF_NOT_FOUND, message }
    }
}

/// ResolvedRefs from what did not resolve: a missing object outranks broken content.
pub fn resolved(problems: Vec<RefProblem>) -> Desired<'static> {
    let reason = if problems.is_empty() {
        reasons::RESOLVED_REFS
    } else if problems.iter().any(|p| p.reason == reasons::REF_NOT_FOUND) {
        reasons::REF_NOT_FOUND
    } else {
        problems[0].reason
    };
    Desired {
        type_: condition_types::RESOLVED_REFS,
        status: problems.is_empty(),
        reason,
        message: if problems.is_empty() {
            "every reference resolves".to_owned()
        } else {
            problems.iter().map(|p| p.message.as_str()).collect::<Vec<_>>().join("; ")
        },
    }
}

/// One desired condition.
pub struct Desired<'a> {
    pub type_: &'a str,
    pub status: bool,
    pub reason: &'a str,
    pub message: String,
}

/// Whether `stored` already says what `desired` does: then [`merge_conditions`]
/// changes nothing, and a pass over a converged world copies nothing.
pub fn conditions_current(stored: &[Condition], desired: &[Desired<'_>], generation: Option<i64>) -> bool {
    let owned = stored.iter().filter(|c| desired.iter().any(|d| d.type_ == c.type_)).count();
    owned == desired.len()
        && desired.iter().all(|d| {
            stored.iter().any(|c| {
                c.type_ == d.type_
                    && c.status == ConditionStatus::from(d.status).as_str()
                    && c.reason == d.reason
                    && c.message == d.message
                    && c.observed_generation == generation
            })
        })
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
    let changed = !conditions_current(stored, &desired, generation);
    let owned: Vec<&str> = desired.iter().map(|d| d.type_).collect();
    let mut conditions: Vec<Condition> = stored.iter().filter(|c| owned.contains(&c.type_.as_str())).cloned().collect();
    for d in desired {
        conditions.set(d.type_, ConditionStatus::from(d.status), d.reason, d.message, generation, now);
    }
    conditions.sort_by_key(|c| owned.iter().position(|t| *t == c.type_));
    (conditions, changed)
}
