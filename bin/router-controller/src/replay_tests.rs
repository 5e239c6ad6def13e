//! Write amplification, pass by pass: a fleet reconciled through the real
//! status queue into an in-memory "API server", with a cache that lags
//! behind the writes the way a reflector does.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Resource;
use router_kube::{
    metrics::KubeMetrics,
    status_queue::{ObjectKey, QueueArgs, Sink, StatusQueue, StatusWrite, WriteError, merge, with_status},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use crate::{
    discovery_wait::DiscoveryWait,
    plan::{kinds, overlay, plan},
    world::World,
};

/// The statuses written: in order, and the latest per object.
#[derive(Default)]
struct Written {
    order: Vec<ObjectKey>,
    latest: HashMap<ObjectKey, Value>,
}

#[derive(Clone, Default)]
struct Server(Arc<Mutex<Written>>);

impl Sink for Server {
    async fn apply(&self, write: &StatusWrite) -> Result<(), WriteError> {
        let mut s = self.0.lock().unwrap();
        s.order.push(write.key.clone());
        merge(s.latest.entry(write.key.clone()).or_insert(Value::Null), &write.status);
        Ok(())
    }
}

impl Server {
    fn writes(&self) -> Vec<ObjectKey> {
        self.0.lock().unwrap().order.clone()
    }

    /// `objects` as a reflector shows them once it has seen every write.
    fn show<K: Resource<DynamicType = ()> + Serialize + DeserializeOwned>(&self, kind: &'static str, objects: &mut [K]) {
        let s = self.0.lock().unwrap();
        for o in objects {
            let key = ObjectKey { kind, namespace: o.meta().namespace.clone().unwrap(), name: o.meta().name.clone().unwrap() };
            if let Some(status) = s.latest.get(&key) {
                *o = with_status(serde_json::to_value(&*o).unwrap(), status).unwrap();
            }
        }
    }

    /// `world` with every write so far visible.
    fn caught_up(&self, mut world: World) -> World {
        self.show(kinds::SERVICE, &mut world.services);
        self.show(kinds::ROUTE, &mut world.routes);
        world
    }
}

fn fleet_world(services: usize) -> World {
    let f = router_tests::fleet::fleet("default", services, 4);
    World::routing(f.vpcs, f.attachments, f.services, f.routes)
}

/// A copy of `w`, sharing its memo (and its wait for discovery), as the controller's passes share theirs.
fn cloned(w: &World) -> World {
    let mut copy = World::routing(w.vpcs.clone(), w.attachments.clone(), w.services.clone(), w.routes.clone());
    copy.memo = w.memo.clone();
    copy.discovery_wait = w.discovery_wait;
    copy
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

/// One pass over what the cache shows: offers what differs from the controller's last word.
fn pass(cache: &World, queue: &Arc<StatusQueue>) -> usize {
    let mut world = cloned(cache);
    overlay(&mut world, queue);
    let writes = plan(&world, now());
    let n = writes.len();
    for w in writes {
        queue.offer(w);
    }
    n
}

async fn drained(queue: &StatusQueue) {
    for _ in 0..500 {
        if queue.pending() == 0 {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    panic!("queue not drained");
}

fn queue(server: &Server) -> Arc<StatusQueue> {
    StatusQueue::start(server.clone(), &QueueArgs::default(), Arc::new(KubeMetrics::new("test")))
}

/// A fleet of `services` reconciled once, its writes landed and shown by the cache.
async fn converged(services: usize) -> (Server, Arc<StatusQueue>, World) {
    let server = Server::default();
    let q = queue(&server);
    let cache = fleet_world(services);
    pass(&cache, &q);
    drained(&q).await;
    let current = server.caught_up(cloned(&cache));
    (server, q, current)
}

#[tokio::test]
async fn a_replay_of_the_same_world_writes_nothing_even_before_the_cache_catches_up() {
    let server = Server::default();
    let q = queue(&server);
    let cache = fleet_world(50);
    assert_eq!(pass(&cache, &q), 250, "50 services and 200 routes, each written once");
    drained(&q).await;
    assert_eq!(server.writes().len(), 250);

    // The cache has not seen the writes yet; their watch events start more passes.
    for _ in 0..3 {
        assert_eq!(pass(&cache, &q), 0);
    }
    drained(&q).await;
    let caught_up = server.caught_up(cloned(&cache));
    assert_eq!(pass(&caught_up, &q), 0, "the cache shows what was written");
    assert_eq!(pass(&caught_up, &q), 0);
    assert_eq!(server.writes().len(), 250, "exactly one write per object");

    // A cold leader (no memory of its own writes) over a current cache writes nothing either.
    let fresh = queue(&server);
    assert_eq!(pass(&caught_up, &fresh), 0);
}

#[tokio::test]
async fn one_change_writes_the_objects_that_depend_on_it_and_no_others() {
    let (server, q, mut current) = converged(50).await;
    let before = server.writes().len();

    // One route now names a service that does not exist: that route, alone.
    let r = current.routes.iter_mut().find(|r| r.metadata.name.as_deref() == Some("route-3-0")).unwrap();
    r.spec.destinations[0].vpc_service_ref.name = "missing".into();
    r.metadata.generation = Some(2);
    assert_eq!(pass(&current, &q), 1);
    drained(&q).await;
    let written: Vec<String> = server.writes()[before..].iter().map(|k| format!("{} {}", k.kind, k.name)).collect();
    assert_eq!(written, ["VPCRoute route-3-0"]);
    assert_eq!(pass(&current, &q), 0, "and only once, though the cache still shows the old status");

    // A deleted service: the four routes naming it, nothing else.
    let before = server.writes().len();
    current.services.retain(|s| s.metadata.name.as_deref() != Some("svc-7"));
    current.index.take();
    assert_eq!(pass(&current, &q), 4);
    drained(&q).await;
    let mut written: Vec<String> = server.writes()[before..].iter().map(|k| k.name.clone()).collect();
    written.sort();
    assert_eq!(written, ["route-7-0", "route-7-1", "route-7-2", "route-7-3"]);
}

#[tokio::test]
async fn a_route_changed_to_shadow_another_is_seen_though_match_keys_are_kept() {
    let (server, q, mut current) = converged(10).await;
    let before = server.writes().len();

    // route-3-1 takes route-3-0's path: same age, so route-3-0 (first by name) keeps it.
    let r = current.routes.iter_mut().find(|r| r.metadata.name.as_deref() == Some("route-3-1")).unwrap();
    r.spec.matches[0].path_prefix = Some("/p0".into());
    r.metadata.generation = Some(2);
    assert_eq!(pass(&current, &q), 1);
    drained(&q).await;
    let last = server.writes().last().cloned().unwrap();
    assert_eq!((last.name.as_str(), server.writes().len() - before), ("route-3-1", 1));
    let current = server.caught_up(current);
    let shown = current.routes.iter().find(|r| r.metadata.name.as_deref() == Some("route-3-1")).unwrap();
    let programmed = shown.status.as_ref().unwrap().conditions.iter().find(|c| c.type_ == "Programmed").unwrap();
    assert_eq!((programmed.reason.as_str(), programmed.status.as_str()), ("Shadowed", "False"));
}

#[test]
fn the_snapshot_report_is_kept_across_status_changes_and_rebuilt_on_a_spec_change() {
    let cache = fleet_world(10);
    let first = cloned(&cache).report();
    let mut statuses_only = cloned(&cache);
    for r in &mut statuses_only.routes {
        r.status = Some(Default::default());
    }
    assert!(Arc::ptr_eq(&first, &statuses_only.report()), "a status write coming back rebuilds nothing");

    let mut changed = cloned(&cache);
    changed.routes[0].spec.hostnames = vec!["other.example.com".into()];
    changed.routes[0].metadata.generation = Some(2);
    assert!(!Arc::ptr_eq(&first, &changed.report()));
    let mut endpoints = cloned(&cache);
    endpoints.services[0].metadata.resource_version = Some("2".into());
    assert!(!Arc::ptr_eq(&changed.report(), &endpoints.report()), "a VPCService's status is read: its resourceVersion counts");
}

/// What service-discovery writes on each of `services`: one ready endpoint, Discovered at its generation.
fn discover(services: &mut [router_api::v1alpha1::VPCService]) {
    for s in services {
        let discovered = serde_json::from_value(serde_json::json!({
            "type": "Discovered", "status": "True", "reason": "ResolvedRefs", "message": "1 endpoints from VPCAttachments",
            "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": s.metadata.generation,
        }))
        .unwrap();
        let status = s.status.get_or_insert_default();
        status.conditions.push(discovered);
        status.endpoints = vec![serde_json::from_value(serde_json::json!({ "address": "10.0.0.1", "port": 8080, "ready": true })).unwrap()];
        status.ready_endpoints = 1;
    }
}

/// A fleet of `services` no component has written yet, its routes waiting for discovery
/// (30 s of grace) from a controller started `since_secs_ago`; the server and queue it is written through.
fn cold_start(services: usize, since_secs_ago: i64) -> (Server, Arc<StatusQueue>, World) {
    let server = Server::default();
    let q = queue(&server);
    let mut cache = fleet_world(services);
    cache.discovery_wait =
        Some(DiscoveryWait { since: now() - SignedDuration::from_secs(since_secs_ago), grace: SignedDuration::from_secs(30) });
    (server, q, cache)
}

#[tokio::test]
async fn on_a_cold_start_routes_wait_for_discovery_and_are_written_once() {
    let (server, q, cache) = cold_start(50, 1);
    assert_eq!(pass(&cache, &q), 50, "the services' own conditions; the 200 routes wait");
    assert_eq!(cache.discovery_deadline(now()), Some(now() + SignedDuration::from_secs(29)), "the pass to run if discovery stays silent");
    drained(&q).await;

    // Discovery writes half the services; their watch events wake passes.
    let mut cache = server.caught_up(cloned(&cache));
    discover(&mut cache.services[..25]);
    cache.index.take();
    assert_eq!(pass(&cache, &q), 100, "the routes of the 25 discovered services");
    discover(&mut cache.services[25..]);
    assert_eq!(pass(&cache, &q), 100, "and then the others");
    assert_eq!(cache.discovery_deadline(now()), None, "nothing waits any longer");
    drained(&q).await;
    assert_eq!(server.writes().len(), 250, "one write per object");
    let shown = server.caught_up(cloned(&cache));
    assert!(shown.routes.iter().all(|r| r.status.as_ref().unwrap().destinations[0].ready_endpoints == 1), "written with their endpoints");
    assert_eq!(pass(&shown, &q), 0);
}

#[tokio::test]
async fn without_discovery_routes_are_written_once_the_grace_runs_out() {
    let (server, q, cache) = cold_start(10, 30);
    assert_eq!(pass(&cache, &q), 50, "the grace has run out: every route is written, with what is known");
    assert_eq!(cache.discovery_deadline(now()), None);
    drained(&q).await;
    let shown = server.caught_up(cloned(&cache));
    assert!(shown.routes.iter().all(|r| r.status.as_ref().unwrap().destinations[0].ready_endpoints == 0));
}
