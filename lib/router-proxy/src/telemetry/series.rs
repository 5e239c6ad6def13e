//! The request series of recently seen label sets, kept at hand.
//!
//! Every answered request records four series (requests, duration, request
//! and response size), and `with_label_values` finds each by hashing its
//! label values and locking the family's map: about 0.6k instructions a
//! request (docs/performance.md). Route and service labels are `Arc<str>`s
//! the snapshot made once, so a label set is known by the labels' addresses:
//! a small direct-mapped table keyed by them finds the four series with no
//! hashing of strings. An entry holds its labels, so an address cannot be
//! reused for another label while the entry is there. Request series are
//! never removed from their families, so a kept handle never goes stale.

use std::sync::Arc;

use prometheus::{Histogram, IntCounter};

use super::Metrics;

/// Slots of the table; collisions only cost a lookup in the families.
const SLOTS: usize = 64;

type Key = [usize; 6];

/// The labels of one answered request.
#[derive(Clone, Copy)]
pub struct RequestLabels<'a> {
    pub route: Option<&'a Arc<str>>,
    pub service: Option<&'a Arc<str>>,
    pub method: &'static str,
    pub class: &'static str,
}

impl RequestLabels<'_> {
    /// The labels' addresses; the static ones with their lengths too, since
    /// the compiler may lay one literal inside another.
    fn key(&self) -> Key {
        let addr = |l: Option<&Arc<str>>| l.map_or(0, |l| Arc::as_ptr(l).cast::<u8>() as usize);
        [
            addr(self.route),
            addr(self.service),
            self.method.as_ptr() as usize,
            self.method.len(),
            self.class.as_ptr() as usize,
            self.class.len(),
        ]
    }

    fn slot(key: &Key) -> usize {
        // Addresses are 8-aligned and the statics sit close together: mix before folding.
        let mixed = key.iter().fold(0usize, |h, k| (h ^ k).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        mixed >> (usize::BITS - SLOTS.trailing_zeros())
    }

    pub fn route_label(&self) -> &str {
        self.route.map_or("none", |l| l)
    }

    pub fn service_label(&self) -> &str {
        self.service.map_or("none", |l| l)
    }
}

/// The four series of one label set.
pub struct RequestSeries {
    requests: IntCounter,
    duration: Histogram,
    request_size: Histogram,
    response_size: Histogram,
}

impl RequestSeries {
    /// The series of `labels`, looked up in `metrics`' families.
    pub fn of(metrics: &Metrics, labels: &RequestLabels<'_>) -> Self {
        let (route, service) = (labels.route_label(), labels.service_label());
        Self {
            requests: metrics.requests.with_label_values(&[route, service, labels.method, labels.class]),
            duration: metrics.duration.with_label_values(&[route, labels.class]),
            request_size: metrics.request_size.with_label_values(&[route]),
            response_size: metrics.response_size.with_label_values(&[route]),
        }
    }

    /// Records an answered request: its count, its duration in seconds, and
    /// its request and response sizes where Content-Length said them.
    pub fn record(&self, seconds: f64, request_size: Option<u64>, response_size: Option<u64>) {
        self.requests.inc();
        self.duration.observe(seconds);
        if let Some(n) = request_size {
            self.request_size.observe(n as f64);
        }
        if let Some(n) = response_size {
            self.response_size.observe(n as f64);
        }
    }
}

struct Entry {
    key: Key,
    // Held so the addresses in `key` stay theirs.
    _labels: (Option<Arc<str>>, Option<Arc<str>>),
    series: RequestSeries,
}

pub struct SeriesCache {
    slots: Vec<Option<Entry>>,
}

impl Default for SeriesCache {
    fn default() -> Self {
        Self { slots: (0..SLOTS).map(|_| None).collect() }
    }
}

impl SeriesCache {
    /// The series of `labels`, found in the table or in `metrics`' families.
    pub fn get(&mut self, metrics: &Metrics, labels: &RequestLabels<'_>) -> &RequestSeries {
        let key = labels.key();
        let slot = &mut self.slots[RequestLabels::slot(&key)];
        if slot.as_ref().is_none_or(|e| e.key != key) {
            *slot =
                Some(Entry { key, _labels: (labels.route.cloned(), labels.service.cloned()), series: RequestSeries::of(metrics, labels) });
        }
        &slot.as_ref().expect("filled above").series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_those_of_the_labels_whatever_the_table_holds() {
        let metrics = Metrics::new();
        let mut cache = SeriesCache::default();
        let routes: Vec<Arc<str>> = (0..200).map(|i| format!("default/r{i}").into()).collect();
        let service: Arc<str> = "default/svc".into();
        // More label sets than slots, each recorded twice, in two rounds: collisions evict and refill.
        for _ in 0..2 {
            for route in &routes {
                for class in ["2xx", "5xx"] {
                    let labels = RequestLabels { route: Some(route), service: Some(&service), method: "GET", class };
                    cache.get(&metrics, &labels).requests.inc();
                }
            }
        }
        let none = RequestLabels { route: None, service: None, method: "POST", class: "4xx" };
        cache.get(&metrics, &none).requests.inc();
        for route in &routes {
            for class in ["2xx", "5xx"] {
                assert_eq!(metrics.requests.with_label_values(&[route, "default/svc", "GET", class]).get(), 2);
            }
        }
        assert_eq!(metrics.requests.with_label_values(&["none", "none", "POST", "4xx"]).get(), 1);
    }

    #[test]
    fn equal_labels_at_other_addresses_share_their_series() {
        let metrics = Metrics::new();
        let mut cache = SeriesCache::default();
        // A reload builds new Arcs of the same names: the family's series is the same one.
        for _ in 0..3 {
            let route: Arc<str> = "default/r".into();
            let labels = RequestLabels { route: Some(&route), service: None, method: "GET", class: "2xx" };
            cache.get(&metrics, &labels).requests.inc();
        }
        assert_eq!(metrics.requests.with_label_values(&["default/r", "none", "GET", "2xx"]).get(), 3);
    }
}
