//! Snapshot after snapshot, recompiling only what changed.
//!
//! A cluster gateway builds a new snapshot on nearly every watch event, and
//! nearly every event changes one object: an endpoint's readiness in one
//! VPCService's status, one route's spec. Compiling every route and service
//! again, and freeing the previous snapshot's copies of them, made a rebuild
//! at 10,000 routes cost about 95 ms (criterion, `benches/snapshot_build.rs`),
//! nearly all of it spent on objects that had not changed.
//!
//! [`SnapshotBuilder`] keeps what it compiled from each shared object (a
//! reflector's `Arc`) and reuses it while it still holds:
//!
//! * a VPCService's target while the object is the same;
//! * a VPCRoute's rules and policy while the route is the same, every
//!   VPCService it names resolves to the very target it was compiled against
//!   (or is still missing), and the gateway's locality is the same. A route
//!   reads nothing else, so a changed service recompiles the routes that
//!   name it, and only those.
//!
//! "The same" is the same `Arc`, or an equal object (a relist hands out new
//! `Arc`s of unchanged objects). Owned objects (a configuration file's) are
//! compiled every time: telling them apart would need a copy of each to
//! compare against. Listeners, egress policies and the route tables are
//! assembled again on every build; they point at the kept rules, so that is
//! map inserts, not compilation. A reused route keeps its state: its retry
//! budget and its pickers' cursors carry over into the next snapshot.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
    sync::Arc,
};

use router_api::datum::Locality;
use router_api::v1alpha1::{VPCRoute, VPCService};

use super::{
    EndpointStore, Prepared, RouteCompiled, RouteKey, RoutePolicy, ServiceKey, ServiceTarget, Snapshot, SnapshotInput, SnapshotReport,
    compile_service, route_key, service_key,
};
use crate::{Objects, RouteTable, objects::Object};

/// Builds snapshots one after another from the same source (see the module
/// documentation). Keep one per gateway; a fresh one builds from nothing.
#[derive(Default)]
pub struct SnapshotBuilder {
    builds: u64,
    locality: Option<Locality>,
    services: Memo<ServiceKey, VPCService, (Arc<ServiceTarget>, Vec<String>)>,
    routes: Memo<RouteKey, VPCRoute, Arc<KeptRoute>>,
    /// The last build's internal route table, whose unchanged buckets the next one shares.
    table: RouteTable<RoutePolicy>,
}

/// A route compiled, with the services it was compiled against.
struct KeptRoute {
    compiled: RouteCompiled,
    /// Every VPCService the route names (found or not).
    read: Vec<ServiceKey>,
}

impl KeptRoute {
    fn compile(prepared: &Prepared, route: &VPCRoute, key: &RouteKey, store: &EndpointStore) -> Self {
        let spec = &route.spec;
        let mirror = spec.filters.as_ref().and_then(|f| f.mirror.as_ref()).map(|m| &m.vpc_service_ref);
        let read = spec
            .destinations
            .iter()
            .map(|d| &d.vpc_service_ref)
            .chain(mirror)
            .map(|r| ServiceKey { namespace: r.namespace_or(&key.namespace).to_owned(), name: r.name.clone() })
            .collect();
        Self { compiled: prepared.compile(route, key, store), read }
    }
}

/// The VPCServices whose compiled targets differ from the last build's:
/// new, changed or gone.
enum ChangedServices {
    /// Owned services are compiled on every build: every target is new.
    All,
    These(HashSet<ServiceKey>),
}

impl ChangedServices {
    fn any_of(&self, services: &[ServiceKey]) -> bool {
        match self {
            ChangedServices::All => true,
            ChangedServices::These(changed) => !changed.is_empty() && services.iter().any(|s| changed.contains(s)),
        }
    }
}

