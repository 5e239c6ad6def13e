//! Endpoints as the data plane sees them: an address plus live counters that
//! the balancers read. Endpoints are interned by address in an
//! [`EndpointStore`] so that a new snapshot reuses the state (in-flight
//! counts, health) of endpoints that were already known — a reload never
//! makes a busy endpoint look idle.

use crate::{balance::DestinationCounters, breaker::Breaker, health::HealthStatus};

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU8, AtomicU32, Ordering},
    },
};

/// Live state of one upstream endpoint, shared by every snapshot that uses it.
#[derive(Debug)]
pub struct EndpointState {
    pub addr: SocketAddr,
    /// `addr` as a URI authority, built once: every upstream request needs it.
    pub authority: http::uri::Authority,
    in_flight: AtomicU32,
    health: AtomicU8,
    /// Passive outlier detection, fed by the routes that have a circuitBreaker.
    pub breaker: Breaker,
}

impl EndpointState {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            authority: http::uri::Authority::try_from(addr.to_string()).expect("a socket address is a valid authority"),
            in_flight: AtomicU32::new(0),
            health: AtomicU8::new(HealthStatus::Unknown as u8),
            breaker: Breaker::default(),
        }
    }

    /// Requests currently outstanding to this endpoint.
    pub fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a request as outstanding until the guard drops.
    pub fn start_request(self: &Arc<Self>) -> InFlightGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlightGuard(self.clone())
    }

    /// Whether health checking currently allows traffic (Unknown and Healthy do).
    pub fn is_healthy(&self) -> bool {
        self.health().eligible()
    }

    pub fn health(&self) -> HealthStatus {
        match self.health.load(Ordering::Relaxed) {
            x if x == HealthStatus::Healthy as u8 => HealthStatus::Healthy,
            x if x == HealthStatus::Unhealthy as u8 => HealthStatus::Unhealthy,
            _ => HealthStatus::Unknown,
        }
    }

    pub fn set_health(&self, status: HealthStatus) {
        self.health.store(status as u8, Ordering::Relaxed);
    }
}

/// Decrements the in-flight count when the request is over (however it ends).
#[derive(Debug)]
pub struct InFlightGuard(Arc<EndpointState>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A destination as the store knows it: route, destination index, and its
/// connection limit (a semaphore's size cannot change, so a new limit is a new entry).
type DestinationSlot = (String, usize, Option<u32>);

/// Interns endpoints by address, and destinations' concurrency counters by
/// route and position, across snapshots.
#[derive(Debug, Default)]
pub struct EndpointStore {
    known: Mutex<Interner<SocketAddr, EndpointState>>,
    destinations: Mutex<Interner<DestinationSlot, DestinationCounters>>,
}

/// Weak handles by key, so a value lives as long as some snapshot holds it.
/// Dead handles are swept once the map has doubled since the last sweep: a
/// snapshot of N destinations interns them in O(N), not O(N²), and the map
/// stays within twice what is alive.
#[derive(Debug)]
struct Interner<K, V> {
    map: HashMap<K, Weak<V>>,
    sweep_at: usize,
}

impl<K, V> Default for Interner<K, V> {
    fn default() -> Self {
        Self { map: HashMap::new(), sweep_at: 64 }
    }
}

impl<K: std::hash::Hash + Eq, V> Interner<K, V> {
    fn get_or_make(&mut self, key: K, make: impl FnOnce() -> V) -> Arc<V> {
        if let Some(value) = self.map.get(&key).and_then(Weak::upgrade) {
            return value;
        }
        if self.map.len() >= self.sweep_at {
            self.map.retain(|_, w| w.strong_count() > 0);
            self.sweep_at = (self.map.len() * 2).max(64);
        }
        let value = Arc::new(make());
        self.map.insert(key, Arc::downgrade(&value));
        value
    }
}

impl EndpointStore {
    /// The shared state for `addr`, created on first use.
    pub fn get(&self, addr: SocketAddr) -> Arc<EndpointState> {
        self.known.lock().unwrap_or_else(|p| p.into_inner()).get_or_make(addr, || EndpointState::new(addr))
    }

    /// The counters of destination `index` of `route` (with `max_connections` slots), shared
    /// with every snapshot still holding it.
    pub fn destination(&self, route: &str, index: usize, max_connections: Option<u32>) -> Arc<DestinationCounters> {
        let mut known = self.destinations.lock().unwrap_or_else(|p| p.into_inner());
        known.get_or_make((route.to_owned(), index, max_connections), || DestinationCounters::new(max_connections))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_address_shares_state_across_snapshots() {
        let store = EndpointStore::default();
        let addr: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let a = store.get(addr);
        let _guard = a.start_request();
        let b = store.get(addr);
        assert_eq!(b.in_flight(), 1);
        drop(_guard);
        assert_eq!(a.in_flight(), 0);
    }

    #[test]
    fn endpoints_no_snapshot_holds_are_forgotten_and_the_map_stays_bounded() {
        let store = EndpointStore::default();
        let held: Vec<_> = (0..10u16).map(|p| store.get(SocketAddr::from(([127, 0, 0, 1], p)))).collect();
        for round in 0..50u16 {
            // Each round's endpoints are dropped at once, as an old snapshot's are.
            for p in 0..100u16 {
                drop(store.get(SocketAddr::from(([127, 0, 1, round as u8], 1000 + p))));
            }
        }
        let map_len = store.known.lock().unwrap().map.len();
        assert!(map_len <= 2 * 64 + 100, "{map_len} handles kept for 10 live endpoints");
        assert!(Arc::ptr_eq(&held[3], &store.get(SocketAddr::from(([127, 0, 0, 1], 3)))), "live ones are still shared");
    }
}
