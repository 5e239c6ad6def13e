//! Cluster mode: TunnelBindings and VPCServices from the API (read-only),
//! planned on every change; status written under two kinds of field manager.
//! Every replica applies its own endpoint id to `gatewayEndpointIds` (a set)
//! under a manager of its own, so the set is the union of the replicas'
//! ids; the leader of Lease `tunnel-gateway` writes `Ready`, `connectors` and
//! `reachableConnectors` as it sees them, comparing with what it last wrote
//! (or, after a failover, with what is stored) so nothing unchanged is sent.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{api::coordination::v1::Lease, jiff::Timestamp};
use kube::Api;
use router_api::{
    manifest::object_key,
    schema::Verdicts,
    v1alpha1::{TunnelBinding, VPCService, condition_types},
};
use router_kube::{
    admin::Readiness,
    cache,
    lease::{self, LeaseSettings},
    status,
};
use router_tunnel::{
    plan::Plan,
    serve::Tunnels,
    status::{LeaderStatus, leader_status},
};
use tokio::sync::{Notify, watch};

use crate::{Failure, ServeArgs};

/// The leader's field manager.
const LEADER_MANAGER: &str = "datum-tunnel-gateway";
/// How often the leader refreshes connector state without a change in the API.
const STATUS_EVERY: Duration = Duration::from_secs(2);
const DEBOUNCE: Duration = Duration::from_millis(200);

pub async fn run(args: &ServeArgs, tunnels: &Arc<Tunnels>, ready: &Readiness, stop: watch::Receiver<bool>) -> Result<(), Failure> {
    let client = router_kube::connect(args.kubeconfig.as_deref()).await?;
    let metrics = tunnels.metrics();
    let changes = Arc::new(Notify::new());
    let bindings: cache::Cache<TunnelBinding> = cache::spawn_all(&client, &changes, &metrics.watch_restarts, "TunnelBinding");
    let services: cache::Cache<VPCService> = cache::spawn_all(&client, &changes, &metrics.watch_restarts, "VPCService");
    let verdicts = Verdicts::for_router_kinds()?;
    let identity = args.identity.clone().unwrap_or_else(lease::default_identity);
    let own_manager = format!("{LEADER_MANAGER}-{identity}");
    let own_id = tunnels.id().to_string();

    let (leader_tx, mut leader) = watch::channel(false);
    let settings = LeaseSettings {
        name: "tunnel-gateway".to_owned(),
        identity,
        lease_duration: Duration::from_secs(15),
        renew_every: Duration::from_secs(5),
        namespace: args.lease_namespace.clone(),
    };
    let campaign =
        tokio::spawn(lease::run(Api::<Lease>::namespaced(client.clone(), &args.lease_namespace), settings, leader_tx, stop.clone()));

    let mut written: BTreeMap<String, LeaderStatus> = BTreeMap::new();
    let mut announced: BTreeSet<(String, Option<String>)> = BTreeSet::new();
    let mut stopping = stop.clone();
    loop {
        tokio::select! {
            () = changes.notified() => {}
            () = tokio::time::sleep(STATUS_EVERY) => {}
            _ = leader.changed() => {}
            _ = stopping.wait_for(|s| *s) => break,
        }
        tokio::time::sleep(DEBOUNCE).await;
        if !(bindings.is_synced() && services.is_synced()) {
            continue;
        }
        let (mut bs, mut ss) = (bindings.cloned(), services.cloned());
        let (bad_bindings, bad_services) = (verdicts.invalid(&bs), verdicts.invalid(&ss));
        for ((ns, name), e) in bad_bindings.iter().chain(&bad_services) {
            tracing::warn!(object = %format!("{ns}/{name}"), error = %e, "invalid: not served");
        }
        bs.retain(|b| !bad_bindings.contains_key(&object_key(&b.metadata)));
        ss.retain(|s| !bad_services.contains_key(&object_key(&s.metadata)));
        tunnels.apply(Plan::build(&bs, &ss));
        ready.set(true);

        for b in &bs {
            let (namespace, name) = object_key(&b.metadata);
            let key = (format!("{namespace}/{name}"), b.metadata.uid.clone());
            let listed = b.status.as_ref().is_some_and(|s| s.gateway_endpoint_ids.contains(&own_id));
            if listed || announced.contains(&key) {
                continue;
            }
            let api: Api<TunnelBinding> = Api::namespaced(client.clone(), &namespace);
            match status::apply(&api, &name, &own_manager, serde_json::json!({ "gatewayEndpointIds": [own_id] })).await {
                Ok(()) => {
                    announced.insert(key);
                }
                Err(e) => tracing::warn!(binding = %key.0, error = %e, "announcing this replica's endpoint id failed; retried"),
            }
        }

        if !*leader.borrow() {
            written.clear();
            continue;
        }
        let reports = tunnels.report();
        let now = Timestamp::now();
        for b in &bs {
            let (namespace, name) = object_key(&b.metadata);
            let label = format!("{namespace}/{name}");
            let Some(report) = reports.iter().find(|r| r.binding == label) else { continue };
            let stored = b.status.clone().unwrap_or_default();
            let previous = written.get(&label).cloned().unwrap_or_else(|| LeaderStatus {
                conditions: stored.conditions.iter().filter(|c| c.type_ == condition_types::READY).cloned().collect(),
                connectors: stored.connectors.clone(),
                reachable_connectors: stored.reachable_connectors.unwrap_or_default(),
            });
            let Some(desired) = leader_status(report, &stored.conditions, b.metadata.generation, Some(&previous), now) else { continue };
            let api: Api<TunnelBinding> = Api::namespaced(client.clone(), &namespace);
            match status::apply(&api, &name, LEADER_MANAGER, &desired).await {
                Ok(()) => {
                    tracing::info!(binding = %label, reachable = desired.reachable_connectors, "status written");
                    written.insert(label, desired);
                }
                Err(e) => tracing::warn!(binding = %label, error = %e, "status write failed; retried"),
            }
        }
    }
    ready.set(false);
    let _ = campaign.await;
    Ok(())
}
