//! One warm QUIC connection from a gateway replica to one connector.
//!
//! A link dials eagerly as soon as it exists, with one dial in flight at a
//! time (single flight by construction: one task per link), and redials when
//! the connection closes or a dial fails, after a full-jitter backoff growing
//! from 100 ms to 10 s and reset by every success. Streams are never pooled:
//! each lives exactly as long as the TCP connection it carries, so a stale
//! stream can never be handed to a new request.

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use iroh::{Endpoint, EndpointAddr, PublicKey, endpoint::Connection};
use tokio::{sync::Notify, task::JoinHandle};

use crate::{ALPN, metrics::TunnelMetrics};

const BACKOFF_BASE: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// How a connector is reached right now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinkState {
    pub up: bool,
    /// `Direct` or `Relay`, while up.
    pub path: Option<&'static str>,
    pub rtt: Option<Duration>,
    pub last_error: Option<String>,
}

/// A connector, as one gateway replica reaches it.
pub struct Link {
    pub id: PublicKey,
    connection: Mutex<Option<Connection>>,
    last_error: Mutex<Option<String>>,
    in_flight: AtomicUsize,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl Link {
    /// Starts dialing `addr`; `changed` is woken whenever the link goes up or down.
    pub fn spawn(endpoint: Endpoint, addr: EndpointAddr, changed: Arc<Notify>, metrics: Arc<TunnelMetrics>) -> Arc<Self> {
        let link = Arc::new(Self {
            id: addr.id,
            connection: Mutex::default(),
            last_error: Mutex::default(),
            in_flight: AtomicUsize::new(0),
            task: Mutex::default(),
        });
        let task = tokio::spawn(Self::keep_connected(Arc::downgrade(&link), endpoint, addr, changed, metrics));
        *lock(&link.task) = Some(task);
        link
    }

    async fn keep_connected(
        link: std::sync::Weak<Self>,
        endpoint: Endpoint,
        addr: EndpointAddr,
        changed: Arc<Notify>,
        metrics: Arc<TunnelMetrics>,
    ) {
        let mut failures = 0u32;
        loop {
            let result = endpoint.connect(addr.clone(), ALPN).await;
            let Some(this) = link.upgrade() else { return };
            match result {
                Ok(conn) => {
                    metrics.dials.with_label_values(&["ok"]).inc();
                    failures = 0;
                    tracing::info!(connector = %addr.id.fmt_short(), "tunnel to connector up");
                    *lock(&this.connection) = Some(conn.clone());
                    *lock(&this.last_error) = None;
                    changed.notify_waiters();
                    drop(this);
                    let reason = conn.closed().await;
                    let Some(this) = link.upgrade() else { return };
                    tracing::warn!(connector = %addr.id.fmt_short(), %reason, "tunnel to connector closed; redialing");
                    *lock(&this.connection) = None;
                    *lock(&this.last_error) = Some(reason.to_string());
                    changed.notify_waiters();
                }
                Err(e) => {
                    metrics.dials.with_label_values(&["error"]).inc();
                    tracing::debug!(connector = %addr.id.fmt_short(), error = %e, "dial failed");
                    *lock(&this.last_error) = Some(e.to_string());
                    failures = failures.saturating_add(1);
                }
            }
            tokio::time::sleep(router_core::retry::backoff(BACKOFF_BASE, BACKOFF_MAX, failures)).await;
        }
    }

    /// The live connection, if any.
    pub fn connection(&self) -> Option<Connection> {
        lock(&self.connection).clone().filter(|c| c.close_reason().is_none())
    }

    pub fn is_up(&self) -> bool {
        self.connection().is_some()
    }

    /// Streams open on this link now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Counts a stream for as long as the guard lives.
    pub fn stream_guard(self: &Arc<Self>) -> StreamGuard {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        StreamGuard(self.clone())
    }

    /// The path in use, its RTT, and the last error.
    pub fn state(&self) -> LinkState {
        let last_error = lock(&self.last_error).clone();
        let Some(conn) = self.connection() else { return LinkState { last_error, ..Default::default() } };
        let paths = conn.paths();
        let selected = paths.iter().find(|p| p.is_selected());
        LinkState {
            up: true,
            path: selected.as_ref().map(|p| if p.is_relay() { "Relay" } else { "Direct" }),
            rtt: selected.map(|p| p.rtt()),
            last_error,
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.task).take() {
            task.abort();
        }
        if let Some(conn) = lock(&self.connection).take() {
            conn.close(0u32.into(), b"connector removed");
        }
    }
}

/// Holds one in-flight stream on a link.
pub struct StreamGuard(Arc<Link>);

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Among `links`, the live ones, fewest streams in flight first (ties keep the given order).
pub fn by_least_in_flight(links: &[Arc<Link>]) -> Vec<Arc<Link>> {
    let mut live: Vec<Arc<Link>> = links.iter().filter(|l| l.is_up()).cloned().collect();
    live.sort_by_key(|l| l.in_flight());
    live
}

/// A mutex's value; a panic elsewhere while it was held does not make it unusable.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
