//! What one pass keeps for the next: results that depend only on objects'
//! specs, reused while those objects are unchanged.
//! - The routing snapshot's report, by the identity of every object it was
//!   built from: a pass after a change no routing object depends on reuses it.
//! - Each route's check (`router_core::RouteChecker`: its problems and the
//!   listeners it attaches to), by the route's uid and generation, while
//!   the set of VPCServices, the VPCIngresses and the VPCs are the same: a
//!   pass after one route change checks that route alone, and its report
//!   is the last one with that route's entry replaced.
//! - Each route's match keys, by uid and generation.
//!
//! Most passes follow changes that touch no routing object — the
//! controller's own status writes coming back as watch events, Pods,
//! Secrets, bindings — and at 10,000 routes the snapshot build was half of
//! a pass (docs/performance.md, "Control plane"). An object is identified
//! by uid and `metadata.generation`, which the API server bumps on every
//! spec change (the status subresource keeps status writes out of it); a
//! VPCService or VPC, whose status the snapshot reads too, by uid and
//! `resourceVersion`. An object without those (one built in memory) makes
//! the pass compute everything afresh.

use std::{
    collections::HashMap,
    hash::BuildHasher,
    sync::{Arc, Mutex},
};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use router_core::{RouteCheck, RouteChecker, SnapshotInput, SnapshotReport};

/// Shared by the passes of one controller (cloning shares it).
#[derive(Clone, Default)]
pub struct PassMemo(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    report: Option<(u64, Arc<SnapshotReport>)>,
    /// Everything but the routes, compiled, by the identity of what it was built from.
    checker: Option<(u64, Arc<RouteChecker>)>,
    /// The identity route checks depend on; `checks` hold for it.
    scope: Option<u64>,
    /// The checker `report` was assembled by, when every route's check in it is in `checks`:
    /// the next report can then be the last one with the changed routes replaced.
    assembled_by: Option<u64>,
    checks: ByGeneration<RouteCheck>,
    match_keys: ByGeneration<[String]>,
}

/// Values kept per object by uid and generation. An object a round did not
/// ask about is forgotten when the round ends (it is gone).
struct ByGeneration<T: ?Sized> {
    /// uid → (generation, value, the round that last asked).
    kept: HashMap<String, (i64, Arc<T>, u64)>,
    round: u64,
}

impl<T: ?Sized> Default for ByGeneration<T> {
    fn default() -> Self {
        Self { kept: HashMap::new(), round: 0 }
    }
}

enum Found<T: ?Sized> {
    Kept(Arc<T>),
    /// Made afresh, replacing the value of an older generation if there was one.
    Made {
        made: Arc<T>,
        replaced: Option<Arc<T>>,
    },
    /// The object has no uid or generation: nothing is kept for it.
    Unidentified,
}

impl<T: ?Sized> ByGeneration<T> {
    fn begin(&mut self) {
        self.round += 1;
    }

    /// The value kept for `meta`'s object at its generation, or the one `make` makes, kept.
    fn get(&mut self, meta: &ObjectMeta, make: impl FnOnce() -> Arc<T>) -> Found<T> {
        let (Some(uid), Some(generation)) = (&meta.uid, meta.generation) else { return Found::Unidentified };
        if let Some((g, kept, asked)) = self.kept.get_mut(uid.as_str())
            && *g == generation
        {
            *asked = self.round;
            return Found::Kept(kept.clone());
        }
        let made = make();
        let replaced = self.kept.insert(uid.clone(), (generation, made.clone(), self.round)).map(|(_, v, _)| v);
        Found::Made { made, replaced }
    }

    /// Ends the round: forgets, and returns, the values of objects it did not ask about.
    fn end(&mut self) -> Vec<Arc<T>> {
        let round = self.round;
        let gone = self.kept.values().filter(|(_, _, asked)| *asked != round).map(|(_, v, _)| v.clone()).collect();
        self.kept.retain(|_, (_, _, asked)| *asked == round);
        gone
    }

    fn values(&self) -> impl Iterator<Item = &Arc<T>> {
        self.kept.values().map(|(_, v, _)| v)
    }
}

/// How an object's version is read.
#[derive(Clone, Copy)]
enum Version {
    /// `metadata.generation`: the spec alone matters.
    Generation,
    /// `metadata.resourceVersion`: the status matters too.
    Resource,
    /// Only that the object exists.
    Exists,
}

/// The identity of a set of objects, in any order: equal identities mean the same
/// objects at the same versions. None when some object has no uid or version.
#[derive(Clone, Copy)]
struct Identity {
    sum: u64,
    count: u64,
    complete: bool,
}

impl Default for Identity {
    fn default() -> Self {
        Self { sum: 0, count: 0, complete: true }
    }
}

