//! Reflector-backed caches. Each keeps a store of one kind in step with the
//! API server (relisting after a broken watch, with backoff), says when its
//! first list completed, and wakes the consumer on every change. When the API
//! server is unreachable the store keeps its last state: consumers go on
//! serving what they had.
//!
//! What no consumer reads is dropped before an object is stored: every
//! object's `managedFields` and `kubectl apply`'s last-applied annotation (a
//! second copy of the object), which together are most of a small object's
//! size; a cache may trim more of its kind (see [`spawn_trimmed`]).

use std::{fmt::Debug, sync::Arc};

use futures::StreamExt;
use kube::{
    Api, Resource,
    runtime::{
        WatchStreamExt,
        reflector::{self, Store},
        watcher,
    },
};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use prometheus::IntCounterVec;
use tokio::task::JoinHandle;

/// A kind's objects as last seen. Dropping it stops its watch.
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl<K: Resource<DynamicType = ()> + 'static> Drop for Cache<K> {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    /// Every object, in no particular order.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    /// Owned copies of every object.
    pub fn cloned(&self) -> Vec<K> {
        self.store.state().iter().map(|o| K::clone(o)).collect()
    }

    /// Whether the first full list has arrived.
    pub fn is_synced(&self) -> bool {
        *self.synced.borrow()
    }
}

/// The annotation `kubectl apply` keeps a copy of the applied object in.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Drops the metadata no consumer reads.
fn trim_metadata<K: Resource>(object: &mut K) {
    let meta = object.meta_mut();
    meta.managed_fields = None;
    if let Some(annotations) = meta.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
    }
}

/// Starts watching `api` with `config`; every change wakes `changes`, every
/// watch failure counts in `restarts` (labelled `kind`).
pub fn spawn<K>(api: Api<K>, config: watcher::Config, changes: Arc<Notify>, restarts: IntCounterVec, kind: &'static str) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    spawn_trimmed(api, config, changes, restarts, kind, |_| {})
}

/// [`spawn`], with `trim` dropping more of each object (the fields of a big
/// kind, such as Pods, that its consumer never reads) before it is stored.
pub fn spawn_trimmed<K>(
    api: Api<K>,
    config: watcher::Config,
    changes: Arc<Notify>,
    restarts: IntCounterVec,
    kind: &'static str,
    trim: fn(&mut K),
) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (synced_tx, synced) = watch::channel(false);
    let trimmed = watcher(api, config).modify(move |o| {
        trim_metadata(o);
        trim(o);
    });
    let stream = reflector::reflector(writer, trimmed.default_backoff());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            match event {
                Ok(watcher::Event::InitDone) => {
                    if !synced_tx.send_replace(true) {
                        tracing::info!(kind, "cache synced");
                    }
                    changes.notify_one();
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => {}
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_)) => changes.notify_one(),
                Err(e) => {
                    restarts.with_label_values(&[kind]).inc();
                    tracing::warn!(kind, error = %e, "watch failed; keeping the last state and retrying with backoff");
                }
            }
        }
    });
    Cache { store, synced, task }
}

/// A cache of every `K` in the cluster (see [`spawn`]).
pub fn spawn_all<K>(client: &kube::Client, changes: &Arc<Notify>, restarts: &IntCounterVec, kind: &'static str) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    spawn(Api::all(client.clone()), watcher::Config::default(), changes.clone(), restarts.clone(), kind)
}

/// Watches of individual objects by namespace/name (a `metadata.name` field
/// selector each), for objects that are wanted by reference only — Secrets:
/// a component sees the ones it needs and nothing else.
pub struct ByName<K: Resource<DynamicType = ()> + 'static> {
    client: kube::Client,
    kind: &'static str,
    watches: std::collections::BTreeMap<(String, String), Cache<K>>,
}

impl<K> ByName<K>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(client: kube::Client, kind: &'static str) -> Self {
        Self { client, kind, watches: Default::default() }
    }

    /// Watches exactly `wanted`: new names start a watch, names no longer wanted stop theirs.
    pub fn follow(&mut self, wanted: impl IntoIterator<Item = (String, String)>, changes: &Arc<Notify>, restarts: &IntCounterVec) {
        let wanted: std::collections::BTreeSet<(String, String)> = wanted.into_iter().collect();
        self.watches.retain(|k, _| wanted.contains(k));
        for (namespace, name) in wanted {
            if self.watches.contains_key(&(namespace.clone(), name.clone())) {
                continue;
            }
            let api: Api<K> = Api::namespaced(self.client.clone(), &namespace);
            let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
            let cache = spawn(api, config, changes.clone(), restarts.clone(), self.kind);
            self.watches.insert((namespace, name), cache);
        }
    }

    /// Whether every watch has listed once (a missing object then really is missing).
    pub fn is_synced(&self) -> bool {
        self.watches.values().all(Cache::is_synced)
    }

    /// The objects found.
    pub fn cloned(&self) -> Vec<K> {
        self.watches.values().flat_map(Cache::cloned).collect()
    }
}
