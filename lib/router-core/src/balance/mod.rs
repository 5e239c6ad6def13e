//! Choosing where a request goes: first a destination by weight
//! ([`WeightedSplit`]), then an endpoint of that destination's service by the
//! route's strategy ([`EndpointPicker`]).
//!
//! Endpoints that health checking marks unhealthy are skipped. If every
//! endpoint is unhealthy the picker enters "panic mode" and picks among all of
//! them anyway: a health checker that is wrong about everything must not turn
//! into a total outage (Envoy's panic threshold, at 0%).
//!
//! With [`Levels`] (`trafficDistribution: PreferClose`), a level is drawn
//! first by the shares of [`locality`], then the strategy picks within it:
//! round-robin, least-request and consistent hashing all work inside a level,
//! and a hash keeps its affinity while its level stays healthy.

mod locality;
mod maglev;
mod split;

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    net::IpAddr,
    sync::{
        Arc,
        atomic::{AtomicU32, AtomicUsize, Ordering},
    },
    time::Instant,
};

pub use locality::{Level, Levels, OVERPROVISIONING, shares};
pub use maglev::Maglev;
use rand::Rng;
use router_api::v1alpha1::LoadBalancing;
pub use split::WeightedSplit;

use crate::{
    EndpointState,
    breaker::{BreakerConfig, BreakerStatus, MAX_EJECTED_PERCENT},
};

/// What a strategy may look at besides the endpoints.
#[derive(Debug, Clone, Copy, Default)]
pub struct PickContext {
    pub source_ip: Option<IpAddr>,
    /// Hash of the consistent-hash key (header, cookie or source IP), if any.
    pub hash_key: Option<u64>,
}

/// Hashes a key for consistent hashing (header or cookie bytes, or an IP); stable within one process.
pub fn hash_key<K: Hash + ?Sized>(key: &K) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// A destination's circuit breaking settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct DestinationLimits {
    pub breaker: Option<BreakerConfig>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    pub max_connections: Option<u32>,
    /// Only with max_connections: how many requests may wait for one.
    pub max_pending: Option<u32>,
}

/// The destination is at maxConnections with maxPendingRequests already waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingOverflow;

fn admit(counter: &Arc<AtomicU32>, max: Option<u32>) -> Option<ActiveRequest> {
    let now = counter.fetch_add(1, Ordering::AcqRel) + 1;
    let guard = ActiveRequest(counter.clone());
    match max {
        Some(max) if now > max => None,
        _ => Some(guard),
    }
}

/// A destination's concurrency counts: requests, retries, connection slots
/// and requests waiting for one. Interned across snapshots by
/// [`crate::EndpointStore::destination`], so a reload does not start them
/// afresh while requests admitted under the previous snapshot still run.
#[derive(Debug)]
pub struct DestinationCounters {
    active: Arc<AtomicU32>,
    retrying: Arc<AtomicU32>,
    pending: Arc<AtomicU32>,
    connections: Option<Arc<tokio::sync::Semaphore>>,
}

impl DestinationCounters {
    /// Counters for a destination with `max_connections` slots (None: no connection limit).
    pub fn new(max_connections: Option<u32>) -> Self {
        Self {
            active: Arc::new(AtomicU32::new(0)),
            retrying: Arc::new(AtomicU32::new(0)),
            pending: Arc::new(AtomicU32::new(0)),
            connections: max_connections.map(|n| Arc::new(tokio::sync::Semaphore::new(n as usize))),
        }
    }
}

/// Endpoint selection for one destination of one route.
#[derive(Debug)]
pub struct EndpointPicker {
    strategy: LoadBalancing,
    endpoints: Vec<Arc<EndpointState>>,
    next: AtomicUsize,
    maglev: Option<Maglev>,
    breaker: Option<BreakerConfig>,
    max_requests: Option<u32>,
    max_retries: Option<u32>,
    max_pending: Option<u32>,
    counters: Arc<DestinationCounters>,
    /// The endpoints by distance from the gateway, when the destination prefers close ones.
    levels: Option<Levels>,
}

