//! Route statuses wait, briefly, for service-discovery's first word.
//!
//! A VPCRoute's status names the ready endpoints of each destination, which
//! service-discovery writes onto the VPCService. When the controller and
//! discovery start together over a fleet (or a user applies a VPCService
//! with its routes), a route written before its service was discovered says
//! `readyEndpoints: 0` and is written again a moment later: two writes per
//! route where one would do (issue 11 measured 1.34 writes per object while
//! converging). So a route whose destination has no `Discovered` condition
//! for its current generation is left out of the pass, for at most a grace
//! period counted from the controller's start or the service's creation,
//! whichever is later; discovery's write wakes the pass that writes it. When
//! discovery is absent or slow, the grace runs out and the route is written
//! with what is known, so a status is never held back for long.

use k8s_openapi::jiff::{SignedDuration, Timestamp};
use router_api::{
    manifest::DEFAULT_NAMESPACE,
    v1alpha1::{VPCRoute, VPCService, condition_types},
};

use crate::world::{World, key};

/// How long route statuses may wait for service-discovery, and from when.
#[derive(Debug, Clone, Copy)]
pub struct DiscoveryWait {
    /// When the controller started: services older than that wait from here.
    pub since: Timestamp,
    pub grace: SignedDuration,
}

impl DiscoveryWait {
    /// Until when `service` may still be waited for: it has no `Discovered`
    /// condition for its generation, and the grace has not run out.
    fn until(&self, service: &VPCService, now: Timestamp) -> Option<Timestamp> {
        let discovered = service.status.as_ref().is_some_and(|s| {
            s.conditions.iter().any(|c| c.type_ == condition_types::DISCOVERED && c.observed_generation == service.metadata.generation)
        });
        if discovered {
            return None;
        }
        let created = service.metadata.creation_timestamp.as_ref().map(|t| t.0);
        let from = created.map_or(self.since, |c| c.max(self.since));
        let until = from.checked_add(self.grace).ok()?;
        (now < until).then_some(until)
    }
}

impl World {
    /// Whether `route`'s status waits for service-discovery (see the module).
    pub fn route_awaits_discovery(&self, route: &VPCRoute, now: Timestamp) -> bool {
        let Some(wait) = self.discovery_wait else { return false };
        let namespace = route.metadata.namespace.as_deref().unwrap_or(DEFAULT_NAMESPACE);
        route.spec.destinations.iter().any(|d| {
            let r = &d.vpc_service_ref;
            // Discovery does not act on a VPCService that breaks its CRD's rules: nothing to wait for.
            self.service(r.namespace_or(namespace), &r.name)
                .is_some_and(|s| wait.until(s, now).is_some() && !self.invalid.services.contains_key(&key(&s.metadata)))
        })
    }

    /// When the next wait runs out, if any route may be waiting: the pass
    /// to run then even if discovery never writes.
    pub fn discovery_deadline(&self, now: Timestamp) -> Option<Timestamp> {
        let wait = self.discovery_wait?;
        self.services.iter().filter_map(|s| wait.until(s, now)).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(created: &str, discovered_generation: Option<i64>) -> VPCService {
        let conditions: Vec<serde_json::Value> = discovered_generation
            .map(|g| {
                serde_json::json!({ "type": "Discovered", "status": "True", "reason": "ResolvedRefs", "message": "1 endpoints",
                                     "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": g })
            })
            .into_iter()
            .collect();
        serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
            "metadata": { "name": "svc", "namespace": "default", "generation": 2, "creationTimestamp": created },
            "spec": { "vpcAttachmentRef": { "name": "att" }, "port": 8080, "protocol": "HTTP" },
            "status": { "conditions": conditions },
        }))
        .unwrap()
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn an_undiscovered_service_is_waited_for_from_the_later_of_start_and_creation() {
        let wait = DiscoveryWait { since: at("2026-01-01T00:00:00Z"), grace: SignedDuration::from_secs(30) };
        let old = service("2025-01-01T00:00:00Z", None);
        assert_eq!(wait.until(&old, at("2026-01-01T00:00:10Z")), Some(at("2026-01-01T00:00:30Z")));
        assert_eq!(wait.until(&old, at("2026-01-01T00:00:30Z")), None, "the grace ran out");
        let new = service("2026-01-01T00:05:00Z", None);
        assert_eq!(wait.until(&new, at("2026-01-01T00:05:01Z")), Some(at("2026-01-01T00:05:30Z")));
    }

    #[test]
    fn a_service_discovered_at_its_generation_is_not_waited_for() {
        let wait = DiscoveryWait { since: at("2026-01-01T00:00:00Z"), grace: SignedDuration::from_secs(30) };
        let now = at("2026-01-01T00:00:01Z");
        assert_eq!(wait.until(&service("2025-01-01T00:00:00Z", Some(2)), now), None);
        assert!(wait.until(&service("2025-01-01T00:00:00Z", Some(1)), now).is_some(), "discovered at an older generation");
    }
}
