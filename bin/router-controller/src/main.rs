//! router-controller: reconciles VPCService, VPCRoute, ServiceBinding,
//! VPCIngress and VPCEgress — resolves their references, syncs
//! ServiceBindings from pods, and writes conditions.
//!
//! Reflectors keep a cache of every kind the statuses depend on; any change
//! wakes one pass that recomputes every status from the whole picture (a
//! change to a VPCService reaches the routes naming it, a Secret the
//! VPCIngresses using it) and writes only those that differ from what is
//! stored. Replicas elect a leader on a Lease; all keep warm caches, only
//! the leader writes.

mod binding;
mod objects;
mod routes;
mod world;

#[cfg(test)]
mod tests;

use std::{fmt::Debug, net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};

use clap::Parser;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        coordination::v1::Lease,
        core::v1::{Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    jiff::Timestamp,
};
use kube::{Api, Client, Resource, runtime::watcher};
use router_api::{
    galactic::{VPC, VPCAttachment},
    v1alpha1::{ServiceBinding, VPCEgress, VPCIngress, VPCRoute, VPCService},
};
use router_kube::{
    admin::{self, Readiness},
    cache::{self, ByName, Cache},
    lease::{self, LeaseSettings},
    metrics::KubeMetrics,
    shutdown, status,
};
use serde::{Serialize, de::DeserializeOwned};
use tokio::sync::{Notify, watch};

use crate::world::World;

/// The field manager of every status write.
const MANAGER: &str = "datum-router-controller";

/// Datum Router controller: resolves references and writes conditions.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kubeconfig to use; the usual inference (KUBECONFIG, ~/.kube/config, in-cluster) when unset.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "datum-router")]
    lease_namespace: String,
    /// This replica's identity in the Lease (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// Seconds between full passes even without changes (a safety net; watches drive the work).
    #[arg(long, env = "ROUTER_RESYNC_SECS", default_value_t = 300)]
    resync_secs: u64,
    /// Diagnostic log format on stderr: text or json (filter with RUST_LOG).
    #[arg(long, env = "ROUTER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

struct Caches {
    vpcs: Cache<VPC>,
    attachments: Cache<VPCAttachment>,
    services: Cache<VPCService>,
    routes: Cache<VPCRoute>,
    bindings: Cache<ServiceBinding>,
    ingresses: Cache<VPCIngress>,
    egress: Cache<VPCEgress>,
    kube_services: Cache<Service>,
    pods: Cache<Pod>,
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
            && self.ingresses.is_synced()
            && self.egress.is_synced()
            && self.kube_services.is_synced()
            && self.pods.is_synced()
            && self.endpoint_slices.is_synced()
    }

    /// The Secrets VPCIngresses and VPCServices refer to.
    fn referenced_secrets(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for i in self.ingresses.objects() {
            let (ns, _) = world::key(&i.metadata);
            for tls in i.spec.listeners.iter().filter_map(|l| l.tls.as_ref()) {
                out.extend(tls.certificate_refs.iter().map(|c| (ns.clone(), c.name.clone())));
                out.extend(tls.client_validation.iter().map(|v| (ns.clone(), v.ca_certificate_ref.name.clone())));
            }
        }
        for s in self.services.objects() {
            let (ns, _) = world::key(&s.metadata);
            if let Some(tls) = &s.spec.tls {
                out.extend(tls.ca_certificate_ref.iter().chain(tls.client_certificate_ref.iter()).map(|r| (ns.clone(), r.name.clone())));
            }
        }
        out
    }

    fn world(&self) -> World {
        World {
            vpcs: self.vpcs.cloned(),
            attachments: self.attachments.cloned(),
            services: self.services.cloned(),
            routes: self.routes.cloned(),
            bindings: self.bindings.cloned(),
            ingresses: self.ingresses.cloned(),
            egress: self.egress.cloned(),
            secrets: self.secrets.cloned(),
            kube_services: self.kube_services.cloned(),
            pods: self.pods.cloned(),
            endpoint_slices: self.endpoint_slices.cloned(),
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    router_kube::init_logging(&args.log_format);
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "router-controller failed");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let client = router_kube::connect(args.kubeconfig.as_deref()).await?;
    let metrics = Arc::new(KubeMetrics::new("controller"));
    let ready = Arc::new(Readiness::default());
    admin::serve(args.admin_addr, metrics.clone(), ready.clone()).await.map_err(|e| format!("admin listener {}: {e}", args.admin_addr))?;
    let stop = shutdown::on_signal();

    let changes = Arc::new(Notify::new());
    let restarts = metrics.watch_restarts.clone();
    let all = || watcher::Config::default();
    let mut caches = Caches {
        vpcs: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPC"),
        attachments: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPCAttachment"),
        services: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPCService"),
        routes: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPCRoute"),
        bindings: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "ServiceBinding"),
        ingresses: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPCIngress"),
        egress: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "VPCEgress"),
        kube_services: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "Service"),
        pods: cache::spawn(Api::all(client.clone()), all(), changes.clone(), restarts.clone(), "Pod"),
        endpoint_slices: cache::spawn(
            Api::all(client.clone()),
            all().labels(router_api::galactic::TENANT_ID_LABEL),
            changes.clone(),
            restarts.clone(),
            "EndpointSlice",
        ),
        secrets: ByName::new(client.clone(), "Secret"),
    };

    let (leader_tx, mut leader) = watch::channel(false);
    let settings = LeaseSettings {
        namespace: args.lease_namespace.clone(),
        name: "router-controller".to_owned(),
        identity: args.identity.clone().unwrap_or_else(lease::default_identity),
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
    };
    let election =
        tokio::spawn(lease::run(Api::<Lease>::namespaced(client.clone(), &args.lease_namespace), settings, leader_tx, stop.clone()));

    let resync = Duration::from_secs(args.resync_secs.max(1));
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            () = changes.notified() => {}
            () = tokio::time::sleep(resync) => {}
            _ = leader.changed() => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        caches.secrets.follow(caches.referenced_secrets(), &changes, &restarts);
        let synced = caches.synced() && caches.secrets.is_synced();
        ready.set(synced);
        let is_leader = *leader.borrow();
        metrics.leader.set(i64::from(is_leader));
        if synced && is_leader {
            reconcile(&client, &caches.world(), &metrics).await;
        }
    }
    ready.set(false);
    let _ = election.await;
    Ok(())
}