/// The endpoints a strategy may choose among: all, or one level's indexes (ascending).
#[derive(Debug, Clone, Copy)]
enum Among<'a> {
    All(usize),
    Only(&'a [usize]),
}

impl Among<'_> {
    fn len(self) -> usize {
        match self {
            Self::All(n) => n,
            Self::Only(idx) => idx.len(),
        }
    }

    /// The endpoint index of the `i`-th candidate.
    fn at(self, i: usize) -> usize {
        match self {
            Self::All(_) => i,
            Self::Only(idx) => idx[i],
        }
    }

    fn contains(self, endpoint: usize) -> bool {
        match self {
            Self::All(n) => endpoint < n,
            Self::Only(idx) => idx.binary_search(&endpoint).is_ok(),
        }
    }
}

/// Counts a request (or a retry) against a destination limit until dropped.
#[derive(Debug)]
pub struct ActiveRequest(Arc<AtomicU32>);

impl Drop for ActiveRequest {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl EndpointPicker {
    pub fn new(strategy: LoadBalancing, endpoints: Vec<Arc<EndpointState>>) -> Self {
        let maglev = matches!(strategy, LoadBalancing::ConsistentHash | LoadBalancing::SourceIpHash)
            .then(|| Maglev::new(&endpoints.iter().map(|e| e.addr.to_string()).collect::<Vec<_>>()));
        Self {
            strategy,
            endpoints,
            next: AtomicUsize::new(0),
            maglev,
            breaker: None,
            max_requests: None,
            max_retries: None,
            max_pending: None,
            counters: Arc::new(DestinationCounters::new(None)),
            levels: None,
        }
    }

    /// Prefers the nearest endpoints, level by level (see [`locality`]).
    pub fn with_levels(mut self, levels: Levels) -> Self {
        self.levels = Some(levels);
        self
    }

    pub fn levels(&self) -> Option<&Levels> {
        self.levels.as_ref()
    }

    /// Circuit breaking on this destination's endpoints, and its concurrent request and retry limits,
    /// counted afresh.
    pub fn with_limits(self, limits: DestinationLimits) -> Self {
        self.with_limits_counted_in(limits, Arc::new(DestinationCounters::new(limits.max_connections)))
    }

    /// As [`Self::with_limits`], counted in `counters` (made for `limits.max_connections`) shared with other snapshots.
    pub fn with_limits_counted_in(mut self, limits: DestinationLimits, counters: Arc<DestinationCounters>) -> Self {
        self.breaker = limits.breaker;
        self.max_requests = limits.max_requests;
        self.max_retries = limits.max_retries;
        self.max_pending = limits.max_pending;
        self.counters = counters;
        self
    }

    /// Whether the destination has `maxConnections`, so requests need [`Self::connection_slot`].
    pub fn limits_connections(&self) -> bool {
        self.counters.connections.is_some()
    }

    /// One of the destination's `maxConnections` upstream connections for a
    /// request's exchange (an HTTP/1.1 connection carries one exchange at a
    /// time; on HTTP/2 this caps concurrent streams). When all are taken the
    /// request waits, unless `maxPendingRequests` are waiting already. Ok(None):
    /// the destination has no connection limit.
    pub async fn connection_slot(&self) -> Result<Option<tokio::sync::OwnedSemaphorePermit>, PendingOverflow> {
        let Some(connections) = &self.counters.connections else { return Ok(None) };
        if let Ok(permit) = connections.clone().try_acquire_owned() {
            return Ok(Some(permit));
        }
        let waiting = admit(&self.counters.pending, self.max_pending).ok_or(PendingOverflow)?;
        let permit = connections.clone().acquire_owned().await.expect("the semaphore is never closed");
        drop(waiting);
        Ok(Some(permit))
    }

    pub fn breaker(&self) -> Option<&BreakerConfig> {
        self.breaker.as_ref()
    }

    /// Admits one more request under `maxRequests`, or None when the destination is full.
    pub fn start_request(&self) -> Option<ActiveRequest> {
        admit(&self.counters.active, self.max_requests)
    }

