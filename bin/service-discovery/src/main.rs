//! service-discovery: resolves every VPCService's endpoints from Galactic
//! VPCs and VPCAttachments (or the ServiceBinding that targets it) and writes
//! them to the VPCService's status.
//!
//! Watches keep its caches current and wake a walk on every change; a full
//! walk also runs every `DISCOVERY_INTERVAL_SECS` whatever happens. Replicas
//! elect a leader on a Lease: all keep warm caches, only the leader writes,
//! and a status is written only when it changes (docs/ownership.md).

mod discover;

use std::{net::SocketAddr, path::PathBuf, process::ExitCode, time::Duration};

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client, runtime::watcher};
use router_api::{
    galactic::{VPC, VPCAttachment},
    v1alpha1::{ServiceBinding, VPCService},
};
use router_kube::{
    cache::Cache,
    metrics::KubeMetrics,
    status,
    writer::{self, Election, Writer},
};

/// The field manager of every status write.
const MANAGER: &str = "datum-router-discovery";

/// Datum Router service discovery: writes VPCService endpoints from Galactic.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kubeconfig to use; the usual inference (KUBECONFIG, ~/.kube/config, in-cluster) when unset.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Seconds between full walks of VPCs and attachments (watches react in between).
    #[arg(long, env = "DISCOVERY_INTERVAL_SECS", default_value_t = 30)]
    discovery_interval_secs: u64,
    /// Most endpoints written to one VPCService's status.
    #[arg(long, env = "DISCOVERY_MAX_ENDPOINTS", default_value_t = 1000)]
    max_endpoints: usize,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "datum-router")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Diagnostic log format on stderr: text or json (filter with RUST_LOG).
    #[arg(long, env = "ROUTER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

struct Caches {
    vpcs: Cache<VPC>,
    attachments: Cache<VPCAttachment>,
    services: Cache<VPCService>,
    bindings: Cache<ServiceBinding>,
}

impl Caches {
    fn synced(&self) -> bool {
        self.vpcs.is_synced() && self.attachments.is_synced() && self.services.is_synced() && self.bindings.is_synced()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    router_kube::init_logging(&args.log_format);
    writer::exit_code("service-discovery", run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let w = Writer::start(args.kubeconfig.as_deref(), "discovery", args.admin_addr).await?;
    let all = || watcher::Config::default();
    let caches = Caches {
        vpcs: w.watch(Api::all(w.client.clone()), all(), "VPC"),
        attachments: w.watch(Api::all(w.client.clone()), all(), "VPCAttachment"),
        services: w.watch(Api::all(w.client.clone()), all(), "VPCService"),
        bindings: w.watch(Api::all(w.client.clone()), all(), "ServiceBinding"),
    };
    let election =
        Election { lease_namespace: args.lease_namespace.clone(), lease_name: "service-discovery", identity: args.identity.clone() };
    let interval = Duration::from_secs(args.discovery_interval_secs.max(1));
    w.run(election, interval, || caches.synced(), || walk(&w.client, &caches, args.max_endpoints, &w.metrics)).await;
    Ok(())
}

/// One pass over every VPCService: write the statuses that changed.
async fn walk(client: &Client, caches: &Caches, max_endpoints: usize, metrics: &KubeMetrics) {
    let timer = metrics.reconcile_duration.with_label_values(&["VPCService"]).start_timer();
    let (vpcs, attachments, bindings) = (caches.vpcs.cloned(), caches.attachments.cloned(), caches.bindings.cloned());
    let now = Timestamp::now();
    let mut failed = false;
    for svc in caches.services.objects() {
        let Some(owned) = discover::desired(&svc, &attachments, &vpcs, &bindings, max_endpoints, now) else { continue };
        let (namespace, name) = (svc.metadata.namespace.clone().unwrap_or_default(), svc.metadata.name.clone().unwrap_or_default());
        let api: Api<VPCService> = Api::namespaced(client.clone(), &namespace);
        match status::apply(&api, &name, MANAGER, &owned).await {
            Ok(()) => {
                metrics.status_writes.with_label_values(&["VPCService", "applied"]).inc();
                tracing::info!(service = %format!("{namespace}/{name}"), endpoints = owned.endpoints.len(), ready = owned.ready_endpoints, "endpoints written");
            }
            Err(e) => {
                failed = true;
                metrics.status_writes.with_label_values(&["VPCService", "error"]).inc();
                tracing::warn!(service = %format!("{namespace}/{name}"), error = %e, "status write failed; retried on the next walk");
            }
        }
    }
    timer.observe_duration();
    metrics.reconciles.with_label_values(&["VPCService", if failed { "error" } else { "success" }]).inc();
}