impl SnapshotBuilder {
    /// Builds a snapshot as [`Snapshot::build`] does, reusing what the last
    /// builds compiled from objects that did not change.
    pub fn build(&mut self, input: SnapshotInput<'_>, store: &EndpointStore) -> Snapshot {
        self.builds += 1;
        let build = self.builds;
        if self.locality.as_ref() != input.locality {
            // Pickers group endpoints by their distance from the gateway: every route read where it is.
            self.routes.clear();
            self.locality = input.locality.cloned();
        }
        let (targets, service_problems, changed) = self.services(input, store);
        let report = SnapshotReport { services: service_problems.into_iter().collect(), ..Default::default() };
        let mut prepared = Prepared::new(input, targets.into_iter().collect(), report);
        let mut internal = Vec::with_capacity(input.routes.len());
        let mut route_problems = Vec::with_capacity(input.routes.len());
        let mut external = 0;
        for object in input.routes.objects() {
            let route = object.get();
            let key = route_key(route);
            let (kept, _) = self.routes.get(
                build,
                &key,
                object,
                |kept| !changed.any_of(&kept.read),
                |route| Arc::new(KeptRoute::compile(&prepared, route, &key, store)),
            );
            let mut problems = kept.compiled.problems.clone();
            let attachments = prepared.attachments(route, &key.namespace, &kept.compiled, &mut problems);
            if let Some(compiled) = &kept.compiled.compiled {
                if route.spec.ingress_refs.is_empty() {
                    internal.push(kept.clone());
                } else {
                    prepared.ingress.attach(attachments, compiled);
                    external += 1;
                }
            }
            route_problems.push((key, problems));
        }
        self.routes.sweep(build, |_| {});
        // Collected at once: a sorted bulk build instead of 10,000 inserts.
        prepared.report.routes = route_problems.into_iter().collect();
        let Prepared { mut report, targets, ingress, egress, locality } = prepared;
        let ingress = ingress.finish(&mut report);
        let routes = RouteTable::compile_reusing(internal.iter().filter_map(|kept| kept.compiled.compiled.as_ref()), &self.table);
        self.table = routes.clone();
        Snapshot { route_count: internal.len() + external, routes, ingress, egress, services: targets, report, locality }
    }

    /// Every VPCService's target and problems, and which targets changed since the last build.
    #[allow(clippy::type_complexity)]
    fn services(
        &mut self,
        input: SnapshotInput<'_>,
        store: &EndpointStore,
    ) -> (Vec<(ServiceKey, Arc<ServiceTarget>)>, Vec<(ServiceKey, Vec<String>)>, ChangedServices) {
        let build = self.builds;
        let mut changed = match input.services {
            Objects::Owned(_) => ChangedServices::All,
            Objects::Shared(_) => ChangedServices::These(HashSet::new()),
        };
        let (mut targets, mut problems) = (Vec::with_capacity(input.services.len()), Vec::with_capacity(input.services.len()));
        for svc in input.services.objects() {
            let key = service_key(svc.get());
            let ((target, p), made) = self.services.get(build, &key, svc, |_| true, |s| compile_service(s, &key, store));
            if let (true, ChangedServices::These(changed)) = (made, &mut changed) {
                changed.insert(key.clone());
            }
            problems.push((key.clone(), p));
            targets.push((key, target));
        }
        self.services.sweep(build, |gone| {
            if let ChangedServices::These(changed) = &mut changed {
                changed.insert(gone);
            }
        });
        (targets, problems, changed)
    }
}

/// Values compiled from shared objects.
struct Memo<Q, K, V> {
    /// By the address of the kept object: an object that did not change is
    /// found without hashing and comparing its name.
    by_address: HashMap<usize, Kept<Q, K, V>>,
    /// Where each key's object is kept, for a changed (or relisted) object.
    by_key: HashMap<Q, usize>,
}

struct Kept<Q, K, V> {
    key: Q,
    /// Held, so that no other object can come to live at its address while it is kept.
    object: Arc<K>,
    value: V,
    /// The last build that read it: entries the last build did not read are gone from the source.
    build: u64,
}

impl<Q, K, V> Default for Memo<Q, K, V> {
    fn default() -> Self {
        Self { by_address: HashMap::new(), by_key: HashMap::new() }
    }
}

impl<Q: Hash + Eq + Clone, K: PartialEq, V: Clone> Memo<Q, K, V> {
    /// The value of `object` (whose key is `key`): the kept one when the
    /// object is the same as when it was made and `holds` says it still
    /// holds, otherwise `make`'s (kept when the object is shared); and
    /// whether it was made now.
    fn get(&mut self, build: u64, key: &Q, object: Object<'_, K>, holds: impl FnOnce(&V) -> bool, make: impl FnOnce(&K) -> V) -> (V, bool) {
        let Some(shared) = object.shared() else { return (make(object.get()), true) };
        let address = Arc::as_ptr(shared).addr();
        if let Some(kept) = self.by_address.get_mut(&address) {
            let made = !holds(&kept.value);
            if made {
                kept.value = make(shared);
            }
            kept.build = build;
            return (kept.value.clone(), made);
        }
        // A new object, or a new version of one: what was kept for its key is reused only if it is equal.
        let previous = self.by_key.insert(key.clone(), address).and_then(|a| self.by_address.remove(&a));
        let (value, made) = match previous {
            Some(kept) if *kept.object == **shared && holds(&kept.value) => (kept.value, false),
            _ => (make(shared), true),
        };
        self.by_address.insert(address, Kept { key: key.clone(), object: shared.clone(), value: value.clone(), build });
        (value, made)
    }

    /// Forgets what `build` did not read, handing each forgotten key to `gone`.
    fn sweep(&mut self, build: u64, mut gone: impl FnMut(Q)) {
        let by_key = &mut self.by_key;
        self.by_address.retain(|_, kept| {
            let read = kept.build == build;
            if !read {
                by_key.remove(&kept.key);
                gone(kept.key.clone());
            }
            read
        });
    }

