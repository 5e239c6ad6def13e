//! What router-controller and service-discovery share around their own
//! logic: a client, the admin port, SIGTERM, the Lease election, and the loop
//! that runs a pass after every (debounced) change or interval — on every
//! replica to keep readiness honest, writing only on the leader.

use std::{fmt::Debug, future::Future, net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::api::coordination::v1::Lease;
use kube::{
    Api, Client, Resource,
    runtime::{events::Recorder, watcher},
};
use serde::de::DeserializeOwned;
use tokio::sync::{Notify, watch};

use crate::{
    admin::{self, Readiness},
    cache::{self, Cache},
    lease::{self, LeaseSettings},
    metrics::KubeMetrics,
    shutdown,
    status_queue::{KubeSink, QueueArgs, StatusQueue},
};

/// How long a burst of events settles before a pass, at least. After a pass
/// that took longer, the next waits as long as it took: a storm of events
/// (a cluster converging, every write coming back as a watch event) then
/// costs at most half a core, not a pass back to back with the next.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// A status writer's shared state.
pub struct Writer {
    pub client: Client,
    pub metrics: Arc<KubeMetrics>,
    /// Every cache wakes this on a change.
    pub changes: Arc<Notify>,
    ready: Arc<Readiness>,
    stop: watch::Receiver<bool>,
    lease_namespace: String,
    identity: String,
    /// The status queues of this writer: emptied whenever it does not lead.
    queues: std::sync::Mutex<Vec<Arc<StatusQueue>>>,
}

/// The command-line settings every status writer shares.
#[derive(clap::Args, Debug, Clone)]
pub struct WriterArgs {
    /// Kubeconfig to use; the usual inference (KUBECONFIG, ~/.kube/config, in-cluster) when unset.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    pub admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "datum-router")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (the pod name); host name and process id when unset.
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Diagnostic log format on stderr: text or json (filter with RUST_LOG).
    #[arg(long, env = "ROUTER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,
    #[command(flatten)]
    pub queue: QueueArgs,
}

impl WriterArgs {
    /// The identity this replica campaigns under.
    pub fn identity(&self) -> String {
        self.identity.clone().unwrap_or_else(lease::default_identity)
    }
}

impl Writer {
    /// Connects, opens the admin port and listens for SIGTERM.
    pub async fn start(args: &WriterArgs, component: &str) -> Result<Self, Box<dyn std::error::Error>> {
        let client = crate::connect(args.kubeconfig.as_deref()).await?;
        let metrics = Arc::new(KubeMetrics::new(component));
        let ready = Arc::new(Readiness::default());
        let addr = args.admin_addr;
        admin::serve(addr, metrics.clone(), ready.clone()).await.map_err(|e| format!("admin listener {addr}: {e}"))?;
        Ok(Self {
            client,
            metrics,
            changes: Arc::new(Notify::new()),
            ready,
            stop: shutdown::on_signal(),
            lease_namespace: args.lease_namespace.clone(),
            identity: args.identity(),
            queues: Default::default(),
        })
    }

    /// This replica's identity in the Lease.
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// A cache of every `K` in the cluster that wakes this writer's passes.
    pub fn watch_all<K>(&self, kind: &'static str) -> Cache<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        cache::spawn_all(&self.client, &self.changes, &self.metrics.watch_restarts, kind)
    }

    /// The queue this writer's statuses go through, applied as `manager`
    /// (with the Events of their condition changes when there is a `recorder`).
    pub fn status_queue(&self, args: &WriterArgs, manager: &'static str, recorder: Option<Recorder>) -> Arc<StatusQueue> {
        let queue = StatusQueue::start(KubeSink { client: self.client.clone(), manager, recorder }, &args.queue, self.metrics.clone());
        self.queues.lock().unwrap_or_else(|p| p.into_inner()).push(queue.clone());
        queue
    }

    /// A cache of `api` that wakes this writer's passes, its objects trimmed by `trim` (see [`cache::spawn_trimmed`]).
    pub fn watch_trimmed<K>(&self, api: Api<K>, config: watcher::Config, kind: &'static str, trim: fn(&mut K)) -> Cache<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        cache::spawn_trimmed(api, config, self.changes.clone(), self.metrics.watch_restarts.clone(), kind, trim)
    }

    /// A cache of `api` that wakes this writer's passes.
    pub fn watch<K>(&self, api: Api<K>, config: watcher::Config, kind: &'static str) -> Cache<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        cache::spawn(api, config, self.changes.clone(), self.metrics.watch_restarts.clone(), kind)
    }

    /// Until SIGTERM: after each change (debounced), `interval`, or leadership
    /// change, asks `prepare` whether the caches are complete (readiness), and
    /// when they are and this replica leads, runs `pass`. A pass may ask to
    /// run again after a while even if nothing changes (Some: a wait of its
    /// own runs out then). Releases the lease on the way out.
    pub async fn run<P, F, Fut>(&self, lease_name: &str, interval: Duration, mut prepare: P, mut pass: F)
    where
        P: FnMut() -> bool,
        F: FnMut() -> Fut,
        Fut: Future<Output = Option<Duration>>,
    {
        let (leader_tx, mut leader) = watch::channel(false);
        let settings = LeaseSettings {
            name: lease_name.to_owned(),
            identity: self.identity.clone(),
            lease_duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
            namespace: self.lease_namespace.clone(),
        };
        let api = Api::<Lease>::namespaced(self.client.clone(), &self.lease_namespace);
        let campaign = tokio::spawn(lease::run(api, settings, leader_tx, self.stop.clone()));
        let mut stopping = self.stop.clone();
        let mut last_pass = Duration::ZERO;
        let mut again = None;
        loop {
            tokio::select! {
                () = self.changes.notified() => {}
                () = tokio::time::sleep(again.map_or(interval, |a: Duration| a.min(interval))) => {}
                _ = leader.changed() => {}
                _ = stopping.wait_for(|s| *s) => break,
            }
            tokio::time::sleep(DEBOUNCE.max(last_pass)).await;
            let synced = prepare();
            self.ready.set(synced);
            let leads = *leader.borrow();
            self.metrics.leader.set(i64::from(leads));
            if !leads {
                // A replica that lost the lease must not go on writing what it queued as leader:
                // the new leader's statuses would be overwritten with older ones.
                for queue in self.queues.lock().unwrap_or_else(|p| p.into_inner()).iter() {
                    queue.stand_down();
                }
            }
            again = None;
            if synced && leads {
                let started = tokio::time::Instant::now();
                again = pass().await;
                last_pass = started.elapsed();
            }
        }
        self.ready.set(false);
        let _ = campaign.await;
    }
}

/// The exit of a component's main: logs the error that ended it.
pub fn exit_code(component: &str, result: Result<(), Box<dyn std::error::Error>>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "{component} failed");
            std::process::ExitCode::FAILURE
        }
    }
}