/// Writes one object's status if it changed; counts the outcome.
async fn write<K>(
    client: &Client,
    kind: &'static str,
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    status: impl Serialize,
    metrics: &KubeMetrics,
) -> bool
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Debug,
{
    let (namespace, name) = world::key(meta);
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    match status::apply(&api, &name, MANAGER, status).await {
        Ok(()) => {
            metrics.status_writes.with_label_values(&[kind, "applied"]).inc();
            tracing::info!(kind, object = %format!("{namespace}/{name}"), "status written");
            true
        }
        Err(e) => {
            metrics.status_writes.with_label_values(&[kind, "error"]).inc();
            tracing::warn!(kind, object = %format!("{namespace}/{name}"), error = %e, "status write failed; retried on the next pass");
            false
        }
    }
}

/// One pass: every status computed from `world`, the changed ones written.
async fn reconcile(client: &Client, world: &World, metrics: &KubeMetrics) {
    let now = Timestamp::now();
    let snapshot = world.snapshot();
    let shadows = routes::shadowing(&world.routes);
    macro_rules! pass {
        ($kind:literal, $ty:ty, $objects:expr, $desired:expr) => {{
            let timer = metrics.reconcile_duration.with_label_values(&[$kind]).start_timer();
            let mut ok = true;
            for o in $objects {
                if let Some(s) = $desired(o) {
                    ok &= write::<$ty>(client, $kind, &o.metadata, s, metrics).await;
                }
            }
            timer.observe_duration();
            metrics.reconciles.with_label_values(&[$kind, if ok { "success" } else { "error" }]).inc();
        }};
    }
    pass!("VPCService", VPCService, &world.services, |s| objects::service(s, world, &snapshot, now)
        .map(|conditions| serde_json::json!({ "conditions": conditions })));
    pass!("VPCRoute", VPCRoute, &world.routes, |r| routes::desired(r, world, &snapshot, &shadows, now));
    pass!("ServiceBinding", ServiceBinding, &world.bindings, |b| binding::desired(b, world, now));
    pass!("VPCIngress", VPCIngress, &world.ingresses, |i| objects::ingress(i, world, &snapshot, now));
    pass!("VPCEgress", VPCEgress, &world.egress, |e| objects::egress(e, &snapshot, now));
}
