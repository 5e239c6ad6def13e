//! Per-endpoint circuit breaking (passive outlier detection).
//!
//! Closed → **open** after `consecutive_failures` failed requests in a row
//! (5xx, connect failure, reset or timeout): the endpoint is ejected for
//! `open_duration × 2^(ejections so far)`, capped at ten times the base, so
//! an endpoint that keeps failing stays out longer each time. When the time
//! is up it is **half-open**: at most `half_open_requests` requests at once
//! probe it; one success closes the breaker (and forgets past ejections), a
//! failure opens it again for longer. Ejection never takes the share of
//! ejected endpoints in a pool above `MAX_EJECTED_PERCENT`: outlier
//! detection alone must not empty a pool.
//!
//! Time is passed in (`Instant`), so the state machine is tested without
//! sleeping.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

/// At most this share of a pool is ejected at once.
pub const MAX_EJECTED_PERCENT: usize = 50;

/// A route's breaker settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    pub consecutive_failures: u32,
    pub open_duration: Duration,
    pub half_open_requests: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { consecutive_failures: 5, open_duration: Duration::from_secs(30), half_open_requests: 1 }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerStatus {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half-open",
        }
    }
}

#[derive(Debug)]
struct State {
    failures: u32,
    ejections: u32,
    open_until: Option<Instant>,
    /// Opened at least once and not closed since.
    tripped: bool,
}

/// The breaker of one endpoint.
#[derive(Debug)]
pub struct Breaker {
    state: Mutex<State>,
}

impl Default for Breaker {
    fn default() -> Self {
        Self { state: Mutex::new(State { failures: 0, ejections: 0, open_until: None, tripped: false }) }
    }
}

impl Breaker {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn status(&self, now: Instant) -> BreakerStatus {
        let s = self.lock();
        match s.open_until {
            Some(until) if now < until => BreakerStatus::Open,
            _ if s.tripped => BreakerStatus::HalfOpen,
            _ => BreakerStatus::Closed,
        }
    }

    /// Whether a request may go to the endpoint now, given how many are already in flight to it.
    pub fn admits(&self, now: Instant, in_flight: u32, cfg: &BreakerConfig) -> bool {
        match self.status(now) {
            BreakerStatus::Closed => true,
            BreakerStatus::Open => false,
            BreakerStatus::HalfOpen => in_flight < cfg.half_open_requests.max(1),
        }
    }

    /// Records a request's outcome. `may_eject` says whether the pool can
    /// afford one more ejected endpoint. Returns the new status on a change.
    pub fn record(&self, success: bool, now: Instant, cfg: &BreakerConfig, may_eject: bool) -> Option<BreakerStatus> {
        let before = self.status(now);
        let mut s = self.lock();
        if success {
            s.failures = 0;
            if s.tripped && before == BreakerStatus::HalfOpen {
                s.tripped = false;
                s.ejections = 0;
                s.open_until = None;
                return Some(BreakerStatus::Closed);
            }
            return None;
        }
        s.failures += 1;
        let trip = match before {
            BreakerStatus::HalfOpen => true,
            BreakerStatus::Closed => s.failures >= cfg.consecutive_failures.max(1),
            BreakerStatus::Open => false,
        };
        if !trip || !may_eject {
            return None;
        }
        let factor = 1u32.checked_shl(s.ejections.min(16)).unwrap_or(u32::MAX);
        let duration = cfg.open_duration.saturating_mul(factor).min(cfg.open_duration.saturating_mul(10));
        s.open_until = Some(now + duration);
        s.ejections += 1;
        s.failures = 0;
        s.tripped = true;
        Some(BreakerStatus::Open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> BreakerConfig {
        BreakerConfig { consecutive_failures: 3, open_duration: Duration::from_secs(10), half_open_requests: 1 }
    }

    #[test]
    fn opens_after_consecutive_failures_and_a_success_resets_the_count() {
        let (b, t0) = (Breaker::default(), Instant::now());
        assert_eq!(b.record(false, t0, &cfg(), true), None);
        assert_eq!(b.record(false, t0, &cfg(), true), None);
        assert_eq!(b.record(true, t0, &cfg(), true), None, "the streak is broken");
        assert_eq!(b.record(false, t0, &cfg(), true), None);
        assert_eq!(b.record(false, t0, &cfg(), true), None);
        assert_eq!(b.record(false, t0, &cfg(), true), Some(BreakerStatus::Open));
        assert!(!b.admits(t0 + Duration::from_secs(9), 0, &cfg()));
    }

    #[test]
    fn half_open_admits_limited_probes_and_closes_on_success() {
        let (b, t0) = (Breaker::default(), Instant::now());
        for _ in 0..3 {
            b.record(false, t0, &cfg(), true);
        }
        let later = t0 + Duration::from_secs(10);
        assert_eq!(b.status(later), BreakerStatus::HalfOpen);
        assert!(b.admits(later, 0, &cfg()));
        assert!(!b.admits(later, 1, &cfg()), "one probe at a time");
        assert_eq!(b.record(true, later, &cfg(), true), Some(BreakerStatus::Closed));
        assert_eq!(b.status(later), BreakerStatus::Closed);
    }

    #[test]
    fn each_ejection_lasts_longer_up_to_ten_times_the_base() {
        let (b, mut now) = (Breaker::default(), Instant::now());
        for _ in 0..3 {
            b.record(false, now, &cfg(), true);
        }
        let mut durations = Vec::new();
        for _ in 0..6 {
            // Find when it half-opens, then fail the probe.
            let mut waited = Duration::ZERO;
            while b.status(now + waited) == BreakerStatus::Open {
                waited += Duration::from_secs(1);
            }
            durations.push(waited.as_secs());
            now += waited;
            assert_eq!(b.record(false, now, &cfg(), true), Some(BreakerStatus::Open), "a failed probe reopens at once");
        }
        assert_eq!(durations, [10, 20, 40, 80, 100, 100]);
    }

    #[test]
    fn the_pool_share_cap_keeps_the_breaker_closed() {
        let (b, t0) = (Breaker::default(), Instant::now());
        for _ in 0..10 {
            assert_eq!(b.record(false, t0, &cfg(), false), None);
        }
        assert_eq!(b.status(t0), BreakerStatus::Closed);
    }
}