fn hasher() -> foldhash::fast::FixedState {
    foldhash::fast::FixedState::with_seed(0x0064_6174_756d)
}

impl Identity {
    /// Adds `objects` of kind `kind`.
    fn with<'a>(mut self, kind: &str, version: Version, objects: impl IntoIterator<Item = &'a ObjectMeta>) -> Self {
        for meta in objects {
            let Some(uid) = meta.uid.as_deref() else {
                self.complete = false;
                continue;
            };
            let hash = match version {
                Version::Generation => meta.generation.map(|g| hasher().hash_one((kind, uid, g))),
                Version::Resource => meta.resource_version.as_deref().map(|v| hasher().hash_one((kind, uid, v))),
                Version::Exists => Some(hasher().hash_one((kind, uid))),
            };
            match hash {
                // A sum of per-object hashes does not depend on the order the cache lists them in.
                Some(h) => {
                    self.sum = self.sum.wrapping_add(h);
                    self.count += 1;
                }
                None => self.complete = false,
            }
        }
        self
    }

    fn value(&self) -> Option<u64> {
        self.complete.then(|| hasher().hash_one((self.sum, self.count)))
    }
}

impl PassMemo {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// What building a snapshot of `input` reports (`router_core::Snapshot::report`),
    /// recomputing only what changed since the last pass.
    pub fn report(&self, input: SnapshotInput<'_>) -> Arc<SnapshotReport> {
        let of = |services, vpcs| {
            Identity::default()
                .with("VPCService", services, input.services.iter().map(|o| &o.metadata))
                .with("VPCIngress", Version::Generation, input.ingresses.iter().map(|o| &o.metadata))
                .with("VPC", vpcs, input.vpcs.iter().map(|o| &o.metadata))
        };
        // What the checker is built from, and that with the routes: everything.
        let compiled =
            of(Version::Resource, Version::Resource).with("VPCEgress", Version::Generation, input.egress.iter().map(|o| &o.metadata));
        let everything = compiled.with("VPCRoute", Version::Generation, input.routes.iter().map(|o| &o.metadata)).value();
        let mut state = self.state();
        if let Some((kept, report)) = &state.report
            && Some(*kept) == everything
        {
            return report.clone();
        }
        let checker_id = compiled.value();
        let checker = match &state.checker {
            Some((kept, checker)) if Some(*kept) == checker_id => checker.clone(),
            _ => Arc::new(RouteChecker::new(input)),
        };
        state.checker = checker_id.map(|id| (id, checker.clone()));
        // A route's check reads which VPCServices exist, and the listeners.
        let scope = of(Version::Exists, Version::Exists).value();
        if scope.is_none() || scope != state.scope {
            state.checks = ByGeneration::default();
            state.assembled_by = None;
        }
        state.scope = scope;

        // Every route's check kept, and the checks that are new or replaced an older one.
        let mut all_kept = scope.is_some();
        let mut changed = Vec::new();
        state.checks.begin();
        for route in input.routes {
            if !all_kept {
                break;
            }
            match state.checks.get(&route.metadata, || Arc::new(checker.check(route))) {
                Found::Kept(_) => {}
                Found::Made { made, replaced } => changed.push((replaced, made)),
                Found::Unidentified => all_kept = false,
            }
        }
        let gone = state.checks.end();

        let report = match state.report.take() {
            Some((_, mut report)) if all_kept && checker_id.is_some() && state.assembled_by == checker_id => {
                let r = Arc::make_mut(&mut report);
                gone.iter().for_each(|c| r.remove_route(c));
                for (replaced, made) in &changed {
                    if let Some(old) = replaced {
                        r.remove_route(old);
                    }
                    r.add_route(made);
                }
                report
            }
            _ if all_kept => Arc::new(checker.report(state.checks.values().map(|c| &**c))),
            _ => {
                let checks: Vec<RouteCheck> = input.routes.iter().map(|r| checker.check(r)).collect();
                Arc::new(checker.report(&checks))
            }
        };
        state.assembled_by = if all_kept { checker_id } else { None };
        state.report = everything.map(|id| (id, report.clone()));
        report
    }

