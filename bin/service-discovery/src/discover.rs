//! What service-discovery writes on one VPCService: its VPC, its endpoints
//! and their ready count, and the Discovered and Ready conditions — and
//! nothing when that is what the status already says.
//!
//! Endpoints come from the attachments the service selects (only ready VPCs
//! and attachments give ready endpoints), or, when a ServiceBinding targets
//! the service, from the pods that binding synced (their VPC addresses).
//! At most `max_endpoints` are written; more is a condition, not a silent cut.
//! Each endpoint carries where it is (zone, region, city code) from its
//! attachment's topology labels or the Datum Location the attachment names.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use router_api::{
    datum::Location,
    galactic::{VPC, VPCAttachment},
    v1alpha1::{ConditionStatus, Conditions, ServiceBinding, ServiceEndpoint, VPCService, VpcIdentity, condition_types, reasons},
};
use router_galactic::{ResolveProblem, resolve_endpoints};
use serde::Serialize;

/// The status fields service-discovery owns (docs/ownership.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OwnedStatus {
    /// Only the Discovered and Ready conditions; server-side apply merges them by type.
    pub conditions: Vec<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vpc: Option<VpcIdentity>,
    pub endpoints: Vec<ServiceEndpoint>,
    pub ready_endpoints: i32,
}

const OWNED_CONDITIONS: [&str; 2] = [condition_types::DISCOVERED, condition_types::READY];

/// The owned status `svc` should have, or None when it already has it.
pub fn desired(
    svc: &VPCService,
    attachments: &[VPCAttachment],
    vpcs: &[VPC],
    locations: &[Location],
    bindings: &[ServiceBinding],
    max_endpoints: usize,
    now: Timestamp,
) -> Option<OwnedStatus> {
    let namespace = svc.metadata.namespace.as_deref().unwrap_or("default");
    let name = svc.metadata.name.as_deref().unwrap_or_default();
    let generation = svc.metadata.generation;
    let resolution = resolve_endpoints(svc, attachments, vpcs, locations);
    let binding = bindings
        .iter()
        .filter(|b| b.metadata.namespace.as_deref().unwrap_or("default") == namespace && b.spec.vpc_service_ref.name == name)
        .min_by_key(|b| b.metadata.name.clone());

    let (mut endpoints, source) = match binding {
        Some(b) => (
            b.status.as_ref().map(|s| s.endpoints.clone()).unwrap_or_default(),
            format!("ServiceBinding {}", b.metadata.name.as_deref().unwrap_or_default()),
        ),
        None => (resolution.endpoints.clone(), "VPCAttachments".to_owned()),
    };
    let total = endpoints.len();
    endpoints.truncate(max_endpoints);
    let ready = endpoints.iter().filter(|e| e.ready).count();

    let blocking = resolution.problems.iter().any(|p| {
        matches!(
            p,
            ResolveProblem::AttachmentNotFound(_)
                | ResolveProblem::NoAttachmentSelected
                | ResolveProblem::InvalidSelector(_)
                | ResolveProblem::VpcNotFound { .. }
        )
    });
    let problems = resolution.problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
    let (discovered, reason, message) = if total > max_endpoints {
        (
            false,
            reasons::TOO_MANY_ENDPOINTS,
            format!("{total} endpoints resolved from {source}; only the first {max_endpoints} are written"),
        )
    } else if binding.is_none() && blocking {
        let reason = if resolution.problems.iter().any(|p| matches!(p, ResolveProblem::InvalidSelector(_))) {
            reasons::INVALID
        } else {
            reasons::REF_NOT_FOUND
        };
        (false, reason, problems)
    } else if problems.is_empty() || binding.is_some() {
        (true, reasons::RESOLVED_REFS, format!("{total} endpoints from {source}"))
    } else {
        (true, reasons::RESOLVED_REFS, format!("{total} endpoints from {source}; {problems}"))
    };
    let (ready_status, ready_reason, ready_message) = if ready > 0 {
        (true, reasons::ENDPOINTS_READY, format!("{ready} of {} endpoints ready", endpoints.len()))
    } else if !endpoints.is_empty() && resolution.vpc.is_some() && binding.is_none() {
        (false, reasons::VPC_NOT_READY, "no endpoint is ready: their VPCAttachments or VPC are not ready".to_owned())
    } else {
        (false, reasons::NO_READY_ENDPOINTS, "no ready endpoints".to_owned())
    };

    let current = svc.status.clone().unwrap_or_default();
    let mut conditions: Vec<Condition> =
        current.conditions.iter().filter(|c| OWNED_CONDITIONS.contains(&c.type_.as_str())).cloned().collect();
    let mut changed = conditions.len() != OWNED_CONDITIONS.len();
    changed |= conditions.set(condition_types::DISCOVERED, ConditionStatus::from(discovered), reason, message, generation, now);
    changed |= conditions.set(condition_types::READY, ConditionStatus::from(ready_status), ready_reason, ready_message, generation, now);
    let ready_endpoints = i32::try_from(ready).unwrap_or(i32::MAX);
    changed |= current.vpc != resolution.vpc || current.endpoints != endpoints || current.ready_endpoints != ready_endpoints;
    changed.then_some(OwnedStatus { conditions, vpc: resolution.vpc, endpoints, ready_endpoints })
}

