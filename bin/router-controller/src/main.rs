//! router-controller: reconciles VPCService, VPCRoute, ServiceBinding,
//! VPCIngress, VPCEgress and TunnelBinding — resolves their references, syncs
//! ServiceBindings from pods, and writes conditions.
//!
//! Reflectors keep a cache of every kind the statuses depend on; any change
//! wakes one pass that recomputes every status from the whole picture (a
//! change to a VPCService reaches the routes naming it, a Secret the
//! VPCIngresses using it) and writes only those that differ from what is
//! stored. Replicas elect a leader on a Lease; all keep warm caches, only
//! the leader writes.

mod binding;
mod events;
mod objects;
mod routes;
mod world;

#[cfg(test)]
mod tests;

use std::{fmt::Debug, process::ExitCode, time::Duration};

use clap::Parser;
use k8s_openapi::{
    NamespaceResourceScope,
    api::{
        core::v1::{Node, Pod, Secret, Service},
        discovery::v1::EndpointSlice,
    },
    jiff::Timestamp,
};
use kube::{
    Api, Client, Resource,
    runtime::{
        events::{Event, EventType, Recorder, Reporter},
        watcher,
    },
};
use router_api::{
    galactic::{VPC, VPCAttachment},
    schema::Verdicts,
    v1alpha1::{ServiceBinding, TunnelBinding, VPCEgress, VPCIngress, VPCRoute, VPCService, referenced_secrets},
};
use router_kube::{
    cache::{ByName, Cache},
    metrics::KubeMetrics,
    status,
    writer::{self, Writer, WriterArgs},
};
use serde::{Serialize, de::DeserializeOwned};

use crate::world::{Invalid, SecretChecks, World};

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

    fn world(&self, secret_checks: &SecretChecks, verdicts: &Verdicts) -> World {
        let secrets = self.secrets.cloned();
        secret_checks.retain_current(&secrets);
        let mut world = World {
            secret_checks: secret_checks.clone(),
            vpcs: self.vpcs.cloned(),
            attachments: self.attachments.cloned(),
            services: self.services.cloned(),
            routes: self.routes.cloned(),
            bindings: self.bindings.cloned(),
            tunnels: self.tunnels.cloned(),
            ingresses: self.ingresses.cloned(),
            egress: self.egress.cloned(),
            secrets,
            kube_services: self.kube_services.cloned(),
            pods: self.pods.cloned(),
            nodes: self.nodes.cloned(),
            endpoint_slices: self.endpoint_slices.cloned(),
            invalid: Invalid::default(),
        };
        world.invalid = Invalid::of(&world, verdicts);
        world
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    router_kube::init_logging(&args.writer.log_format);
    writer::exit_code("router-controller", run(args).await)
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let w = Writer::start(&args.writer, "controller").await?;
    let caches = Caches {
        vpcs: w.watch_all("VPC"),
        attachments: w.watch_all("VPCAttachment"),
        services: w.watch_all("VPCService"),
        routes: w.watch_all("VPCRoute"),
        bindings: w.watch_all("ServiceBinding"),
        tunnels: w.watch_all("TunnelBinding"),
        ingresses: w.watch_all("VPCIngress"),
        egress: w.watch_all("VPCEgress"),
        kube_services: w.watch_all("Service"),
        pods: w.watch_all("Pod"),
        nodes: w.watch_all("Node"),
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
    let secret_checks = SecretChecks::default();
    // The API server may not have run the CEL rules (1.24 without the gate): every object is checked here too.
    let verdicts = Verdicts::for_router_kinds()?;
    let pass = || {
        let world = caches.borrow().world(&secret_checks, &verdicts);
        let ctx = Ctx { client: &w.client, metrics: &w.metrics, recorder: &recorder };
        async move { reconcile(&ctx, &world).await }
    };
    w.run("router-controller", resync, prepare, pass).await;
    Ok(())
}

/// Writes one object's status; counts the outcome; tells condition changes as Events.
async fn write<K>(ctx: &Ctx<'_>, kind: &'static str, object: &K, status: impl Serialize) -> bool
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope> + Clone + DeserializeOwned + Serialize + Debug,
{
    let (client, metrics) = (ctx.client, ctx.metrics);
    let (namespace, name) = world::key(object.meta());
    let api: Api<K> = Api::namespaced(client.clone(), &namespace);
    let desired = serde_json::to_value(&status).unwrap_or_default();
    match status::apply(&api, &name, MANAGER, status).await {
        Ok(()) => {
            metrics.status_writes.with_label_values(&[kind, "applied"]).inc();
            tracing::info!(kind, object = %format!("{namespace}/{name}"), "status written");
            let stored = serde_json::to_value(object).ok().and_then(|o| o.pointer("/status/conditions").cloned()).unwrap_or_default();
            for t in events::transitions(&stored, &desired["conditions"]) {
                let event = Event {
                    type_: if t.warning { EventType::Warning } else { EventType::Normal },
                    reason: t.reason,
                    note: Some(t.note),
                    action: "Reconcile".to_owned(),
                    secondary: None,
                };
                if let Err(e) = ctx.recorder.publish(&event, &object.object_ref(&())).await {
                    tracing::debug!(kind, object = %format!("{namespace}/{name}"), error = %e, "event not recorded");
                }
            }
            true
        }
        Err(e) => {
            metrics.status_writes.with_label_values(&[kind, "error"]).inc();
            tracing::warn!(kind, object = %format!("{namespace}/{name}"), error = %e, "status write failed; retried on the next pass");
            false
        }
    }
}

/// What a pass writes with.
struct Ctx<'a> {
    client: &'a Client,
    metrics: &'a KubeMetrics,
    recorder: &'a Recorder,
}

/// One pass: every status computed from `world`, the changed ones written.
async fn reconcile(ctx: &Ctx<'_>, world: &World) {
    let metrics = ctx.metrics;
    let now = Timestamp::now();
    let snapshot = world.snapshot();
    let shadows = routes::shadowing(&world.routes);
    macro_rules! pass {
        ($kind:literal, $ty:ty, $objects:expr, $desired:expr) => {{
            let timer = metrics.reconcile_duration.with_label_values(&[$kind]).start_timer();
            let mut ok = true;
            for o in $objects {
                if let Some(s) = $desired(o) {
                    ok &= write::<$ty>(ctx, $kind, o, s).await;
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
    let tunnel_losers = router_api::v1alpha1::tunnel_conflicts(&world.tunnels);
    pass!("TunnelBinding", TunnelBinding, &world.tunnels, |t| objects::tunnel(t, world, &tunnel_losers, now)
        .map(|conditions| serde_json::json!({ "conditions": conditions })));
    pass!("VPCIngress", VPCIngress, &world.ingresses, |i| objects::ingress(i, world, &snapshot, now));
    pass!("VPCEgress", VPCEgress, &world.egress, |e| objects::egress(e, world, &snapshot, now));
}
