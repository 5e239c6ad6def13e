//! Retry decisions: what may be retried, how long to wait, and whether the
//! route's budget still allows it.
//!
//! The budget is what keeps retries from multiplying load when an upstream
//! is in trouble: over a sliding one-second window, retries may be at most
//! `percent` of the requests seen, plus `min_per_second` so that a quiet
//! route can still retry at all (Linkerd's and Envoy's retry budgets).
//! Backoff is exponential with full jitter: attempt *n* waits a uniformly
//! random time in `[0, min(max, base·2ⁿ)]`, so retries of many clients
//! spread out instead of arriving in waves.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use rand::Rng;
use router_api::v1alpha1::{RetryOn, RetryPolicy};

/// Why an attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// The connection could not be made: nothing reached the upstream.
    Connect,
    /// The connection was not accepted within the connect timeout: nothing reached the upstream.
    ConnectTimeout,
    /// The TLS handshake failed: nothing reached the upstream either.
    Tls,
    /// The connection broke after the request was (maybe) sent.
    Reset,
    /// The per-try timeout passed.
    Timeout,
    /// The upstream answered with this status.
    Status(u16),
    /// The client's request body broke its framing (or the client went away) while
    /// it was being forwarded: the client's fault, never retried.
    ClientBody,
    /// The client's request body did not keep up with the body read timeout: the client's too.
    ClientBodyTimeout,
}

impl AttemptFailure {
    pub fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect-failure",
            Self::ConnectTimeout => "connect-timeout",
            Self::Tls => "tls-failure",
            Self::Reset => "reset",
            Self::Timeout => "timeout",
            Self::Status(_) => "status",
            Self::ClientBody => "client-body",
            Self::ClientBodyTimeout => "client-body-timeout",
        }
    }
}

/// Whether `failure` is retryable under `policy` for a request that is
/// `idempotent` (or whose route opts in to retrying non-idempotent ones).
/// A connect failure never reached the upstream, so it is safe for any method.
pub fn retryable(policy: &RetryPolicy, failure: AttemptFailure, idempotent: bool) -> bool {
    let safe = idempotent || policy.non_idempotent;
    match failure {
        AttemptFailure::Connect | AttemptFailure::ConnectTimeout | AttemptFailure::Tls => {
            policy.retry_on.contains(&RetryOn::ConnectFailure)
        }
        AttemptFailure::Reset => safe && policy.retry_on.contains(&RetryOn::Reset),
        AttemptFailure::Timeout => safe && policy.retry_on.contains(&RetryOn::Timeout),
        AttemptFailure::Status(s) => safe && policy.retry_on_status.contains(&i32::from(s)),
        AttemptFailure::ClientBody | AttemptFailure::ClientBodyTimeout => false,
    }
}

/// Methods RFC 9110 defines as idempotent.
pub fn is_idempotent(method: &http::Method) -> bool {
    matches!(
        *method,
        http::Method::GET | http::Method::HEAD | http::Method::OPTIONS | http::Method::TRACE | http::Method::PUT | http::Method::DELETE
    )
}

/// The wait before retry number `retry` (0 for the first retry).
pub fn backoff(base: Duration, max: Duration, retry: u32) -> Duration {
    let ceiling = base.saturating_mul(1u32.checked_shl(retry.min(20)).unwrap_or(u32::MAX)).min(max);
    if ceiling.is_zero() {
        return ceiling;
    }
    ceiling.mul_f64(rand::rng().random_range(0.0..=1.0))
}

#[derive(Debug)]
struct Window {
    start: Instant,
    requests: u64,
    retries: u64,
    prev_requests: u64,
    prev_retries: u64,
}

/// A route's retry budget.
#[derive(Debug)]
pub struct RetryBudget {
    percent: u64,
    min_per_second: u64,
    window: Mutex<Window>,
}

const WINDOW: Duration = Duration::from_secs(1);

impl RetryBudget {
    pub fn new(percent: u32, min_per_second: u32, now: Instant) -> Self {
        Self {
            percent: u64::from(percent.min(100)),
            min_per_second: u64::from(min_per_second),
            window: Mutex::new(Window { start: now, requests: 0, retries: 0, prev_requests: 0, prev_retries: 0 }),
        }
    }

