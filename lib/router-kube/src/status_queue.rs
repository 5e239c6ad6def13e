//! The path every status write of router-controller and service-discovery
//! takes: coalesced per object, bounded in concurrency, rate limited, and
//! retried with backoff.
//!
//! A pass computes statuses from its caches, but a cache lags behind the
//! component's own writes: compared against it, a status just written looks
//! "changed" again, and each write's watch event starts another pass that
//! writes again. So the queue remembers the status it was last given per
//! object (what it has written or is writing: the *intended* status), and
//! [`StatusQueue::overlay`] lays that over the cached objects before a pass
//! computes from them. A pass then offers only what differs from its own
//! last word, whatever the cache shows. An intended status is dropped once
//! the cache shows it, when its object is gone, or after [`TRUST`] without
//! a write in progress: then the cache is trusted again, which also heals a
//! status someone else changed behind the component's back.
//!
//! Offers of one object coalesce: a newer status replaces one not yet sent,
//! so a burst of changes costs at most the write in flight and the last one.

use std::{
    collections::{HashMap, VecDeque},
    future::Future,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{
    Api, Client, Resource,
    api::{ApiResource, DynamicObject, Patch, PatchParams},
    runtime::events::{Event, Recorder},
};
use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;
use tokio::{sync::Notify, time::Instant};

use crate::metrics::KubeMetrics;

/// How long an intended status is trusted over a cache that does not show it
/// (with no write of it in progress).
pub const TRUST: Duration = Duration::from_secs(60);

/// The first retry's delay; each further failure doubles it.
const FIRST_RETRY: Duration = Duration::from_millis(200);
/// The longest retry delay for conflicts, throttling and server errors.
const MAX_RETRY: Duration = Duration::from_secs(30);
/// The longest retry delay for errors a retry is unlikely to cure (400, 403, 422):
/// they are retried, slowly, in case RBAC or a CRD is fixed underneath.
const MAX_RETRY_REFUSED: Duration = Duration::from_secs(300);

/// One object, as the queue knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectKey {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One status to apply, and the Events that tell its condition changes.
pub struct StatusWrite {
    pub key: ObjectKey,
    /// The object's uid: an intended status is never laid over another object of the same name.
    pub uid: Option<String>,
    pub resource: ApiResource,
    /// The owned fields of the status (what server-side apply sends).
    pub status: Value,
    pub reference: ObjectReference,
    pub events: Vec<Event>,
}

impl StatusWrite {
    /// A write of `status` to `object`.
    pub fn new<K>(kind: &'static str, object: &K, status: Value, events: Vec<Event>) -> Self
    where
        K: Resource<DynamicType = ()>,
    {
        let meta = object.meta();
        Self {
            key: ObjectKey { kind, namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() },
            uid: meta.uid.clone(),
            resource: ApiResource::erase::<K>(&()),
            status,
            reference: object.object_ref(&()),
            events,
        }
    }
}

/// Why a write did not land.
#[derive(Debug, Clone, PartialEq)]
pub enum WriteError {
    /// The object is gone (404): nothing to retry.
    Gone,
    /// Worth retrying soon: a conflict, throttling (`throttled`, with the
    /// server's Retry-After when it sent one), a server error, no connection.
    Retry { message: String, throttled: bool, after: Option<Duration> },
    /// Refused (400, 403, 422 ...): retried only slowly.
    Refused { message: String },
}

impl std::fmt::Display for WriteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gone => f.write_str("object not found"),
            Self::Retry { message, .. } | Self::Refused { message } => f.write_str(message),
        }
    }
}

