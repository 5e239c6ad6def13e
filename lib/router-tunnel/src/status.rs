//! What the tunnel-gateway leader writes to a TunnelBinding's status, from
//! its own view of the connectors: `Ready` (a connector is reachable, or
//! reason `NoConnectorReachable`), `connectors[]` and `reachableConnectors`.
//! Pure, and compared with what was last written so an unchanged view costs
//! no request. RTTs are rounded to 10 ms so jitter is not a change.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use router_api::v1alpha1::{ConditionStatus, Conditions, ConnectorStatus, condition_types, reasons};

use crate::serve::BindingReport;

/// The fields the leader owns.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LeaderStatus {
    pub conditions: Vec<Condition>,
    pub connectors: Vec<ConnectorStatus>,
    pub reachable_connectors: i32,
}

/// The leader's status for one binding, merged into `stored` conditions (keeping
/// `lastTransitionTime` unless Ready flips); None when it equals `previous`.
pub fn leader_status(
    report: &BindingReport,
    stored: &[Condition],
    generation: Option<i64>,
    previous: Option<&LeaderStatus>,
    now: Timestamp,
) -> Option<LeaderStatus> {
    let connectors: Vec<ConnectorStatus> = report
        .connectors
        .iter()
        .map(|c| ConnectorStatus {
            endpoint_id: c.endpoint_id.clone(),
            reachable: c.up,
            path: c.path.map(str::to_owned),
            rtt_ms: c.rtt_ms.map(|ms| i64::try_from(ms / 10 * 10).unwrap_or(i64::MAX)),
            last_error: if c.up { None } else { c.last_error.clone() },
        })
        .collect();
    let reachable = connectors.iter().filter(|c| c.reachable).count();
    let (status, reason, message) = if !report.problems.is_empty() && report.connectors.is_empty() {
        (false, reasons::NO_CONNECTOR_REACHABLE, format!("not served: {}", report.problems.join("; ")))
    } else if reachable > 0 {
        (true, reasons::CONNECTOR_REACHABLE, format!("{reachable} of {} connectors reachable", connectors.len()))
    } else {
        let why: Vec<String> = connectors.iter().filter_map(|c| c.last_error.clone()).collect();
        let detail = if why.is_empty() { String::new() } else { format!(": {}", why.join("; ")) };
        (false, reasons::NO_CONNECTOR_REACHABLE, format!("no connector reachable{detail}"))
    };
    let mut conditions: Vec<Condition> = stored.iter().filter(|c| c.type_ == condition_types::READY).cloned().collect();
    conditions.set(condition_types::READY, ConditionStatus::from(status), reason, message, generation, now);
    let desired = LeaderStatus { conditions, connectors, reachable_connectors: i32::try_from(reachable).unwrap_or(i32::MAX) };
    (previous != Some(&desired)).then_some(desired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::ConnectorReport;

    fn report(up: &[bool]) -> BindingReport {
        BindingReport {
            binding: "n/b".into(),
            listening: None,
            target: "127.0.0.1:80".into(),
            connectors: up
                .iter()
                .enumerate()
                .map(|(i, up)| ConnectorReport {
                    endpoint_id: format!("c{i}"),
                    up: *up,
                    path: up.then_some("Direct"),
                    rtt_ms: up.then_some(13),
                    last_error: (!up).then(|| "timed out".to_owned()),
                })
                .collect(),
            problems: Vec::new(),
        }
    }

    fn now() -> Timestamp {
        Timestamp::from_second(1_800_000_000).unwrap()
    }

    #[test]
    fn ready_follows_the_reachable_connectors_and_names_why_none_is() {
        let s = leader_status(&report(&[true, false]), &[], Some(1), None, now()).unwrap();
        assert_eq!((s.conditions[0].status.as_str(), s.conditions[0].reason.as_str()), ("True", reasons::CONNECTOR_REACHABLE));
        assert_eq!(s.reachable_connectors, 1);
        assert_eq!(s.connectors[0].rtt_ms, Some(10), "rounded to 10 ms");
        let down = leader_status(&report(&[false]), &s.conditions, Some(1), Some(&s), now()).unwrap();
        assert_eq!(down.conditions[0].reason, reasons::NO_CONNECTOR_REACHABLE);
        assert!(down.conditions[0].message.contains("timed out"), "{}", down.conditions[0].message);
    }

    #[test]
    fn an_unchanged_view_writes_nothing() {
        let first = leader_status(&report(&[true]), &[], Some(1), None, now()).unwrap();
        let later = Timestamp::from_second(1_800_000_100).unwrap();
        assert_eq!(leader_status(&report(&[true]), &first.conditions, Some(1), Some(&first), later), None);
    }
}
