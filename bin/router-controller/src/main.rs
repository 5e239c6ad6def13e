//! The router-controller binary: caches, the Lease, and the loop that runs
//! [`plan`] after every change and hands its writes to the status queue
//! (the library's doc says how it fits together).

use std::{fmt::Debug, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use k8s_openapi::{
    api::{
        core::v1::{Node, Pod, PodStatus, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    jiff::{SignedDuration, Timestamp},
};
use kube::{
    Api,
    runtime::{
        events::{Recorder, Reporter},
        watcher,
    },
};
use router_api::{
    galactic::{VPC, VPCAttachment},
    schema::Verdicts,
    v1alpha1::{ServiceBinding, TunnelBinding, VPCEgress, VPCIngress, VPCRoute, VPCService, referenced_secrets},
};
use router_controller::{
    discovery_wait::DiscoveryWait,
    memo::PassMemo,
    plan::{overlay, plan},
    world::{Invalid, SecretChecks, World},
};
use router_kube::{
    cache::{ByName, Cache},
    status_queue::StatusQueue,
    writer::{self, Writer, WriterArgs},
};

/// The field manager of every status write.
const MANAGER: &str = "datum-router-controller";

/// Datum Router controller: resolves references and writes conditions.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    #[command(flatten)]
    writer: WriterArgs,
    /// Seconds between full passes even without changes (a safety net; watches drive the work).
    #[arg(long, env = "ROUTER_RESYNC_SECS", default_value_t = 300)]
    resync_secs: u64,
    /// Seconds a VPCRoute's status may wait for service-discovery to first resolve a VPCService
    /// it sends to (counted from this controller's start or the service's creation), so that the
    /// route is written once, with its ready endpoints; 0 never waits.
    #[arg(long, env = "ROUTER_DISCOVERY_GRACE_SECS", default_value_t = 30)]
    discovery_grace_secs: u64,
}

struct Caches {
    vpcs: Cache<VPC>,
    attachments: Cache<VPCAttachment>,
    services: Cache<VPCService>,
    routes: Cache<VPCRoute>,
    bindings: Cache<ServiceBinding>,
    tunnels: Cache<TunnelBinding>,
    ingresses: Cache<VPCIngress>,
    egress: Cache<VPCEgress>,
    kube_services: Cache<Service>,
    pods: Cache<Pod>,
    /// Where ServiceBinding pods run (their topology labels); not waited for: without it,
    /// endpoint localities come from the attachments alone.
    nodes: Cache<Node>,
    endpoint_slices: Cache<EndpointSlice>,
    secrets: ByName<Secret>,
}

impl Caches {
    fn synced(&self) -> bool {
        self.vpcs.is_synced()
            && self.attachments.is_synced()
            && self.services.is_synced()
            && self.routes.is_synced()
            && self.bindings.is_synced()
            && self.tunnels.is_synced()
            && self.ingresses.is_synced()
            && self.egress.is_synced()
            && self.kube_services.is_synced()
            && self.pods.is_synced()
            && self.endpoint_slices.is_synced()
    }

    /// The Secrets VPCIngresses and VPCServices refer to.
    fn referenced_secrets(&self) -> std::collections::BTreeSet<(String, String)> {
        let (ingresses, services) = (self.ingresses.objects(), self.services.objects());
        referenced_secrets(ingresses.iter().map(|i| &**i), services.iter().map(|s| &**s))
    }

    /// The world as cached, with the statuses the controller last offered laid over it.
    fn world(&self, secret_checks: &SecretChecks, memo: &PassMemo, verdicts: &Verdicts, queue: &StatusQueue) -> World {
        let secrets = self.secrets.cloned();
        secret_checks.retain_current(&secrets);
        let mut world = World::default();
        world.secret_checks = secret_checks.clone();
        world.memo = memo.clone();
        world.vpcs = self.vpcs.cloned();
        world.attachments = self.attachments.cloned();
        world.services = self.services.cloned();
        world.routes = self.routes.cloned();
        world.bindings = self.bindings.cloned();
        world.tunnels = self.tunnels.cloned();
        world.ingresses = self.ingresses.cloned();
        world.egress = self.egress.cloned();
        world.secrets = secrets;
        world.kube_services = self.kube_services.cloned();
        world.pods = self.pods.cloned();
        world.nodes = self.nodes.cloned();
        world.endpoint_slices = self.endpoint_slices.cloned();
        overlay(&mut world, queue);
        world.invalid = Invalid::of(&world, verdicts);
        world
    }
}

/// What a ServiceBinding reads of a pod: its name, labels, annotations, node and readiness.
fn trim_pod(pod: &mut Pod) {
    let node_name = pod.spec.as_ref().and_then(|s| s.node_name.clone());
    pod.spec = node_name.map(|n| k8s_openapi::api::core::v1::PodSpec { node_name: Some(n), ..Default::default() });
    let conditions =
        pod.status.as_ref().and_then(|s| s.conditions.clone()).map(|c| c.into_iter().filter(|c| c.type_ == "Ready").collect::<Vec<_>>());
    pod.status = Some(PodStatus { conditions, ..Default::default() });
}

/// What endpoint localities read of a node: its topology labels.
fn trim_node(node: &mut Node) {
    node.spec = None;
    node.status = None;
}

/// What a ServiceBinding reads of a Service: its selector.
fn trim_service(service: &mut Service) {
    let selector = service.spec.as_ref().and_then(|s| s.selector.clone());
    service.spec = Some(k8s_openapi::api::core::v1::ServiceSpec { selector, ..Default::default() });
    service.status = None;
}

/// mimalloc rather than glibc's malloc: half of a 10,000-route snapshot build
/// went to glibc's chunk consolidation. The data-plane binaries stay on glibc:
/// there mimalloc cost more memory than it saved time (docs/performance.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc.h's `mi_option_e` (libmimalloc-sys names no constant for it).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Memory freed by a pass goes back to the system at once rather than after
/// mimalloc's 10 ms delay, which in practice kept most of a pass's peak: the
/// leader read 144–154 MiB at 10,000 routes, 113 MiB with this
/// (docs/performance.md, "Control plane").
fn purge_freed_memory_at_once() {
    // SAFETY: sets a mimalloc option; no pointers, valid at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

#[tokio::main]
async fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let args = Args::parse();
    router_kube::init_logging(&args.writer.log_format);
    writer::exit_code("router-controller", run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let w = Writer::start(&args.writer, "controller").await?;
    let all = || watcher::Config::default();
    let caches = Caches {
        vpcs: w.watch_all("VPC"),
        attachments: w.watch_all("VPCAttachment"),
        services: w.watch_all("VPCService"),
        routes: w.watch_all("VPCRoute"),
        bindings: w.watch_all("ServiceBinding"),
        tunnels: w.watch_all("TunnelBinding"),
        ingresses: w.watch_all("VPCIngress"),
        egress: w.watch_all("VPCEgress"),
        kube_services: w.watch_trimmed(Api::all(w.client.clone()), all(), "Service", trim_service),
        pods: w.watch_trimmed(Api::all(w.client.clone()), all(), "Pod", trim_pod),
        nodes: w.watch_trimmed(Api::all(w.client.clone()), all(), "Node", trim_node),
        // Only Galactic's per-pod slices: they carry the tenant-id label.
        endpoint_slices: w.watch(
            Api::all(w.client.clone()),
            watcher::Config::default().labels(router_api::galactic::TENANT_ID_LABEL),
            "EndpointSlice",
        ),
        secrets: ByName::new(w.client.clone(), "Secret"),
    };
    let resync = Duration::from_secs(args.resync_secs.max(1));
    // prepare() follows the referenced Secrets (a change), pass() reads: one cell, used in turn.
    let caches = std::cell::RefCell::new(caches);
    let prepare = || {
        let mut c = caches.borrow_mut();
        let wanted = c.referenced_secrets();
        c.secrets.follow(wanted, &w.changes, &w.metrics.watch_restarts);
        c.synced() && c.secrets.is_synced()
    };
    let recorder =
        Recorder::new(w.client.clone(), Reporter { controller: "router-controller".to_owned(), instance: Some(w.identity().to_owned()) });
    let queue: Arc<StatusQueue> = w.status_queue(&args.writer, MANAGER, Some(recorder));
    let secret_checks = SecretChecks::default();
    let memo = PassMemo::default();
    // The API server may not have run the CEL rules (1.24 without the gate): every object is checked here too.
    let verdicts = Verdicts::for_router_kinds()?;
    let discovery_wait = (args.discovery_grace_secs > 0).then(|| DiscoveryWait {
        since: Timestamp::now(),
        grace: SignedDuration::from_secs(i64::try_from(args.discovery_grace_secs).unwrap_or(i64::MAX)),
    });
    let pass = || {
        let timer = w.metrics.reconcile_duration.with_label_values(&["pass"]).start_timer();
        let mut world = caches.borrow().world(&secret_checks, &memo, &verdicts, &queue);
        world.discovery_wait = discovery_wait;
        let now = Timestamp::now();
        let writes = plan(&world, now);
        let offered = writes.len();
        for write in writes {
            queue.offer(write);
        }
        timer.observe_duration();
        w.metrics.reconciles.with_label_values(&["pass", "success"]).inc();
        if offered > 0 {
            tracing::info!(offered, queued = queue.pending(), "statuses offered");
        }
        // Discovery's writes wake the next pass; this one is for a wait that runs out unanswered.
        let deadline = world.discovery_deadline(now);
        if let Some(until) = deadline {
            tracing::info!(%until, "VPCServices not yet resolved by service-discovery: statuses of routes to them wait (--discovery-grace-secs)");
        }
        std::future::ready(deadline.map(|d| d.duration_since(now).unsigned_abs()))
    };
    w.run("router-controller", resync, prepare, pass).await;
    Ok(())
}