impl From<kube::Error> for WriteError {
    fn from(e: kube::Error) -> Self {
        match &e {
            kube::Error::Api(status) => match status.code {
                404 => Self::Gone,
                409 | 429 | 500..=599 => Self::Retry {
                    message: e.to_string(),
                    throttled: status.code == 429,
                    after: status
                        .details
                        .as_ref()
                        .map(|d| d.retry_after_seconds)
                        .filter(|s| *s > 0)
                        .map(|s| Duration::from_secs(u64::from(s))),
                },
                _ => Self::Refused { message: e.to_string() },
            },
            _ => Self::Retry { message: e.to_string(), throttled: false, after: None },
        }
    }
}

/// Where writes go: the API server, or a recorder in tests.
pub trait Sink: Send + Sync + 'static {
    fn apply(&self, write: &StatusWrite) -> impl Future<Output = Result<(), WriteError>> + Send;
}

/// Server-side apply of the status subresource as `manager`, then the write's Events.
pub struct KubeSink {
    pub client: Client,
    pub manager: &'static str,
    pub recorder: Option<Recorder>,
}

impl Sink for KubeSink {
    async fn apply(&self, write: &StatusWrite) -> Result<(), WriteError> {
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &write.key.namespace, &write.resource);
        let patch = serde_json::json!({
            "apiVersion": write.resource.api_version,
            "kind": write.resource.kind,
            "metadata": { "name": write.key.name },
            "status": write.status,
        });
        // force: a field this component owns is its alone, even if another manager touched it by hand.
        api.patch_status(&write.key.name, &PatchParams::apply(self.manager).force(), &Patch::Apply(&patch)).await?;
        if let Some(recorder) = &self.recorder {
            for event in &write.events {
                if let Err(e) = recorder.publish(event, &write.reference).await {
                    tracing::debug!(object = %write.key, error = %e, "event not recorded");
                }
            }
        }
        Ok(())
    }
}

/// The queue's limits (flags of both writers).
#[derive(clap::Args, Debug, Clone)]
pub struct QueueArgs {
    /// Status writes per second, on average (a token bucket). 12,500 objects take 25 s at the
    /// default, 40 minutes at client-go's 5/s; an API server that is overloaded answers 429, which pauses the queue.
    #[arg(long, env = "ROUTER_STATUS_QPS", default_value_t = 500.0, value_parser = positive)]
    pub status_qps: f64,
    /// Status writes allowed at once above the average rate.
    #[arg(long, env = "ROUTER_STATUS_BURST", default_value_t = 500)]
    pub status_burst: u32,
    /// Status writes in flight at once.
    #[arg(long, env = "ROUTER_STATUS_CONCURRENCY", default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..))]
    pub status_concurrency: u16,
}

fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

impl Default for QueueArgs {
    fn default() -> Self {
        Self { status_qps: 500.0, status_burst: 500, status_concurrency: 16 }
    }
}

/// What the queue knows of one object.
struct Entry {
    /// The newest status offered: written, being written or waiting.
    intended: Value,
    uid: Option<String>,
    since: Instant,
    /// Not yet sent (a newer offer replaces it).
    pending: Option<StatusWrite>,
    /// In the ready list or waiting out a retry delay.
    queued: bool,
    in_flight: bool,
    failures: u32,
}

impl Entry {
    fn busy(&self) -> bool {
        self.pending.is_some() || self.in_flight
    }
}

#[derive(Default)]
struct State {
    entries: HashMap<ObjectKey, Entry>,
    ready: VecDeque<ObjectKey>,
    /// Writes not yet sent, and writes being sent (counted, not recounted:
    /// an offer must not cost a walk of every entry).
    waiting: usize,
    sending: usize,
}

/// The status write queue of one component.
pub struct StatusQueue {
    state: Mutex<State>,
    wake: Notify,
    limiter: Limiter,
    metrics: Arc<KubeMetrics>,
}