    fn clear(&mut self) {
        self.by_address.clear();
        self.by_key.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::{RequestView, snapshot::DestinationTarget};

    fn service(name: &str, addresses: &[&str]) -> Arc<VPCService> {
        let endpoints: Vec<_> = addresses.iter().map(|a| serde_json::json!({"address": a, "port": 80, "ready": true})).collect();
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"port": 80},
                "status": {"endpoints": endpoints, "readyEndpoints": addresses.len()}
            }))
            .expect("a service"),
        )
    }

    fn route(name: &str, host: &str, prefix: &str, service: &str) -> Arc<VPCRoute> {
        Arc::new(
            serde_json::from_value(serde_json::json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"hostnames": [host], "match": {"pathPrefix": prefix}, "destinations": [{"vpcServiceRef": {"name": service}}]}
            }))
            .expect("a route"),
        )
    }

    fn input<'a>(services: &'a [Arc<VPCService>], routes: &'a [Arc<VPCRoute>]) -> SnapshotInput<'a> {
        SnapshotInput { services: Objects::Shared(services), routes: Objects::Shared(routes), ..Default::default() }
    }

    /// What a request to `host` + `path` is served by: the route's policy and its endpoints (None: 404; empty: 500).
    fn served(snapshot: &Snapshot, host: &str, path: &str) -> Option<(Arc<RoutePolicy>, Vec<SocketAddr>)> {
        let headers = http::HeaderMap::new();
        let view = RequestView { host, path, query: None, method: &http::Method::GET, headers: &headers };
        let rule = snapshot.routes.lookup(&view)?;
        let endpoints = match &rule.action.destinations[0] {
            DestinationTarget::Resolved { picker, .. } => picker.endpoints().iter().map(|e| e.addr).collect(),
            DestinationTarget::Unresolved { .. } => Vec::new(),
        };
        Some((rule.action.clone(), endpoints))
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().expect("an address")
    }

    #[test]
    fn a_rebuild_with_nothing_changed_reuses_every_route() {
        let services = vec![service("a", &["10.0.0.1"]), service("b", &["10.0.0.2"])];
        let routes = vec![route("ra", "a.example", "/", "a"), route("rb", "b.example", "/", "b")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let first = builder.build(input(&services, &routes), &store);
        // A relist hands out new Arcs of equal objects: still nothing changed.
        let relisted: Vec<_> = routes.iter().map(|r| Arc::new((**r).clone())).collect();
        let second = builder.build(input(&services, &relisted), &store);
        for host in ["a.example", "b.example"] {
            let (before, after) = (served(&first, host, "/x").expect("served"), served(&second, host, "/x").expect("served"));
            assert!(Arc::ptr_eq(&before.0, &after.0), "{host}: the same compiled policy");
        }
        assert_eq!(second.route_count, 2);
        assert_eq!(second.report.routes.len(), 2);
    }

    #[test]
    fn a_changed_route_is_compiled_again_and_the_others_are_not() {
        let services = vec![service("a", &["10.0.0.1"])];
        let mut routes = vec![route("r1", "a.example", "/old", "a"), route("r2", "a.example", "/other", "a")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let first = builder.build(input(&services, &routes), &store);
        routes[0] = route("r1", "a.example", "/new", "a");
        let second = builder.build(input(&services, &routes), &store);
        assert!(served(&second, "a.example", "/old").is_none(), "the old path is gone");
        assert_eq!(served(&second, "a.example", "/new").expect("the new path").0.key.name, "r1");
        let (before, after) = (served(&first, "a.example", "/other").expect("r2"), served(&second, "a.example", "/other").expect("r2"));
        assert!(Arc::ptr_eq(&before.0, &after.0), "r2 did not change");
    }

    #[test]
    fn a_changed_service_recompiles_the_routes_that_name_it() {
        let mut services = vec![service("a", &["10.0.0.1"]), service("b", &["10.0.0.2"])];
        let routes = vec![route("ra", "a.example", "/", "a"), route("rb", "b.example", "/", "b")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let first = builder.build(input(&services, &routes), &store);
        services[0] = service("a", &["10.0.0.1", "10.0.0.3"]);
        let second = builder.build(input(&services, &routes), &store);
        let a = served(&second, "a.example", "/").expect("ra");
        assert_eq!(a.1, [addr("10.0.0.1:80"), addr("10.0.0.3:80")], "ra picks among the new endpoints");
        assert!(!Arc::ptr_eq(&served(&first, "a.example", "/").expect("ra").0, &a.0));
        assert!(Arc::ptr_eq(&served(&first, "b.example", "/").expect("rb").0, &served(&second, "b.example", "/").expect("rb").0));
    }

    #[test]
    fn a_service_that_appears_or_goes_away_changes_the_routes_that_name_it() {
        let routes = vec![route("ra", "a.example", "/", "a")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let missing = builder.build(input(&[], &routes), &store);
        assert_eq!(served(&missing, "a.example", "/").expect("served with 500").1, []);
        assert!(missing.report.routes.values().any(|p| p.iter().any(|p| p.contains("not found"))));
        let services = vec![service("a", &["10.0.0.1"])];
        let found = builder.build(input(&services, &routes), &store);
        assert_eq!(served(&found, "a.example", "/").expect("ra").1, [addr("10.0.0.1:80")]);
        assert!(found.report.routes.values().all(Vec::is_empty));
        let gone = builder.build(input(&[], &routes), &store);
        assert_eq!(served(&gone, "a.example", "/").expect("served with 500").1, []);
    }

    #[test]
    fn a_deleted_route_is_no_longer_served_and_a_recreated_one_is() {
        let services = vec![service("a", &["10.0.0.1"])];
        let routes = vec![route("ra", "a.example", "/", "a")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        builder.build(input(&services, &routes), &store);
        let none = builder.build(input(&services, &[]), &store);
        assert!(served(&none, "a.example", "/").is_none());
        assert!(none.report.routes.is_empty());
        let again = builder.build(input(&services, &routes), &store);
        assert_eq!(served(&again, "a.example", "/").expect("ra").0.key.name, "ra");
    }

    #[test]
    fn a_new_locality_recompiles_every_route() {
        let services = vec![service("a", &["10.0.0.1"])];
        let routes = vec![route("ra", "a.example", "/", "a")];
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        let first = builder.build(input(&services, &routes), &store);
        let dallas = Locality { city_code: Some("DFW".into()), ..Default::default() };
        let second = builder.build(SnapshotInput { locality: Some(&dallas), ..input(&services, &routes) }, &store);
        assert!(!Arc::ptr_eq(&served(&first, "a.example", "/").expect("ra").0, &served(&second, "a.example", "/").expect("ra").0));
        assert_eq!(second.locality, Some(dallas));
    }

    /// A small deterministic generator: the test's sequence of changes is the same on every run.
    struct Lcg(u64);

    impl Lcg {
        fn below(&mut self, n: usize) -> usize {
            self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            usize::try_from(self.0 >> 33).unwrap_or(0) % n
        }
    }

    #[test]
    fn after_any_sequence_of_changes_a_rebuild_serves_and_reports_what_a_fresh_build_does() {
        let mut rng = Lcg(7);
        let mut services: Vec<Arc<VPCService>> = (0..6).map(|s| service(&format!("s{s}"), &[&format!("10.0.0.{s}")])).collect();
        let mut routes: Vec<Arc<VPCRoute>> = (0..24)
            .map(|i| route(&format!("r{i}"), &format!("h{}.example", i % 5), &format!("/p{}", i % 7), &format!("s{}", i % 8)))
            .collect();
        let (store, mut builder) = (EndpointStore::default(), SnapshotBuilder::default());
        for step in 0..200 {
            match rng.below(5) {
                0 => {
                    let i = rng.below(routes.len());
                    let (host, path, to) = (rng.below(5), rng.below(7), rng.below(8));
                    routes[i] = route(&format!("r{i}"), &format!("h{host}.example"), &format!("/p{path}"), &format!("s{to}"));
                }
                1 => {
                    let s = rng.below(8);
                    let endpoints: Vec<String> = (0..rng.below(3)).map(|e| format!("10.0.{e}.{s}")).collect();
                    let fresh = service(&format!("s{s}"), &endpoints.iter().map(String::as_str).collect::<Vec<_>>());
                    match services.iter().position(|x| x.metadata.name.as_deref() == Some(&format!("s{s}"))) {
                        Some(at) => services[at] = fresh,
                        None => services.push(fresh),
                    }
                }
                2 if !services.is_empty() => {
                    let at = rng.below(services.len());
                    services.remove(at);
                }
                3 => routes.iter_mut().for_each(|r| *r = Arc::new((**r).clone())),
                _ => {}
            }
            let kept = builder.build(input(&services, &routes), &store);
            let fresh = Snapshot::build(input(&services, &routes), &store);
            assert_eq!(kept.route_count, fresh.route_count, "step {step}");
            assert_eq!(kept.report.routes, fresh.report.routes, "step {step}");
            assert_eq!(kept.report.services, fresh.report.services, "step {step}");
            for host in 0..5 {
                for path in 0..7 {
                    let (host, path) = (format!("h{host}.example"), format!("/p{path}"));
                    let summary = |s: &Snapshot| served(s, &host, &path).map(|(policy, endpoints)| (policy.key.clone(), endpoints));
                    assert_eq!(summary(&kept), summary(&fresh), "step {step}: {host}{path}");
                }
            }
        }
    }
}
