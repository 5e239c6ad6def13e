//! VPCService (the controller's conditions: Accepted, ResolvedRefs),
//! VPCIngress (Accepted, ResolvedRefs, Programmed and per-listener status),
//! VPCEgress (Accepted, Programmed) and TunnelBinding (the controller's
//! conditions: Accepted, ResolvedRefs; tunnel-gateway owns the rest) statuses.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use router_api::v1alpha1::{
    ListenerStatus, TunnelBinding, VPCEgress, VPCEgressStatus, VPCIngress, VPCIngressStatus, VPCService, condition_types, reasons,
};
use router_core::{ServiceKey, SnapshotReport};

use crate::world::{Desired, RefProblem, World, accepted, conditions_current, key, merge_conditions, not_programmed, rejected, resolved};

/// The controller's conditions on a VPCService, and only them: service-discovery owns the
/// rest of the status, and applying a default `readyEndpoints` would take it over.
pub fn service(svc: &VPCService, world: &World, report: &SnapshotReport, now: Timestamp) -> Option<Vec<Condition>> {
    let (namespace, name) = key(&svc.metadata);
    let mut missing = Vec::new();
    if let Some(r) = &svc.spec.vpc_attachment_ref
        && world.attachment(&namespace, &r.name).is_none()
    {
        missing.push(RefProblem::missing(format!("VPCAttachment {namespace}/{} not found", r.name)));
    }
    missing.extend(world.secret_problems(&namespace, svc.spec.secret_refs()));
    let notes = report.services.get(&ServiceKey { namespace, name }).cloned().unwrap_or_default();
    let accepted = rejected(&world.invalid.services, &svc.metadata)
        .unwrap_or_else(|| accepted(if notes.is_empty() { "accepted".to_owned() } else { format!("accepted; {}", notes.join("; ")) }));
    let stored = svc.status.as_ref().map(|s| &s.conditions[..]).unwrap_or_default();
    let desired = vec![accepted, resolved(missing)];
    if conditions_current(stored, &desired, svc.metadata.generation) {
        return None;
    }
    let (conditions, changed) = merge_conditions(stored, desired, svc.metadata.generation, now);
    changed.then_some(conditions)
}

/// A VPCIngress: its VPC, its certificate Secrets, and what the gateways program of its listeners.
pub fn ingress(ing: &VPCIngress, world: &World, report: &SnapshotReport, now: Timestamp) -> Option<VPCIngressStatus> {
    let (namespace, name) = key(&ing.metadata);
    let label = format!("{namespace}/{name}");
    let mut missing = Vec::new();
    if world.vpc(&namespace, &ing.spec.vpc_ref.name).is_none() {
        missing.push(RefProblem::missing(format!("VPC {namespace}/{} not found", ing.spec.vpc_ref.name)));
    }
    missing.extend(world.secret_problems(&namespace, ing.spec.secret_refs()));
    missing.dedup();
    let vpc_found = world.vpc(&namespace, &ing.spec.vpc_ref.name).is_some();
    let mut listeners = Vec::new();
    let mut programmed = 0;
    for l in &ing.spec.listeners {
        let report = report.listeners.get(&format!("{label}/{}", l.name)).cloned().unwrap_or_default();
        let conflicted = report.problems.iter().any(|p| p.contains("conflict") || p.contains("used by the gateway itself"));
        let (ok, reason) = match (report.programmed, conflicted) {
            (true, _) => (true, reasons::PROGRAMMED),
            (false, true) => (false, reasons::CONFLICTED),
            (false, false) => (false, reasons::PENDING),
        };
        programmed += usize::from(ok);
        let message = if report.problems.is_empty() { "programmed".to_owned() } else { report.problems.join("; ") };
        let stored = ing
            .status
            .as_ref()
            .and_then(|s| s.listeners.iter().find(|x| x.name == l.name))
            .map(|x| x.conditions.clone())
            .unwrap_or_default();
        let (conditions, _) = merge_conditions(
            &stored,
            vec![Desired { type_: condition_types::PROGRAMMED, status: ok, reason, message }],
            ing.metadata.generation,
            now,
        );
        listeners.push(ListenerStatus {
            name: l.name.clone(),
            attached_routes: i32::try_from(report.attached_routes).unwrap_or(i32::MAX),
            conditions,
        });
    }
    let accepted = if let Some(invalid) = rejected(&world.invalid.ingresses, &ing.metadata) {
        invalid
    } else if vpc_found {
        accepted("accepted")
    } else {
        Desired {
            type_: condition_types::ACCEPTED,
            status: false,
            reason: reasons::REF_NOT_FOUND,
            message: format!("VPC {namespace}/{} not found", ing.spec.vpc_ref.name),
        }
    };
    let total = ing.spec.listeners.len();
    let programmed = Desired {
        type_: condition_types::PROGRAMMED,
        status: programmed > 0,
        reason: if programmed == total {
            reasons::PROGRAMMED
        } else if programmed > 0 {
            reasons::CONFLICTED
        } else {
            reasons::PENDING
        },
        message: format!("{programmed} of {total} listeners programmed"),
    };
    let stored = ing.status.clone().unwrap_or_default();
    let (conditions, changed) =
        merge_conditions(&stored.conditions, vec![accepted, resolved(missing), programmed], ing.metadata.generation, now);
    (changed || stored.listeners != listeners).then_some(VPCIngressStatus { conditions, listeners })
}