impl StatusQueue {
    /// A queue writing to `sink` with `args.status_concurrency` workers.
    pub fn start<S: Sink>(sink: S, args: &QueueArgs, metrics: Arc<KubeMetrics>) -> Arc<Self> {
        let queue = Arc::new(Self {
            state: Mutex::default(),
            wake: Notify::new(),
            limiter: Limiter::new(args.status_qps, args.status_burst),
            metrics,
        });
        let sink = Arc::new(sink);
        for _ in 0..args.status_concurrency {
            tokio::spawn(Self::work(queue.clone(), sink.clone()));
        }
        queue
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `write`, replacing a write of the same object not yet sent (its Events are kept).
    pub fn offer(self: &Arc<Self>, mut write: StatusWrite) {
        let mut guard = self.lock();
        let state = &mut *guard;
        let key = write.key.clone();
        let entry = state.entries.entry(key.clone()).or_insert_with(|| Entry {
            intended: Value::Null,
            uid: None,
            since: Instant::now(),
            pending: None,
            queued: false,
            in_flight: false,
            failures: 0,
        });
        entry.intended = write.status.clone();
        entry.uid = write.uid.clone();
        entry.since = Instant::now();
        match entry.pending.take() {
            Some(mut replaced) => {
                self.metrics.status_writes.with_label_values(&[key.kind, "coalesced"]).inc();
                replaced.events.append(&mut write.events);
                write.events = replaced.events;
            }
            None => state.waiting += 1,
        }
        entry.pending = Some(write);
        if !entry.queued && !entry.in_flight {
            entry.queued = true;
            state.ready.push_back(key);
            self.wake.notify_one();
        }
        self.metrics.status_queue.set(state.pending());
    }

    /// Lays the intended status of each of `objects` over its cached status,
    /// where the cache does not show it yet; forgets intended statuses the
    /// cache shows, those of objects gone, and stale ones (see the module doc).
    pub fn overlay<K>(&self, kind: &'static str, objects: &mut [K])
    where
        K: Resource<DynamicType = ()> + Serialize + DeserializeOwned,
    {
        let mut guard = self.lock();
        let state = &mut *guard;
        let mut seen = std::collections::HashSet::new();
        for object in objects.iter_mut() {
            let meta = object.meta();
            let key =
                ObjectKey { kind, namespace: meta.namespace.clone().unwrap_or_default(), name: meta.name.clone().unwrap_or_default() };
            let Some(entry) = state.entries.get_mut(&key) else { continue };
            if entry.uid.is_some() && entry.uid != meta.uid {
                // Another object of the same name: what was meant for the old one is not its status.
                continue;
            }
            let Ok(stored) = serde_json::to_value(&*object) else { continue };
            if contains(stored.get("status").unwrap_or(&Value::Null), &entry.intended) && !entry.in_flight {
                // The cache shows it: the cache is trusted again, and a write still waiting would change nothing.
                if entry.pending.take().is_some() {
                    state.waiting -= 1;
                }
                continue;
            }
            if !entry.busy() && entry.since.elapsed() > TRUST {
                continue;
            }
            seen.insert(key);
            match with_status(stored, &entry.intended) {
                Ok(overlaid) => *object = overlaid,
                Err(e) => tracing::warn!(kind, error = %e, "intended status does not fit the object; the cached one is used"),
            }
        }
        // The rest are forgotten (objects no longer cached among them) unless a write of theirs is still going.
        state.entries.retain(|k, e| k.kind != kind || seen.contains(k) || e.busy());
        self.metrics.status_queue.set(state.pending());
    }

    /// Drops every write not yet sent and everything remembered: this replica
    /// no longer leads. (A write already in flight still lands.)
    pub fn stand_down(&self) {
        let mut guard = self.lock();
        let state = &mut *guard;
        if state.entries.is_empty() {
            return;
        }
        let dropped = std::mem::take(&mut state.waiting);
        state.entries.retain(|_, e| e.in_flight);
        for entry in state.entries.values_mut() {
            entry.pending = None;
            entry.intended = Value::Null;
        }
        state.ready.clear();
        if dropped > 0 {
            tracing::info!(dropped, "not leading: status writes not yet sent are dropped");
        }
        self.metrics.status_queue.set(state.pending());
    }

    /// Writes waiting or in flight.
    pub fn pending(&self) -> usize {
        usize::try_from(self.lock().pending()).unwrap_or(0)
    }

    async fn work<S: Sink>(self: Arc<Self>, sink: Arc<S>) {
        loop {
            let write = self.next().await;
            self.limiter.acquire().await;
            let result = sink.apply(&write).await;
            self.finish(write, result);
        }
    }

    /// The next write to send, marked in flight.
    async fn next(&self) -> StatusWrite {
        loop {
            let woken = self.wake.notified();
            {
                let mut guard = self.lock();
                let state = &mut *guard;
                while let Some(key) = state.ready.pop_front() {
                    let Some(entry) = state.entries.get_mut(&key) else { continue };
                    entry.queued = false;
                    if let Some(write) = entry.pending.take() {
                        entry.in_flight = true;
                        state.waiting -= 1;
                        state.sending += 1;
                        if !state.ready.is_empty() {
                            // One wake-up per worker: pass the rest on.
                            self.wake.notify_one();
                        }
                        return write;
                    }
                }
            }
            woken.await;
        }
    }

    fn finish(self: &Arc<Self>, write: StatusWrite, result: Result<(), WriteError>) {
        let key = write.key.clone();
        let mut guard = self.lock();
        let state = &mut *guard;
        state.sending -= 1;
        let metrics = &self.metrics;
        match &result {
            Ok(()) => {
                metrics.status_writes.with_label_values(&[key.kind, "applied"]).inc();
                tracing::debug!(object = %key, "status written");
            }
            Err(WriteError::Gone) => {
                metrics.status_writes.with_label_values(&[key.kind, "gone"]).inc();
                tracing::debug!(object = %key, "status not written: the object is gone");
            }
            Err(e @ (WriteError::Retry { .. } | WriteError::Refused { .. })) => {
                metrics.status_writes.with_label_values(&[key.kind, "error"]).inc();
                tracing::warn!(object = %key, error = %e, "status write failed; retried with backoff");
            }
        }
        let Some(entry) = state.entries.get_mut(&key) else { return };
        entry.in_flight = false;
        if entry.intended.is_null() && entry.pending.is_none() {
            // Stood down while this write was in flight: nothing of it is retried or remembered.
            state.entries.remove(&key);
            self.metrics.status_queue.set(state.pending());
            return;
        }
        match result {
            Ok(()) => entry.failures = 0,
            Err(WriteError::Gone) if entry.pending.is_none() => {
                state.entries.remove(&key);
                self.metrics.status_queue.set(state.pending());
                return;
            }
            Err(WriteError::Gone) => {}
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                // Unless a newer status came meanwhile, the same one goes again.
                if entry.pending.is_none() {
                    entry.pending = Some(write);
                    state.waiting += 1;
                }
                let (delay, throttled) = retry_delay(&error, entry.failures);
                if throttled {
                    self.limiter.pause(delay);
                }
                entry.queued = true;
                let queue = self.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    queue.requeue(key);
                });
                self.metrics.status_queue.set(state.pending());
                return;
            }
        }
        if entry.pending.is_some() && !entry.queued {
            entry.queued = true;
            state.ready.push_back(key);
            self.wake.notify_one();
        }
        self.metrics.status_queue.set(state.pending());
    }

    fn requeue(&self, key: ObjectKey) {
        let mut state = self.lock();
        if state.entries.get(&key).is_some_and(|e| e.pending.is_some()) {
            state.ready.push_back(key);
            self.wake.notify_one();
        } else if let Some(e) = state.entries.get_mut(&key) {
            e.queued = false;
        }
    }
}