    /// Admits one more retry under `maxRetries`, or None when that many retries are in flight.
    pub fn start_retry(&self) -> Option<ActiveRequest> {
        admit(&self.counters.retrying, self.max_retries)
    }

    /// Whether ejecting one more endpoint keeps the ejected share within the cap.
    pub fn may_eject(&self, now: Instant) -> bool {
        let ejected = self.endpoints.iter().filter(|e| e.breaker.status(now) == BreakerStatus::Open).count();
        (ejected + 1) * 100 <= self.endpoints.len() * MAX_EJECTED_PERCENT
    }

    /// The ready endpoints this picker chooses among.
    pub fn endpoints(&self) -> &[Arc<EndpointState>] {
        &self.endpoints
    }

    /// Picks an endpoint, or None when the service has no ready endpoint.
    pub fn pick(&self, ctx: &PickContext) -> Option<&Arc<EndpointState>> {
        self.pick_located(ctx).map(|(e, _)| e)
    }

    /// Picks an endpoint and says from which level, when the destination prefers close endpoints.
    pub fn pick_located(&self, ctx: &PickContext) -> Option<(&Arc<EndpointState>, Option<Level>)> {
        let eps = &self.endpoints;
        if eps.is_empty() {
            return None;
        }
        // Only routes with a circuit breaker pay for reading the clock.
        let now = self.breaker.is_some().then(Instant::now);
        let admits = |e: &EndpointState| self.breaker.as_ref().zip(now).is_none_or(|(cfg, now)| e.breaker.admits(now, e.in_flight(), cfg));
        let Some(levels) = &self.levels else {
            let panic_mode = !eps.iter().any(|e| e.is_healthy());
            return self.choose(Among::All(eps.len()), ctx, |e| (panic_mode || e.is_healthy()) && admits(e)).map(|e| (e, None));
        };
        let ejected = |e: &EndpointState| now.is_some_and(|now| e.breaker.status(now) == BreakerStatus::Open);
        let counts = Level::ALL.map(|l| {
            let members = levels.members(l);
            (members.iter().filter(|&&i| eps[i].is_healthy() && !ejected(&eps[i])).count(), members.len())
        });
        let Some(shares) = shares(&counts) else {
            // Panic mode: the nearest level that has endpoints, health ignored.
            let nearest = Level::ALL.into_iter().find(|&l| !levels.members(l).is_empty())?;
            return self.choose(Among::Only(levels.members(nearest)), ctx, admits).map(|e| (e, Some(nearest)));
        };
        let draw: f64 = rand::rng().random();
        let mut cumulative = 0.0;
        let drawn = Level::ALL.into_iter().zip(shares).find(|&(_, share)| {
            cumulative += share;
            share > 0.0 && draw < cumulative
        });
        // The drawn level first; should its breakers refuse everything, the others by distance.
        let order = drawn.map(|(l, _)| l).into_iter().chain(Level::ALL.into_iter().filter(|l| Some(*l) != drawn.map(|(l, _)| l)));
        for level in order {
            let among = Among::Only(levels.members(level));
            if let Some(e) = self.choose(among, ctx, |e| e.is_healthy() && admits(e)) {
                return Some((e, Some(level)));
            }
        }
        None
    }

