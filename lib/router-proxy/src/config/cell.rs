use std::sync::{
    Arc,
    atomic::{AtomicBool, AtomicU64, Ordering},
};

use arc_swap::ArcSwap;
use router_core::Snapshot;

use crate::tls::TlsState;

/// The current snapshot, swapped atomically. Readers take an `Arc` for the
/// whole request, so a swap never changes a request's view half-way and the
/// old snapshot is freed when its last request finishes.
pub struct SnapshotCell {
    current: ArcSwap<Snapshot>,
    /// The TLS configurations of the current snapshot's listeners and services.
    tls: ArcSwap<TlsState>,
    loaded: AtomicBool,
    generation: AtomicU64,
    /// Tells followers (health checking) that a new snapshot is in place.
    published: tokio::sync::watch::Sender<u64>,
}

impl Default for SnapshotCell {
    fn default() -> Self {
        Self {
            current: ArcSwap::from_pointee(Snapshot::default()),
            tls: ArcSwap::from_pointee(TlsState::default()),
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            published: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl SnapshotCell {
    pub fn load(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    pub fn tls(&self) -> Arc<TlsState> {
        self.tls.load_full()
    }

    /// Publishes a new snapshot with its TLS state; returns its generation (1 for the first).
    /// TLS goes first: a handshake that finds a new listener finds its certificate.
    pub fn publish(&self, snapshot: Snapshot, tls: TlsState) -> u64 {
        self.tls.store(Arc::new(tls));
        self.current.store(Arc::new(snapshot));
        self.loaded.store(true, Ordering::Release);
        let generation = self.generation.fetch_add(1, Ordering::AcqRel) + 1;
        self.published.send_replace(generation);
        generation
    }

    /// A receiver that sees every publish.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.published.subscribe()
    }

    /// Whether a first snapshot has been published (readiness).
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}
