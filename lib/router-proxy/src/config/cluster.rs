//! Cluster mode: the gateway reads the registry (the Kubernetes API) with
//! reflectors, read-only, and builds a snapshot from it after a short
//! debounce. It watches the kinds it serves and, one watch per name, only the
//! Secrets its listeners and services reference. Nothing is published before
//! every cache has its first full list, so `/readyz` means "serving the
//! cluster's configuration"; when the API server goes away the caches keep
//! their last state and the gateway keeps serving it.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use router_api::{
    galactic::VPC,
    manifest::object_key,
    schema::{InvalidObject, Verdicts},
    v1alpha1::{VPCEgress, VPCIngress, VPCRoute, VPCService, referenced_secrets},
};
use router_core::{EndpointStore, Objects, Snapshot, SnapshotBuilder, SnapshotInput};
use router_kube::cache::{self, ByName, Cache};
use tokio::sync::{Notify, watch};

use super::SnapshotCell;
use crate::{
    telemetry::Metrics,
    tls::{TlsBuilder, TlsState, secrets::Secrets},
};

/// How long changes settle before a rebuild.
const DEBOUNCE: Duration = Duration::from_millis(200);

/// Everything cluster mode needs.
pub struct ClusterSource {
    pub client: Client,
    pub store: Arc<EndpointStore>,
    pub cell: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<TlsBuilder>,
    /// The gateway's own ports, which VPCIngress listeners may not claim.
    pub reserved_ports: Vec<u16>,
    /// Where the gateway is (`--locality`).
    pub locality: Option<router_api::datum::Locality>,
}

struct Kinds {
    vpcs: Cache<VPC>,
    services: Cache<VPCService>,
    routes: Cache<VPCRoute>,
    ingresses: Cache<VPCIngress>,
    egress: Cache<VPCEgress>,
}

impl ClusterSource {
    /// A cache of every `K`, stored with `drop_status` applied.
    fn without_status<K>(&self, kind: &'static str, changes: &Arc<Notify>, drop_status: fn(&mut K)) -> Cache<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let api = kube::Api::all(self.client.clone());
        cache::spawn_trimmed(api, Default::default(), changes.clone(), self.metrics.watch_restarts.clone(), kind, drop_status)
    }

