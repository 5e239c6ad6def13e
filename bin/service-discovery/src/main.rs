//! service-discovery: resolves every VPCService's endpoints from Galactic
//! VPCs and VPCAttachments (or the ServiceBinding that targets it) and writes
//! them to the VPCService's status.
//!
//! Watches keep its caches current and wake a walk on every change; a full
//! walk also runs every `DISCOVERY_INTERVAL_SECS` whatever happens. Replicas
//! elect a leader on a Lease: all keep warm caches, only the leader writes,
//! and a status is written only when it differs from the last one written
//! (docs/ownership.md), through the coalescing, rate-limited status queue.

mod discover;

use std::{process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use k8s_openapi::jiff::Timestamp;
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
    status_queue::{StatusQueue, StatusWrite},
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
    let queue = w.status_queue(&args.writer, MANAGER, None);
    let walk = || {
        walk(&queue, &caches, &verdicts, args.max_endpoints, &w.metrics);
        std::future::ready(None)
    };
    w.run("service-discovery", interval, || caches.synced(), walk).await;
    Ok(())
}

/// One pass over every VPCService: offer the statuses that differ from the
/// last ones offered. A VPCService or ServiceBinding that breaks its CRD's
/// rules is not acted on (router-controller reports it `Accepted=False
/// Invalid`); it is named in the log.
fn walk(queue: &Arc<StatusQueue>, caches: &Caches, verdicts: &Verdicts, max_endpoints: usize, metrics: &KubeMetrics) {
    const KIND: &str = "VPCService";
    let timer = metrics.reconcile_duration.with_label_values(&[KIND]).start_timer();
    let (vpcs, attachments, mut bindings) = (caches.vpcs.cloned(), caches.attachments.cloned(), caches.bindings.cloned());
    let locations = caches.locations.cloned();
    let invalid_bindings = verdicts.invalid(&bindings);
    bindings.retain(|b| !invalid_bindings.contains_key(&object_key(&b.metadata)));
    let mut services = caches.services.cloned();
    queue.overlay(KIND, &mut services);
    let invalid_services = verdicts.invalid(&services);
    let invalid = invalid_bindings.iter().map(|b| ("ServiceBinding", b)).chain(invalid_services.iter().map(|s| (KIND, s)));
    for (kind, ((namespace, name), e)) in invalid {
        tracing::warn!(kind, object = %format!("{namespace}/{name}"), error = %e, "invalid: not acted on");
    }
    let now = Timestamp::now();
    let mut offered = 0;
    for svc in services.iter().filter(|s| !invalid_services.contains_key(&object_key(&s.metadata))) {
        let Some(owned) = discover::desired(svc, &attachments, &vpcs, &locations, &bindings, max_endpoints, now) else { continue };
        tracing::debug!(service = %format!("{}/{}", svc.metadata.namespace.as_deref().unwrap_or_default(), svc.metadata.name.as_deref().unwrap_or_default()),
            endpoints = owned.endpoints.len(), ready = owned.ready_endpoints, "endpoints changed");
        queue.offer(StatusWrite::new(KIND, svc, serde_json::to_value(&owned).unwrap_or_default(), Vec::new()));
        offered += 1;
    }
    timer.observe_duration();
    metrics.reconciles.with_label_values(&[KIND, "success"]).inc();
    if offered > 0 {
        tracing::info!(offered, queued = queue.pending(), "endpoints offered");
    }
}
