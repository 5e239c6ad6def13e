//! Reflector-backed caches. Each keeps a store of one kind in step with the
//! API server (relisting after a broken watch, with backoff), says when its
//! first list completed, and wakes the consumer on every change. When the API
//! server is unreachable the store keeps its last state: consumers go on
//! serving what they had.

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

/// Starts watching `api` with `config`; every change wakes `changes`, every
/// watch failure counts in `restarts` (labelled `kind`).
pub fn spawn<K>(api: Api<K>, config: watcher::Config, changes: Arc<Notify>, restarts: IntCounterVec, kind: &'static str) -> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let (synced_tx, synced) = watch::channel(false);
    let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
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
