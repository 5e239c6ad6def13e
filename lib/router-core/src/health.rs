//! The health state of one endpoint as active checks see it.
//!
//! An endpoint starts **Unknown** and is eligible for traffic: a gateway that
//! just started (or just learnt of an endpoint) serves at once instead of
//! refusing everything until the first round of checks. It becomes
//! **Unhealthy** after `unhealthy_threshold` consecutive failed checks and
//! **Healthy** again after `healthy_threshold` consecutive passes; from
//! Unknown, the first threshold reached decides. Only Unhealthy endpoints are
//! skipped by the balancers (and even they are used when every endpoint of a
//! service is unhealthy: see `balance`'s panic mode).

/// What the checks currently say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthStatus {
    Unknown,
    Healthy,
    Unhealthy,
}

impl HealthStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Healthy => "healthy",
            Self::Unhealthy => "unhealthy",
        }
    }

    /// Whether balancers may pick the endpoint.
    pub fn eligible(self) -> bool {
        self != Self::Unhealthy
    }
}

/// Consecutive results and the status they lead to.
#[derive(Debug, Clone, Copy)]
pub struct HealthState {
    status: HealthStatus,
    passes: u32,
    failures: u32,
    healthy_threshold: u32,
    unhealthy_threshold: u32,
}

impl HealthState {
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> Self {
        Self {
            status: HealthStatus::Unknown,
            passes: 0,
            failures: 0,
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
        }
    }

    pub fn status(&self) -> HealthStatus {
        self.status
    }

    /// Records one check result; returns the new status when it changed.
    pub fn observe(&mut self, passed: bool) -> Option<HealthStatus> {
        if passed {
            self.passes += 1;
            self.failures = 0;
        } else {
            self.failures += 1;
            self.passes = 0;
        }
        let next = if self.failures >= self.unhealthy_threshold {
            HealthStatus::Unhealthy
        } else if self.passes >= self.healthy_threshold {
            HealthStatus::Healthy
        } else {
            self.status
        };
        (next != self.status).then(|| {
            self.status = next;
            next
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_is_eligible_until_a_threshold_decides() {
        let mut s = HealthState::new(2, 3);
        assert_eq!(s.status(), HealthStatus::Unknown);
        assert!(s.status().eligible());
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), Some(HealthStatus::Unhealthy));
        assert!(!s.status().eligible());
    }

    #[test]
    fn recovery_needs_consecutive_passes_and_a_failure_resets_them() {
        let mut s = HealthState::new(2, 1);
        assert_eq!(s.observe(false), Some(HealthStatus::Unhealthy));
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(false), None, "still unhealthy; the pass streak is broken");
        assert_eq!(s.observe(true), None);
        assert_eq!(s.observe(true), Some(HealthStatus::Healthy));
        assert_eq!(s.observe(true), None);
    }

    #[test]
    fn a_healthy_endpoint_tolerates_fewer_failures_than_the_threshold() {
        let mut s = HealthState::new(1, 3);
        assert_eq!(s.observe(true), Some(HealthStatus::Healthy));
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(false), None);
        assert_eq!(s.observe(true), None, "the failure streak is broken");
        assert_eq!(s.status(), HealthStatus::Healthy);
    }
}