impl State {
    fn pending(&self) -> i64 {
        i64::try_from(self.waiting + self.sending).unwrap_or(i64::MAX)
    }
}

/// How long to wait before retrying after `failures` failures in a row, and
/// whether the server asked everyone to slow down.
fn retry_delay(error: &WriteError, failures: u32) -> (Duration, bool) {
    let doubled = |cap: Duration| FIRST_RETRY.saturating_mul(1 << failures.saturating_sub(1).min(16)).min(cap);
    match error {
        WriteError::Retry { throttled, after, .. } => (after.unwrap_or_else(|| doubled(MAX_RETRY)), *throttled),
        WriteError::Refused { .. } => (doubled(MAX_RETRY_REFUSED), false),
        WriteError::Gone => (Duration::ZERO, false),
    }
}

/// Whether `stored` already holds every field of `written`, as server-side
/// apply would leave it. A list of objects with a `type` (conditions) is a map
/// keyed by type; other lists must be equal. An absent field equals null or
/// an empty list (the API server drops them).
pub fn contains(stored: &Value, written: &Value) -> bool {
    match (stored, written) {
        (_, Value::Null) => true,
        (Value::Object(s), Value::Object(w)) => w.iter().all(|(k, wv)| match s.get(k) {
            Some(sv) => contains(sv, wv),
            None => is_empty(wv),
        }),
        (Value::Array(s), Value::Array(w)) if is_condition_list(w) => {
            w.iter().all(|wc| s.iter().any(|sc| sc.get("type") == wc.get("type") && contains(sc, wc)))
        }
        (Value::Null, w) => is_empty(w),
        (s, w) => s == w,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.values().all(is_empty),
        _ => false,
    }
}