    /// The strategy's choice among `among`, of the endpoints `usable` allows.
    fn choose(&self, among: Among<'_>, ctx: &PickContext, usable: impl Fn(&EndpointState) -> bool) -> Option<&Arc<EndpointState>> {
        let eps = &self.endpoints;
        let n = among.len();
        if n == 0 {
            return None;
        }
        let at = |i: usize| &eps[among.at(i)];
        match self.strategy {
            LoadBalancing::RoundRobin => {
                let start = self.next.fetch_add(1, Ordering::Relaxed);
                (0..n).map(|i| at((start + i) % n)).find(|e| usable(e))
            }
            LoadBalancing::Random => {
                let start = rand::rng().random_range(0..n);
                (0..n).map(|i| at((start + i) % n)).find(|e| usable(e))
            }
            LoadBalancing::LeastConnections => (0..n).map(at).filter(|e| usable(e)).min_by_key(|e| e.in_flight()),
            LoadBalancing::LeastRequest => {
                // Power of two choices: two distinct random endpoints, the less loaded wins.
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let b = if n > 1 { (a + rng.random_range(1..n)) % n } else { a };
                let (a, b) = (at(a), at(b));
                match (usable(a), usable(b)) {
                    (true, true) => Some(if b.in_flight() < a.in_flight() { b } else { a }),
                    (true, false) => Some(a),
                    (false, true) => Some(b),
                    (false, false) => (0..n).map(at).filter(|e| usable(e)).min_by_key(|e| e.in_flight()),
                }
            }
            LoadBalancing::SourceIpHash | LoadBalancing::ConsistentHash => {
                let key = match self.strategy {
                    LoadBalancing::SourceIpHash => ctx.source_ip.map(|ip| hash_key(&ip)),
                    _ => ctx.hash_key.or_else(|| ctx.source_ip.map(|ip| hash_key(&ip))),
                };
                let table = self.maglev.as_ref().expect("built for hashing strategies");
                match key {
                    Some(key) => table.lookup_with(key, |i| among.contains(i) && usable(&eps[i])).map(|i| &eps[i]),
                    None => (0..n).map(at).find(|e| usable(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, net::SocketAddr};

    use super::*;

    fn endpoints(n: usize) -> Vec<Arc<EndpointState>> {
        (0..n).map(|i| Arc::new(EndpointState::new(SocketAddr::from(([127, 0, 0, 1], 8000 + i as u16))))).collect()
    }

    fn counts(picker: &EndpointPicker, n: usize, ctx: impl Fn(usize) -> PickContext) -> HashMap<u16, usize> {
        let mut c = HashMap::new();
        for i in 0..n {
            *c.entry(picker.pick(&ctx(i)).unwrap().addr.port()).or_default() += 1;
        }
        c
    }

    #[test]
    fn request_and_retry_limits_admit_up_to_the_cap_and_free_on_drop() {
        let p = EndpointPicker::new(LoadBalancing::RoundRobin, endpoints(2)).with_limits(DestinationLimits {
            max_requests: Some(2),
            max_retries: Some(1),
            ..Default::default()
        });
        let (a, b) = (p.start_request().unwrap(), p.start_request().unwrap());
        assert!(p.start_request().is_none(), "a third request exceeds maxRequests");
        drop(a);
        assert!(p.start_request().is_some(), "a finished request frees its place");
        let retry = p.start_retry().unwrap();
        assert!(p.start_retry().is_none(), "one retry in flight at a time");
        drop((retry, b));
        assert!(p.start_retry().is_some());
        let unlimited = EndpointPicker::new(LoadBalancing::RoundRobin, endpoints(1));
        let held: Vec<_> = (0..100).map(|_| unlimited.start_retry().unwrap()).collect();
        assert_eq!(held.len(), 100, "no limit without maxRetries");
    }

    #[tokio::test]
    async fn connection_slots_queue_up_to_max_pending_then_overflow() {
        let p = EndpointPicker::new(LoadBalancing::RoundRobin, endpoints(1)).with_limits(DestinationLimits {
            max_connections: Some(1),
            max_pending: Some(1),
            ..Default::default()
        });
        let first = p.connection_slot().await.unwrap().expect("a slot");
        let mut waiting = Box::pin(p.connection_slot());
        assert!(futures_poll(&mut waiting).is_none(), "the second waits");
        assert_eq!(p.connection_slot().await.unwrap_err(), PendingOverflow, "a third finds the queue full");
        drop(first);
        assert!(waiting.await.unwrap().is_some(), "the waiter gets the freed slot");
        let unlimited = EndpointPicker::new(LoadBalancing::RoundRobin, endpoints(1));
        assert!(unlimited.connection_slot().await.unwrap().is_none(), "no limit, no slot");
    }

    /// Polls a future once.
    fn futures_poll<F: std::future::Future + Unpin>(f: &mut F) -> Option<F::Output> {
        let waker = std::task::Waker::noop();
        match std::pin::Pin::new(f).poll(&mut std::task::Context::from_waker(waker)) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        }
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let p = EndpointPicker::new(LoadBalancing::RoundRobin, endpoints(3));
        let order: Vec<u16> = (0..6).map(|_| p.pick(&PickContext::default()).unwrap().addr.port()).collect();
        assert_eq!(order, [8000, 8001, 8002, 8000, 8001, 8002]);
    }

    #[test]
    fn unhealthy_endpoints_are_skipped_until_all_are_unhealthy() {
        let eps = endpoints(3);
        eps[1].set_health(crate::health::HealthStatus::Unhealthy);
        let p = EndpointPicker::new(LoadBalancing::RoundRobin, eps.clone());
        let c = counts(&p, 100, |_| PickContext::default());
        assert!(!c.contains_key(&8001));
        for e in &eps {
            e.set_health(crate::health::HealthStatus::Unhealthy);
        }
        assert!(p.pick(&PickContext::default()).is_some(), "panic mode still picks");
    }

    #[test]
    fn least_connections_picks_the_idlest() {
        let eps = endpoints(3);
        let _a = eps[0].start_request();
        let _b = eps[2].start_request();
        let p = EndpointPicker::new(LoadBalancing::LeastConnections, eps);
        assert_eq!(p.pick(&PickContext::default()).unwrap().addr.port(), 8001);
    }

    #[test]
    fn least_request_avoids_a_loaded_endpoint() {
        let eps = endpoints(2);
        let _busy: Vec<_> = (0..10).map(|_| eps[0].start_request()).collect();
        let p = EndpointPicker::new(LoadBalancing::LeastRequest, eps);
        let c = counts(&p, 200, |_| PickContext::default());
        // With two endpoints P2C compares both whenever it draws both: the busy one never wins.
        assert_eq!(c.get(&8000), None);
    }

    #[test]
    fn random_spreads_load() {
        let p = EndpointPicker::new(LoadBalancing::Random, endpoints(4));
        let c = counts(&p, 4000, |_| PickContext::default());
        assert!(c.values().all(|&n| (800..1200).contains(&n)), "{c:?}");
    }

    #[test]
    fn consistent_hash_is_sticky_per_key() {
        let p = EndpointPicker::new(LoadBalancing::ConsistentHash, endpoints(5));
        for key in 0..100u64 {
            let ctx = PickContext { hash_key: Some(hash_key(&key.to_be_bytes())), ..Default::default() };
            let first = p.pick(&ctx).unwrap().addr;
            assert!((0..5).all(|_| p.pick(&ctx).unwrap().addr == first));
        }
    }

    #[test]
    fn source_ip_hash_is_sticky_per_client() {
        let p = EndpointPicker::new(LoadBalancing::SourceIpHash, endpoints(5));
        let ctx = PickContext { source_ip: Some("10.9.8.7".parse().unwrap()), ..Default::default() };
        let first = p.pick(&ctx).unwrap().addr;
        assert!((0..10).all(|_| p.pick(&ctx).unwrap().addr == first));
    }

    #[test]
    fn no_endpoints_means_none() {
        let p = EndpointPicker::new(LoadBalancing::RoundRobin, Vec::new());
        assert!(p.pick(&PickContext::default()).is_none());
    }

    /// Ten endpoints around a gateway in region r, zone a: four in zone a (ports 8000–8003), four in
    /// zone b of the same region (8004–8007), two in another region (8008–8009).
    fn ten_around_zone_a(strategy: LoadBalancing) -> (Vec<Arc<EndpointState>>, EndpointPicker) {
        let eps = endpoints(10);
        let at = |region: &str, zone: &str| router_api::datum::Locality {
            region: Some(region.into()),
            zone: Some(zone.into()),
            city_code: None,
        };
        let places: Vec<_> = (0..10)
            .map(|i| {
                if i < 4 {
                    at("r", "a")
                } else if i < 8 {
                    at("r", "b")
                } else {
                    at("x", "c")
                }
            })
            .collect();
        let levels = Levels::new(&at("r", "a"), &places);
        (eps.clone(), EndpointPicker::new(strategy, eps).with_levels(levels))
    }

    #[test]
    fn prefer_close_keeps_traffic_in_the_zone_and_spills_by_the_rule() {
        let (eps, p) = ten_around_zone_a(LoadBalancing::RoundRobin);
        let c = counts(&p, 1000, |_| PickContext::default());
        assert_eq!(c.keys().filter(|&&port| port >= 8004).count(), 0, "all healthy: zone a only: {c:?}");
        assert_eq!(p.pick_located(&PickContext::default()).unwrap().1, Some(Level::Zone));
        // Two of zone a's four down: 2/4 × 1.4 = 70 % stays, 30 % goes to the region level.
        eps[0].set_health(crate::health::HealthStatus::Unhealthy);
        eps[1].set_health(crate::health::HealthStatus::Unhealthy);
        let c = counts(&p, 4000, |_| PickContext::default());
        let zone: usize = (8002..8004).map(|port| c.get(&port).copied().unwrap_or(0)).sum();
        let region: usize = (8004..8008).map(|port| c.get(&port).copied().unwrap_or(0)).sum();
        assert!((2650..2950).contains(&zone), "≈ 70 % in zone a: {c:?}");
        assert_eq!(zone + region, 4000, "nothing beyond the region: {c:?}");
        assert!(!c.contains_key(&8000) && !c.contains_key(&8001), "unhealthy endpoints get nothing");
        // Everything down: panic mode stays in the nearest level, health ignored.
        eps.iter().for_each(|e| e.set_health(crate::health::HealthStatus::Unhealthy));
        let c = counts(&p, 100, |_| PickContext::default());
        assert!(c.keys().all(|&port| port < 8004), "panic mode picks in zone a: {c:?}");
        assert_eq!(p.pick_located(&PickContext::default()).unwrap().1, Some(Level::Zone));
    }

    #[test]
    fn an_ejected_endpoint_counts_as_unhealthy_for_its_level() {
        let (eps, p) = ten_around_zone_a(LoadBalancing::RoundRobin);
        let p = p.with_limits(DestinationLimits { breaker: Some(BreakerConfig::default()), ..Default::default() });
        let now = Instant::now();
        for e in &eps[..3] {
            for _ in 0..BreakerConfig::default().consecutive_failures {
                e.breaker.record(false, now, &BreakerConfig::default(), true);
            }
        }
        let c = counts(&p, 2000, |_| PickContext::default());
        let zone = c.get(&8003).copied().unwrap_or(0);
        // One of four left: 1/4 × 1.4 = 35 %.
        assert!((550..850).contains(&zone), "≈ 35 % to the one zone-a endpoint left: {c:?}");
    }

    #[test]
    fn consistent_hash_keeps_affinity_inside_the_level() {
        let (eps, p) = ten_around_zone_a(LoadBalancing::ConsistentHash);
        let ctx = |key: u64| PickContext { hash_key: Some(hash_key(&key.to_be_bytes())), ..Default::default() };
        let before: Vec<_> = (0..200u64).map(|k| p.pick(&ctx(k)).unwrap().addr).collect();
        assert!(before.iter().all(|a| a.port() < 8004), "every key lands in zone a");
        // One zone-a endpoint goes: 3/4 × 1.4 ≥ 1, the level keeps all its traffic, and only its keys move.
        eps[0].set_health(crate::health::HealthStatus::Unhealthy);
        for (k, was) in before.iter().enumerate() {
            let now = p.pick(&ctx(k as u64)).unwrap().addr;
            assert!(now.port() < 8004, "key {k} stays in the zone");
            if was.port() != 8000 {
                assert_eq!(now, *was, "key {k} keeps its endpoint");
            }
        }
    }
}
