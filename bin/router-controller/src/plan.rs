//! One pass, as a pure function: every status the controller owns, computed
//! from a [`World`], and offered as a write where it differs from the status
//! the world shows. The world shows the controller's own last word
//! ([`overlay`]), so a replay of the same world offers nothing, and a change
//! offers writes for exactly the objects whose status depends on it.

use k8s_openapi::jiff::Timestamp;
use kube::{
    Resource,
    runtime::events::{Event, EventType},
};
use router_api::v1alpha1::tunnel_conflicts;
use router_kube::status_queue::{StatusQueue, StatusWrite};
use serde::Serialize;

use crate::{binding, events, objects, routes, world::World};

/// The kinds whose status the controller writes, as the queue names them.
pub mod kinds {
    pub const SERVICE: &str = "VPCService";
    pub const ROUTE: &str = "VPCRoute";
    pub const BINDING: &str = "ServiceBinding";
    pub const TUNNEL: &str = "TunnelBinding";
    pub const INGRESS: &str = "VPCIngress";
    pub const EGRESS: &str = "VPCEgress";
}

/// Lays the statuses the controller last offered over `world`'s cached
/// objects (see `router_kube::status_queue`). Call before reading the world.
pub fn overlay(world: &mut World, queue: &StatusQueue) {
    queue.overlay(kinds::SERVICE, &mut world.services);
    queue.overlay(kinds::ROUTE, &mut world.routes);
    queue.overlay(kinds::BINDING, &mut world.bindings);
    queue.overlay(kinds::TUNNEL, &mut world.tunnels);
    queue.overlay(kinds::INGRESS, &mut world.ingresses);
    queue.overlay(kinds::EGRESS, &mut world.egress);
}

/// The writes one pass over `world` makes: each a status that differs from
/// the one shown, with the Events of its condition changes.
pub fn plan(world: &World, now: Timestamp) -> Vec<StatusWrite> {
    let snapshot = world.report();
    let shadows = routes::shadowing(&world.routes, &world.memo);
    let tunnel_losers = tunnel_conflicts(&world.tunnels);
    let mut writes = Vec::new();
    let conditions = |c| serde_json::json!({ "conditions": c });
    collect(&mut writes, kinds::SERVICE, &world.services, |s| objects::service(s, world, &snapshot, now).map(conditions));
    // Most passes find no VPCService waiting for discovery, and then check no route for it.
    let awaiting = world.discovery_deadline(now).is_some();
    collect(&mut writes, kinds::ROUTE, &world.routes, |r| {
        if awaiting && world.route_awaits_discovery(r, now) { None } else { routes::desired(r, world, &snapshot, &shadows, now) }
    });
    collect(&mut writes, kinds::BINDING, &world.bindings, |b| binding::desired(b, world, now));
    collect(&mut writes, kinds::TUNNEL, &world.tunnels, |t| objects::tunnel(t, world, &tunnel_losers, now).map(conditions));
    collect(&mut writes, kinds::INGRESS, &world.ingresses, |i| objects::ingress(i, world, &snapshot, now));
    collect(&mut writes, kinds::EGRESS, &world.egress, |e| objects::egress(e, world, &snapshot, now));
    writes
}

fn collect<K, S>(writes: &mut Vec<StatusWrite>, kind: &'static str, objects: &[K], mut desired: impl FnMut(&K) -> Option<S>)
where
    K: Resource<DynamicType = ()> + Serialize,
    S: Serialize,
{
    for object in objects {
        let Some(status) = desired(object) else { continue };
        let status = serde_json::to_value(&status).unwrap_or_default();
        let shown = serde_json::to_value(object).ok().and_then(|o| o.pointer("/status/conditions").cloned()).unwrap_or_default();
        let events = events::transitions(&shown, &status["conditions"])
            .into_iter()
            .map(|t| Event {
                type_: if t.warning { EventType::Warning } else { EventType::Normal },
                reason: t.reason,
                note: Some(t.note),
                action: "Reconcile".to_owned(),
                secondary: None,
            })
            .collect();
        writes.push(StatusWrite::new(kind, object, status, events));
    }
}