    /// Watches and rebuilds until `stop` turns true.
    pub async fn run(self, mut stop: watch::Receiver<bool>) {
        let changes = Arc::new(Notify::new());
        let restarts = self.metrics.watch_restarts.clone();
        let kinds = Arc::new(Kinds {
            vpcs: cache::spawn_all(&self.client, &changes, &restarts, "VPC"),
            services: cache::spawn_all(&self.client, &changes, &restarts, "VPCService"),
            // The gateway builds from specs: the controller's statuses on these kinds are not kept.
            routes: self.without_status("VPCRoute", &changes, |r: &mut VPCRoute| r.status = None),
            ingresses: self.without_status("VPCIngress", &changes, |i: &mut VPCIngress| i.status = None),
            egress: self.without_status("VPCEgress", &changes, |e: &mut VPCEgress| e.status = None),
        });
        let mut secrets: ByName<Secret> = ByName::new(self.client.clone(), "Secret");
        let verdicts = match Verdicts::for_router_kinds() {
            Ok(v) => Arc::new(v),
            Err(e) => {
                tracing::error!(error = %e, "the router's CRD schemas do not compile; serving nothing from the cluster");
                return;
            }
        };
        let this = Arc::new(self);
        // What the last build compiled, handed to the blocking thread and back with each build.
        let mut builder = SnapshotBuilder::default();
        let mut last_build = Duration::ZERO;
        loop {
            tokio::select! {
                () = changes.notified() => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            // A first build at 10,000 routes takes over 100 ms, a rebuild after a few changes
            // about 15 ms (docs/performance.md): under a storm of changes one that took longer
            // than the debounce spaces the next out by as long, so rebuilding costs at most about
            // half a core.
            tokio::time::sleep(DEBOUNCE.max(last_build)).await;
            let started = std::time::Instant::now();
            let synced = kinds.vpcs.is_synced()
                && kinds.services.is_synced()
                && kinds.routes.is_synced()
                && kinds.ingresses.is_synced()
                && kinds.egress.is_synced();
            if !synced {
                continue;
            }
            // Building, and freeing the previous snapshot, are CPU work: off the request threads,
            // where a rebuild stalled every request of its worker (standalone reloads do the same).
            let build = {
                let (this, kinds, verdicts, mut builder) = (this.clone(), kinds.clone(), verdicts.clone(), std::mem::take(&mut builder));
                move || (this.build(&kinds, &verdicts, &mut builder), builder)
            };
            let mut snapshot = match tokio::task::spawn_blocking(build).await {
                Ok((snapshot, kept)) => {
                    builder = kept;
                    snapshot
                }
                Err(e) => {
                    // The builder went with the failed build: the next one starts from nothing.
                    tracing::error!(error = %e, "building the snapshot failed; the last one stays in place");
                    continue;
                }
            };
            // Follow exactly the referenced Secrets: start watches for new references, drop the rest.
            let (ingresses, services) = (kinds.ingresses.objects(), kinds.services.objects());
            secrets.follow(referenced_secrets(ingresses.iter().map(|i| &**i), services.iter().map(|s| &**s)), &changes, &restarts);
            // A Secret not listed yet would look missing: wait for its first list (its watch wakes us).
            if !secrets.is_synced() {
                continue;
            }
            let mut material = Secrets::default();
            for s in secrets.cloned() {
                material.insert(&s);
            }
            let tls = this.tls.build(&mut snapshot, &material);
            let publish = {
                let this = this.clone();
                move || this.publish(snapshot, tls)
            };
            let (generation, routes, services) = match tokio::task::spawn_blocking(publish).await {
                Ok(published) => published,
                Err(e) => {
                    tracing::error!(error = %e, "publishing the snapshot failed");
                    continue;
                }
            };
            last_build = started.elapsed();
            this.metrics.record_load(last_build);
            let ms = last_build.as_millis();
            tracing::info!(generation, routes, services, ms, "configuration from the cluster");
        }
    }

    /// Publishes `snapshot`, which frees the previous one unless requests still
    /// hold it; returns the generation, routes and services.
    fn publish(&self, snapshot: Snapshot, tls: TlsState) -> (u64, usize, usize) {
        super::log_problems(&snapshot.report);
        self.metrics.record_snapshot(&snapshot);
        let (routes, services) = (snapshot.route_count, snapshot.services.len());
        (self.cell.publish(snapshot, tls), routes, services)
    }

    /// The snapshot of every valid object. An object that breaks its CRD's
    /// rules (the API server may not have enforced them) is left out and named
    /// in the report, so `/config` and the log say why it is not served.
    fn build(&self, kinds: &Kinds, verdicts: &Verdicts, builder: &mut SnapshotBuilder) -> Snapshot {
        let mut rejected = Vec::new();
        // The caches' own objects, shared: a rebuild copies none of them, and the builder
        // recompiles only those that are not the ones it compiled last time.
        let services = valid(kinds.services.objects(), verdicts, &mut rejected);
        let routes = valid(kinds.routes.objects(), verdicts, &mut rejected);
        let ingresses = valid(kinds.ingresses.objects(), verdicts, &mut rejected);
        let egress = valid(kinds.egress.objects(), verdicts, &mut rejected);
        let vpcs = kinds.vpcs.objects();
        let input = SnapshotInput {
            services: Objects::Shared(&services),
            routes: Objects::Shared(&routes),
            egress: Objects::Shared(&egress),
            vpcs: Objects::Shared(&vpcs),
            ingresses: Objects::Shared(&ingresses),
            reserved_ports: &self.reserved_ports,
            locality: self.locality.as_ref(),
        };
        let mut snapshot = builder.build(input, &self.store);
        for (kind, (namespace, name), e) in rejected {
            snapshot.report.reject(&kind, namespace, name, format!("not served: invalid: {e}"));
        }
        snapshot
    }
}

/// An object left out of the snapshot: its kind, (namespace, name), and why.
type Rejected = (String, (String, String), InvalidObject);

/// `objects` without the invalid ones, which are added to `rejected`.
fn valid<K>(mut objects: Vec<Arc<K>>, verdicts: &Verdicts, rejected: &mut Vec<Rejected>) -> Vec<Arc<K>>
where
    K: kube::Resource<DynamicType = ()> + serde::Serialize,
{
    let invalid = verdicts.invalid(objects.iter().map(|o| &**o));
    if invalid.is_empty() {
        return objects;
    }
    objects.retain(|o| !invalid.contains_key(&object_key(o.meta())));
    rejected.extend(invalid.into_iter().map(|(key, e)| (K::kind(&()).into_owned(), key, e)));
    objects
}
