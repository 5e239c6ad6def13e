//! What one pass keeps for the next: results that depend only on objects'
//! specs, reused while those objects are unchanged. The routing snapshot's
//! report is kept by the identity of every object it was built from, and
//! each route's match keys by its uid and generation.
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
use router_core::SnapshotReport;

/// Shared by the passes of one controller (cloning shares it).
#[derive(Clone, Default)]
pub struct PassMemo(Arc<Mutex<State>>);

#[derive(Default)]
struct State {
    report: Option<(u64, Arc<SnapshotReport>)>,
    /// uid → (generation, match keys, the pass that last asked).
    match_keys: HashMap<String, (i64, Arc<[String]>, u64)>,
    passes: u64,
}

/// How an object's version is read.
#[derive(Clone, Copy)]
pub enum Version {
    /// `metadata.generation`: the spec alone matters.
    Generation,
    /// `metadata.resourceVersion`: the status matters too.
    Resource,
}

/// The identity of a set of objects, in any order: equal identities mean the same
/// objects at the same versions. None when some object has no uid or version.
pub struct Identity {
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
    pub fn with<'a>(mut self, kind: &str, version: Version, objects: impl IntoIterator<Item = &'a ObjectMeta>) -> Self {
        for meta in objects {
            let v = match version {
                Version::Generation => meta.generation.map(|g| g.to_string()),
                Version::Resource => meta.resource_version.clone(),
            };
            match (&meta.uid, v) {
                (Some(uid), Some(v)) => {
                    // A sum of per-object hashes does not depend on the order the cache lists them in.
                    self.sum = self.sum.wrapping_add(hasher().hash_one((kind, uid, v)));
                    self.count += 1;
                }
                _ => self.complete = false,
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

    /// The report kept for `identity`, or the one `build` makes (kept when the identity is complete).
    pub fn report(&self, identity: Identity, build: impl FnOnce() -> SnapshotReport) -> Arc<SnapshotReport> {
        let id = identity.value();
        if let Some((kept, report)) = &self.state().report
            && Some(*kept) == id
        {
            return report.clone();
        }
        let report = Arc::new(build());
        self.state().report = id.map(|id| (id, report.clone()));
        report
    }

    /// `keys(object)` for each object, reusing those kept for the same uid and generation;
    /// keys of objects not among `objects` are forgotten.
    pub fn match_keys<K: kube::Resource>(&self, objects: &[K], keys: impl Fn(&K) -> Vec<String>) -> Vec<Arc<[String]>> {
        let mut state = self.state();
        state.passes += 1;
        let pass = state.passes;
        let out = objects
            .iter()
            .map(|o| {
                let meta = o.meta();
                let (Some(uid), Some(generation)) = (&meta.uid, meta.generation) else { return Arc::from(keys(o)) };
                if let Some((g, kept, seen)) = state.match_keys.get_mut(uid.as_str())
                    && *g == generation
                {
                    *seen = pass;
                    return kept.clone();
                }
                let fresh: Arc<[String]> = Arc::from(keys(o));
                state.match_keys.insert(uid.clone(), (generation, fresh.clone(), pass));
                fresh
            })
            .collect();
        state.match_keys.retain(|_, (_, _, seen)| *seen == pass);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_report_is_rebuilt_when_the_identity_changes_and_never_for_an_incomplete_one() {
        let memo = PassMemo::default();
        let builds = std::cell::Cell::new(0);
        let build = || {
            builds.set(builds.get() + 1);
            SnapshotReport::default()
        };
        let of = |g| Identity::default().with("VPCRoute", Version::Generation, [&meta("a", g)]);
        memo.report(of(1), build);
        memo.report(of(1), build);
        assert_eq!(builds.get(), 1);
        memo.report(of(2), build);
        assert_eq!(builds.get(), 2);
        let incomplete = || Identity::default().with("VPCRoute", Version::Resource, [&meta("a", 2)]);
        memo.report(incomplete(), build);
        memo.report(incomplete(), build);
        assert_eq!(builds.get(), 4);
    }
}
