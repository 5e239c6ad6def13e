//! `metav1.Condition` helpers shared by every kind's status.
//!
//! Conditions are computed as desired state (type, status, reason, message,
//! observedGeneration) by pure functions; [`Conditions::set`] merges one into
//! a list the Kubernetes way: `lastTransitionTime` moves only when the status
//! flips, so rewriting the same condition is a no-op and status writers can
//! compare old and new lists to skip needless patches.

use k8s_openapi::{
    apimachinery::pkg::apis::meta::v1::{Condition, Time},
    jiff::Timestamp,
};

/// Condition types used across the router kinds.
pub mod condition_types {
    /// The object is valid and the component owning it has taken it on.
    pub const ACCEPTED: &str = "Accepted";
    /// Every reference the object makes resolves.
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    /// The data plane serves the object.
    pub const PROGRAMMED: &str = "Programmed";
    /// A VPCService has at least one ready endpoint.
    pub const READY: &str = "Ready";
    /// A ServiceBinding's endpoints follow its Service.
    pub const SYNCED: &str = "Synced";
    /// Written by service-discovery on VPCService: endpoints were resolved from Galactic.
    pub const DISCOVERED: &str = "Discovered";
}

/// Reasons, in the Gateway API style: CamelCase, stable, documented in docs/api.md.
pub mod reasons {
    pub const ACCEPTED: &str = "Accepted";
    pub const INVALID: &str = "Invalid";
    pub const RESOLVED_REFS: &str = "ResolvedRefs";
    pub const REF_NOT_FOUND: &str = "RefNotFound";
    pub const REF_NOT_PERMITTED: &str = "RefNotPermitted";
    pub const PROGRAMMED: &str = "Programmed";
    pub const PENDING: &str = "Pending";
    pub const CONFLICTED: &str = "Conflicted";
    pub const SHADOWED: &str = "Shadowed";
    pub const NO_READY_ENDPOINTS: &str = "NoReadyEndpoints";
    pub const ENDPOINTS_READY: &str = "EndpointsReady";
    pub const TOO_MANY_ENDPOINTS: &str = "TooManyEndpoints";
    pub const SYNCED: &str = "Synced";
    pub const UNATTACHED_PODS: &str = "UnattachedPods";
    pub const VPC_NOT_READY: &str = "VPCNotReady";
    pub const INVALID_CERTIFICATE: &str = "InvalidCertificate";
    pub const UNSUPPORTED_VERSION: &str = "UnsupportedVersion";
    /// TunnelBinding Ready: at least one connector is reachable / none is.
    pub const CONNECTOR_REACHABLE: &str = "ConnectorReachable";
    pub const NO_CONNECTOR_REACHABLE: &str = "NoConnectorReachable";
    /// A VPCRoute names VPCIngresses, but no listener of theirs accepts its hostnames.
    pub const NO_MATCHING_LISTENER: &str = "NoMatchingListenerHostname";
}

/// The three values of `metav1.ConditionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(b: bool) -> Self {
        if b { Self::True } else { Self::False }
    }
}

/// Operations on a status' `conditions` list.
pub trait Conditions {
    /// Insert or update the condition of `type_`, keeping `lastTransitionTime`
    /// unless the status changed. Returns true when anything changed.
    #[allow(clippy::too_many_arguments)]
    fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> bool;

    /// The condition of `type_`, if present.
    fn get(&self, type_: &str) -> Option<&Condition>;

    /// Whether the condition of `type_` is present with status True.
    fn is_true(&self, type_: &str) -> bool {
        self.get(type_).is_some_and(|c| c.status == ConditionStatus::True.as_str())
    }
}

impl Conditions for Vec<Condition> {
    fn set(
        &mut self,
        type_: &str,
        status: ConditionStatus,
        reason: &str,
        message: impl Into<String>,
        observed_generation: Option<i64>,
        now: Timestamp,
    ) -> bool {
        let message = message.into();
        let status = status.as_str();
        match self.iter_mut().find(|c| c.type_ == type_) {
            Some(c) => {
                let changed =
                    c.status != status || c.reason != reason || c.message != message || c.observed_generation != observed_generation;
                if !changed {
                    // The common case of a pass over a converged world: nothing to copy.
                    return false;
                }
                if c.status != status {
                    c.last_transition_time = Time(now);
                }
                c.status = status.to_owned();
                c.reason = reason.to_owned();
                c.message = message;
                c.observed_generation = observed_generation;
                true
            }
            None => {
                self.push(Condition {
                    type_: type_.to_owned(),
                    status: status.to_owned(),
                    reason: reason.to_owned(),
                    message,
                    observed_generation,
                    last_transition_time: Time(now),
                });
                true
            }
        }
    }

    fn get(&self, type_: &str) -> Option<&Condition> {
        self.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_second(secs).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_flips() {
        let mut conds: Vec<Condition> = Vec::new();
        assert!(conds.set("Ready", ConditionStatus::False, "NoReadyEndpoints", "none", Some(1), at(10)));
        assert!(!conds.set("Ready", ConditionStatus::False, "NoReadyEndpoints", "none", Some(1), at(20)));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
        assert!(conds.set("Ready", ConditionStatus::False, "NoReadyEndpoints", "still none", Some(2), at(30)));
        assert_eq!(conds[0].last_transition_time, Time(at(10)));
        assert!(conds.set("Ready", ConditionStatus::True, "EndpointsReady", "3 ready", Some(2), at(40)));
        assert_eq!(conds[0].last_transition_time, Time(at(40)));
        assert!(conds.is_true("Ready"));
        assert_eq!(conds.len(), 1);
    }
}