/// A VPCEgress: its VPC exists and it is the policy the gateways enforce for that VPC.
pub fn egress(e: &VPCEgress, world: &World, report: &SnapshotReport, now: Timestamp) -> Option<VPCEgressStatus> {
    let (namespace, name) = key(&e.metadata);
    let problems = report.egress.get(&format!("{namespace}/{name}")).cloned().unwrap_or_default();
    let not_enforced = problems.iter().find(|p| p.ends_with("not enforced"));
    let (accepted, programmed) = match (rejected(&world.invalid.egress, &e.metadata), not_enforced) {
        (Some(invalid), _) => (invalid, not_programmed()),
        (None, Some(p)) if p.contains("not found") => (
            Desired { type_: condition_types::ACCEPTED, status: false, reason: reasons::REF_NOT_FOUND, message: p.clone() },
            not_programmed(),
        ),
        (None, Some(p)) => (
            accepted("accepted"),
            Desired { type_: condition_types::PROGRAMMED, status: false, reason: reasons::CONFLICTED, message: p.clone() },
        ),
        (None, None) => (
            accepted("accepted"),
            Desired {
                type_: condition_types::PROGRAMMED,
                status: true,
                reason: reasons::PROGRAMMED,
                message: if problems.is_empty() { "enforced".to_owned() } else { format!("enforced; {}", problems.join("; ")) },
            },
        ),
    };
    let stored = e.status.clone().unwrap_or_default();
    let (conditions, changed) = merge_conditions(&stored.conditions, vec![accepted, programmed], e.metadata.generation, now);
    changed.then_some(VPCEgressStatus { conditions })
}

/// The controller's conditions on a TunnelBinding: Accepted (valid, and not the
/// loser of a conflict over its VPCService: the oldest binding wins, the loser
/// names it) and ResolvedRefs (the VPCService exists). `losers` is
/// `tunnel_conflicts` of every binding.
pub fn tunnel(
    t: &TunnelBinding,
    world: &World,
    losers: &std::collections::BTreeMap<(String, String), (String, String)>,
    now: Timestamp,
) -> Option<Vec<Condition>> {
    let (namespace, name) = key(&t.metadata);
    let service = &t.spec.vpc_service_ref.name;
    let accepted = match (rejected(&world.invalid.tunnels, &t.metadata), losers.get(&(namespace.clone(), name))) {
        (Some(invalid), _) => invalid,
        (None, Some((wns, wname))) => Desired {
            type_: condition_types::ACCEPTED,
            status: false,
            reason: reasons::CONFLICTED,
            message: format!(
                "TunnelBinding {wns}/{wname} already serves VPCService {namespace}/{service} (older, or first by namespace/name)"
            ),
        },
        (None, None) => accepted("accepted"),
    };
    let missing: Vec<RefProblem> = world
        .service(&namespace, service)
        .is_none()
        .then(|| RefProblem::missing(format!("VPCService {namespace}/{service} not found")))
        .into_iter()
        .collect();
    let stored = t.status.clone().unwrap_or_default();
    let (conditions, changed) = merge_conditions(&stored.conditions, vec![accepted, resolved(missing)], t.metadata.generation, now);
    changed.then_some(conditions)
}
