//! service-discovery: resolves every VPCService's endpoints from Galactic
//! VPCs and VPCAttachments (or the ServiceBinding that targets it) and writes
//! them to the VPCService's status.
//!
//! Watches keep its caches current and wake a walk on every change; a full
//! walk also runs every `DISCOVERY_INTERVAL_SECS` whatever happens. Replicas
//! elect a leader on a Lease: all keep warm caches, only the leader writes,
//! and a status is written only when it changes (docs/ownership.md).

mod discover;

use std::{process::ExitCode, time::Duration};

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
use kube::{Api, Client};
use router_api::{
    datum::Location,
    galactic::{VPC, VPCAttachment},
    manifest::object_key,
    schema::Verdicts,
    v1alpha1::{ServiceBinding, VPCService},
};
use router_kube::{
    cache::Cache,
    metrics::KubeMetrics,
    status,
    writer::{self, Writer, WriterArgs},
};

/// The field manager of every status write.
const MANAGER: &str = "datum-router-discovery";

/// Datum Router service discovery: writes VPCService endpoints from Galactic.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    writer: WriterArgs,
    /// Seconds between full walks of VPCs and attachments (watches react in between).
    #[arg(long, env = "DISCOVERY_INTERVAL_SECS", default_value_t = 30)]
    discovery_interval_secs: u64,
    /// Most endpoints written to one VPCService's status.
    #[arg(long, env = "DISCOVERY_MAX_ENDPOINTS", default_value_t = 1000)]
    max_endpoints: usize,
}

struct Caches {
    vpcs: Cache<VPC>,
    attachments: Cache<VPCAttachment>,
    services: Cache<VPCService>,
    bindings: Cache<ServiceBinding>,
    /// Datum Locations; optional: without the CRD, localities come from attachment labels alone.
    locations: Cache<Location>,
}

impl Caches {
    fn synced(&self) -> bool {
        self.vpcs.is_synced() && self.attachments.is_synced() && self.services.is_synced() && self.bindings.is_synced()
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    router_kube::init_logging(&args.writer.log_format);
    writer::exit_code("service-discovery", run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let w = Writer::start(&args.writer, "discovery").await?;
    let caches = Caches {
        vpcs: w.watch_all("VPC"),
        attachments: w.watch_all("VPCAttachment"),
        services: w.watch_all("VPCService"),
        bindings: w.watch_all("ServiceBinding"),
        locations: w.watch_all("Location"),
    };
    let interval = Duration::from_secs(args.discovery_interval_secs.max(1));
    // The API server may not have run the CEL rules (1.24 without the gate): every object is checked here too.
    let verdicts = Verdicts::for_router_kinds()?;
    let walk = || walk(&w.client, &caches, &verdicts, args.max_endpoints, &w.metrics);
    w.run("service-discovery", interval, || caches.synced(), walk).await;
    Ok(())
}

/// One pass over every VPCService: write the statuses that changed. A
/// VPCService or ServiceBinding that breaks its CRD's rules is not acted on
/// (router-controller reports it `Accepted=False Invalid`); it is named in the log.
async fn walk(client: &Client, caches: &Caches, verdicts: &Verdicts, max_endpoints: usize, metrics: &KubeMetrics) {
    let timer = metrics.reconcile_duration.with_label_values(&["VPCService"]).start_timer();
    let (vpcs, attachments, mut bindings) = (caches.vpcs.cloned(), caches.attachments.cloned(), caches.bindings.cloned());
    let locations = caches.locations.cloned();
    let invalid_bindings = verdicts.invalid(&bindings);
    bindings.retain(|b| !invalid_bindings.contains_key(&object_key(&b.metadata)));
    let services = caches.services.objects();
    let invalid_services = verdicts.invalid(services.iter().map(|s| &**s));
    let invalid = invalid_bindings.iter().map(|b| ("ServiceBinding", b)).chain(invalid_services.iter().map(|s| ("VPCService", s)));
    for (kind, ((namespace, name), e)) in invalid {
        tracing::warn!(kind, object = %format!("{namespace}/{name}"), error = %e, "invalid: not acted on");
    }
    let now = Timestamp::now();
    let mut failed = false;
    for svc in services.iter().filter(|s| !invalid_services.contains_key(&object_key(&s.metadata))) {
        let Some(owned) = discover::desired(svc, &attachments, &vpcs, &locations, &bindings, max_endpoints, now) else { continue };
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