    /// `keys(object)` for each object, reusing those kept for the same uid and generation;
    /// keys of objects not among `objects` are forgotten.
    pub(crate) fn match_keys<K: kube::Resource>(&self, objects: &[K], keys: impl Fn(&K) -> Vec<String>) -> Vec<Arc<[String]>> {
        let mut state = self.state();
        state.match_keys.begin();
        let out = objects
            .iter()
            .map(|o| match state.match_keys.get(o.meta(), || Arc::from(keys(o))) {
                Found::Kept(k) | Found::Made { made: k, .. } => k,
                Found::Unidentified => Arc::from(keys(o)),
            })
            .collect();
        state.match_keys.end();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use router_api::{
        galactic::VPC,
        v1alpha1::{VPCIngress, VPCRoute, VPCService},
    };

    fn meta(uid: &str, generation: i64) -> ObjectMeta {
        ObjectMeta { uid: Some(uid.into()), generation: Some(generation), ..Default::default() }
    }

    #[test]
    fn identities_ignore_order_and_see_every_version_change() {
        let (a, b) = (meta("a", 1), meta("b", 1));
        let id = |objects: &[&ObjectMeta]| Identity::default().with("VPCRoute", Version::Generation, objects.iter().copied()).value();
        assert_eq!(id(&[&a, &b]), id(&[&b, &a]));
        assert_ne!(id(&[&a, &b]), id(&[&a, &meta("b", 2)]));
        assert_ne!(id(&[&a, &b]), id(&[&a]), "a deleted object");
        assert_ne!(id(&[&a]), Identity::default().with("VPCService", Version::Generation, [&a]).value(), "kinds differ");
        assert_eq!(id(&[&a, &ObjectMeta::default()]), None, "an object without uid: nothing is kept");
    }

    fn same(memo: &PassMemo, services: &[VPCService], routes: &[VPCRoute], vpcs: &[VPC], ingresses: &[VPCIngress]) {
        let input = SnapshotInput {
            services: services.into(),
            routes: routes.into(),
            vpcs: vpcs.into(),
            ingresses: ingresses.into(),
            ..Default::default()
        };
        let fresh = router_core::Snapshot::report(input);
        assert_eq!(format!("{:?}", memo.report(input)), format!("{fresh:?}"), "the kept report is the one a fresh build makes");
    }

    #[test]
    fn reports_rebuilt_from_kept_checks_are_those_a_fresh_build_makes() {
        let f = router_tests::fleet::fleet("default", 20, 4);
        let (vpcs, mut services, mut routes) = (f.vpcs, f.services, f.routes);
        let ingress: VPCIngress = serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress",
            "metadata": {"name": "edge", "namespace": "default", "uid": "uid-edge", "generation": 1},
            "spec": {"vpcRef": {"name": "vpc"}, "listeners": [{"name": "http", "port": 8081, "protocol": "HTTP", "hostnames": ["svc-1.example.com"]}]}
        }))
        .unwrap();
        let ingresses = [ingress];
        for r in routes.iter_mut().take(8) {
            r.spec.ingress_refs = vec![router_api::v1alpha1::LocalObjectReference { name: "edge".into() }];
        }
        let memo = PassMemo::default();
        same(&memo, &services, &routes, &vpcs, &ingresses);
        same(&memo, &services, &routes, &vpcs, &ingresses);

        // One route names a missing service; another moves to the listener's hostname.
        routes[30].spec.destinations[0].vpc_service_ref.name = "missing".into();
        routes[30].metadata.generation = Some(2);
        routes[0].spec.hostnames = vec!["svc-1.example.com".into()];
        routes[0].metadata.generation = Some(2);
        same(&memo, &services, &routes, &vpcs, &ingresses);
        // A route and a service deleted: the routes naming it are rechecked.
        routes.remove(5);
        services.retain(|s| s.metadata.name.as_deref() != Some("svc-2"));
        same(&memo, &services, &routes, &vpcs, &ingresses);
        // A service's endpoints change (its resourceVersion): its report entry is redone.
        services[0].status =
            Some(serde_json::from_value(serde_json::json!({"endpoints": [{"address": "not-an-ip", "port": 80, "ready": true}]})).unwrap());
        services[0].metadata.resource_version = Some("2".into());
        same(&memo, &services, &routes, &vpcs, &ingresses);
        // Then routes alone: the last report with those routes replaced, or taken out.
        routes[1].spec.hostnames = vec!["svc-1.example.com".into()];
        routes[1].metadata.generation = Some(2);
        same(&memo, &services, &routes, &vpcs, &ingresses);
        let attached = routes.iter().position(|r| r.spec.hostnames[0] == "svc-1.example.com" && !r.spec.ingress_refs.is_empty()).unwrap();
        routes.remove(attached);
        same(&memo, &services, &routes, &vpcs, &ingresses);
        let kept = memo.report(SnapshotInput {
            services: (&services).into(),
            routes: (&routes).into(),
            vpcs: (&vpcs).into(),
            ingresses: (&ingresses).into(),
            ..Default::default()
        });
        assert_eq!(
            kept.listeners["default/edge/http"].attached_routes, 4,
            "svc-1's routes (one deleted before), route-0-0 and route-0-1, less the one removed"
        );
    }
}