#[cfg(test)]
mod tests {
    use router_api::v1alpha1::VPCServiceStatus;

    use super::*;

    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("valid test object")
    }

    fn vpc(ready: bool) -> VPC {
        object(serde_json::json!({
            "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC",
            "metadata": {"name": "vpc", "namespace": "default"},
            "spec": {"networks": ["10.0.0.0/8"]}, "status": {"ready": ready, "identifier": "0a1b2c3d4e5f"}
        }))
    }

    fn attachment(name: &str, ip: &str, ready: bool) -> VPCAttachment {
        object(serde_json::json!({
            "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPCAttachment",
            "metadata": {"name": name, "namespace": "default", "labels": {"app": "api"}},
            "spec": {"vpc": {"name": "vpc"}, "interface": {"name": "galactic0", "addresses": [format!("{ip}/24")]}},
            "status": {"ready": ready}
        }))
    }

    fn service(selector: serde_json::Value) -> VPCService {
        object(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
            "metadata": {"name": "api", "namespace": "default", "generation": 3},
            "spec": {"vpcAttachmentSelector": selector, "port": 8080, "protocol": "HTTP"}
        }))
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    fn condition<'a>(s: &'a OwnedStatus, t: &str) -> &'a Condition {
        s.conditions.iter().find(|c| c.type_ == t).unwrap()
    }

    /// Attachments as (name, ip, ready).
    type Attachments = Vec<(&'static str, &'static str, bool)>;
    /// (Discovered, reason, Ready, reason, endpoints, ready endpoints).
    type Expected = (&'static str, &'static str, &'static str, &'static str, usize, i32);

    /// (case, VPC ready, attachments, selector, max) → expected.
    #[test]
    fn desired_status_table() {
        let selector = serde_json::json!({"matchLabels": {"app": "api"}});
        let nothing = serde_json::json!({"matchLabels": {"app": "nothing"}});
        let bad = serde_json::json!({"matchExpressions": [{"key": "app", "operator": "Bogus"}]});
        let cases: Vec<(&str, bool, Attachments, serde_json::Value, usize, Expected)> = vec![
            (
                "all ready",
                true,
                vec![("a", "10.0.0.1", true), ("b", "10.0.0.2", true)],
                selector.clone(),
                100,
                ("True", reasons::RESOLVED_REFS, "True", reasons::ENDPOINTS_READY, 2, 2),
            ),
            (
                "one attachment not ready",
                true,
                vec![("a", "10.0.0.1", true), ("b", "10.0.0.2", false)],
                selector.clone(),
                100,
                ("True", reasons::RESOLVED_REFS, "True", reasons::ENDPOINTS_READY, 2, 1),
            ),
            (
                "VPC not ready",
                false,
                vec![("a", "10.0.0.1", true)],
                selector.clone(),
                100,
                ("True", reasons::RESOLVED_REFS, "False", reasons::VPC_NOT_READY, 1, 0),
            ),
            (
                "nothing selected",
                true,
                vec![("a", "10.0.0.1", true)],
                nothing,
                100,
                ("False", reasons::REF_NOT_FOUND, "False", reasons::NO_READY_ENDPOINTS, 0, 0),
            ),
            (
                "invalid selector",
                true,
                vec![("a", "10.0.0.1", true)],
                bad,
                100,
                ("False", reasons::INVALID, "False", reasons::NO_READY_ENDPOINTS, 0, 0),
            ),
            (
                "over the cap",
                true,
                vec![("a", "10.0.0.1", true), ("b", "10.0.0.2", true), ("c", "10.0.0.3", true)],
                selector.clone(),
                2,
                ("False", reasons::TOO_MANY_ENDPOINTS, "True", reasons::ENDPOINTS_READY, 2, 2),
            ),
        ];
        for (case, vpc_ready, atts, sel, max, (disc, disc_reason, ready, ready_reason, n, n_ready)) in cases {
            let attachments: Vec<_> = atts.iter().map(|(n, ip, r)| attachment(n, ip, *r)).collect();
            let s =
                desired(&service(sel), &attachments, &[vpc(vpc_ready)], &[], &[], max, now()).unwrap_or_else(|| panic!("{case}: a write"));
            let d = condition(&s, condition_types::DISCOVERED);
            let r = condition(&s, condition_types::READY);
            assert_eq!((d.status.as_str(), d.reason.as_str()), (disc, disc_reason), "{case}: {}", d.message);
            assert_eq!((r.status.as_str(), r.reason.as_str()), (ready, ready_reason), "{case}: {}", r.message);
            assert_eq!((s.endpoints.len(), s.ready_endpoints), (n, n_ready), "{case}");
            assert_eq!(d.observed_generation, Some(3), "{case}");
        }
    }

    #[test]
    fn an_unchanged_status_is_not_written_again() {
        let atts = [attachment("a", "10.0.0.1", true)];
        let mut svc = service(serde_json::json!({"matchLabels": {"app": "api"}}));
        let first = desired(&svc, &atts, &[vpc(true)], &[], &[], 100, now()).unwrap();
        svc.status = Some(VPCServiceStatus {
            conditions: first.conditions.clone(),
            vpc: first.vpc.clone(),
            endpoints: first.endpoints.clone(),
            ready_endpoints: first.ready_endpoints,
        });
        assert_eq!(desired(&svc, &atts, &[vpc(true)], &[], &[], 100, now()), None);
        // A flip is a write, and moves lastTransitionTime only on the flipped condition.
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        let flipped = desired(&svc, &[attachment("a", "10.0.0.1", false)], &[vpc(true)], &[], &[], 100, later).unwrap();
        assert_eq!(condition(&flipped, condition_types::READY).last_transition_time.0, later);
        assert_eq!(condition(&flipped, condition_types::DISCOVERED).last_transition_time.0, now());
    }

    #[test]
    fn a_service_binding_supplies_the_endpoints() {
        let binding: ServiceBinding = object(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "ServiceBinding",
            "metadata": {"name": "api", "namespace": "default"},
            "spec": {"serviceRef": {"name": "api"}, "vpcServiceRef": {"name": "api"}},
            "status": {"endpoints": [{"address": "2001:db8::5", "port": 8080, "pod": "api-0", "ready": true}], "readyEndpoints": 1}
        }));
        let s = desired(
            &service(serde_json::json!({"matchLabels": {"app": "api"}})),
            &[attachment("a", "10.0.0.1", true)],
            &[vpc(true)],
            &[],
            &[binding],
            100,
            now(),
        )
        .unwrap();
        assert_eq!(s.endpoints.len(), 1);
        assert_eq!(s.endpoints[0].pod.as_deref(), Some("api-0"));
        assert!(condition(&s, condition_types::DISCOVERED).message.contains("ServiceBinding api"));
    }
}