    fn roll(w: &mut Window, now: Instant) {
        let elapsed = now.saturating_duration_since(w.start);
        if elapsed >= WINDOW * 2 {
            *w = Window { start: now, requests: 0, retries: 0, prev_requests: 0, prev_retries: 0 };
        } else if elapsed >= WINDOW {
            w.prev_requests = w.requests;
            w.prev_retries = w.retries;
            w.requests = 0;
            w.retries = 0;
            w.start += WINDOW;
        }
    }

    /// Counts a request (its first attempt).
    pub fn record_request(&self, now: Instant) {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        Self::roll(&mut w, now);
        w.requests += 1;
    }

    /// Takes one retry from the budget, or says there is none left.
    pub fn try_retry(&self, now: Instant) -> bool {
        let mut w = self.window.lock().unwrap_or_else(|p| p.into_inner());
        Self::roll(&mut w, now);
        // The previous window counts in proportion to how much of it still lies within the last second.
        let weight = 1.0 - now.saturating_duration_since(w.start).as_secs_f64().min(1.0);
        let requests = w.requests as f64 + w.prev_requests as f64 * weight;
        let retries = w.retries as f64 + w.prev_retries as f64 * weight;
        let allowed = self.min_per_second as f64 + requests * self.percent as f64 / 100.0;
        if retries + 1.0 <= allowed {
            w.retries += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retries: 3,
            retry_on_status: vec![502, 503],
            retry_on: vec![RetryOn::ConnectFailure, RetryOn::Reset, RetryOn::Timeout],
            ..Default::default()
        }
    }

    #[test]
    fn non_idempotent_requests_retry_only_when_nothing_was_sent_or_the_route_opts_in() {
        let p = policy();
        assert!(retryable(&p, AttemptFailure::Connect, false));
        assert!(!retryable(&p, AttemptFailure::Reset, false));
        assert!(!retryable(&p, AttemptFailure::Status(503), false));
        assert!(retryable(&p, AttemptFailure::Status(503), true));
        assert!(!retryable(&p, AttemptFailure::Status(500), true), "500 is not listed");
        let opted = RetryPolicy { non_idempotent: true, ..policy() };
        assert!(retryable(&opted, AttemptFailure::Reset, false));
        assert!(is_idempotent(&http::Method::PUT) && !is_idempotent(&http::Method::POST));
    }

    #[test]
    fn backoff_grows_exponentially_within_the_cap() {
        let (base, max) = (Duration::from_millis(25), Duration::from_millis(250));
        for _ in 0..200 {
            assert!(backoff(base, max, 0) <= base);
            assert!(backoff(base, max, 2) <= Duration::from_millis(100));
            assert!(backoff(base, max, 10) <= max);
        }
        let avg: f64 = (0..2000).map(|_| backoff(base, max, 3).as_secs_f64()).sum::<f64>() / 2000.0;
        assert!((0.08..0.12).contains(&avg), "full jitter averages half the ceiling: {avg}");
    }

    #[test]
    fn budget_allows_a_share_of_requests_plus_a_floor() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(20, 2, t0);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        let granted = (0..100).filter(|_| budget.try_retry(t0)).count();
        assert_eq!(granted, 22, "20% of 100 requests plus 2 per second");

        // Two seconds later the window is empty again: only the floor remains.
        let t2 = t0 + Duration::from_secs(2);
        let granted = (0..10).filter(|_| budget.try_retry(t2)).count();
        assert_eq!(granted, 2);
    }

    #[test]
    fn budget_slides_instead_of_resetting_at_window_edges() {
        let t0 = Instant::now();
        let budget = RetryBudget::new(50, 0, t0);
        for _ in 0..100 {
            budget.record_request(t0);
        }
        assert_eq!((0..100).filter(|_| budget.try_retry(t0)).count(), 50);
        // Just after the window turns, the spent retries still count almost fully.
        let t1 = t0 + Duration::from_millis(1010);
        assert_eq!((0..100).filter(|_| budget.try_retry(t1)).count(), 0);
    }
}