fn is_condition_list(list: &[Value]) -> bool {
    !list.is_empty() && list.iter().all(|c| c.get("type").is_some_and(Value::is_string))
}

/// `written` applied over `stored` as server-side apply merges a component's
/// own fields: objects field by field, conditions by type, anything else replaced.
pub fn merge(stored: &mut Value, written: &Value) {
    match (stored, written) {
        (_, Value::Null) => {}
        (Value::Object(s), Value::Object(w)) => {
            for (k, wv) in w {
                merge(s.entry(k.clone()).or_insert(Value::Null), wv);
            }
        }
        (Value::Array(s), Value::Array(w)) if is_condition_list(w) => {
            for wc in w {
                match s.iter_mut().find(|sc| sc.get("type") == wc.get("type")) {
                    Some(sc) => *sc = wc.clone(),
                    None => s.push(wc.clone()),
                }
            }
        }
        (s, w) => *s = w.clone(),
    }
}

/// `object` (as JSON) with `written` applied over its status, as the API
/// server would store it after the component's apply.
pub fn with_status<K: DeserializeOwned>(mut object: Value, written: &Value) -> Result<K, serde_json::Error> {
    let mut status = object.get_mut("status").map(Value::take).unwrap_or(Value::Null);
    merge(&mut status, written);
    object["status"] = status;
    serde_json::from_value(object)
}

/// A token bucket of `rate` per second and `burst` at once, which a 429 pauses.
struct Limiter {
    rate: f64,
    burst: f64,
    state: Mutex<Bucket>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
    paused_until: Instant,
}

impl Limiter {
    fn new(rate: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        let now = Instant::now();
        Self { rate, burst, state: Mutex::new(Bucket { tokens: burst, at: now, paused_until: now }) }
    }

    async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * self.rate).min(self.burst);
                b.at = now;
                if now < b.paused_until {
                    b.paused_until - now
                } else if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    return;
                } else {
                    Duration::from_secs_f64((1.0 - b.tokens) / self.rate)
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// No write for `d`: the server said it is overloaded.
    fn pause(&self, d: Duration) {
        let mut b = self.state.lock().unwrap_or_else(|p| p.into_inner());
        b.paused_until = b.paused_until.max(Instant::now() + d);
        b.tokens = 0.0;
    }
}

#[cfg(test)]
mod tests;
