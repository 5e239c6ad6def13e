//! The control plane at scale on a real cluster: convergence, write
//! amplification, quiet when nothing changes, work proportional to a change,
//! a cold failover, and each component's memory. Runs only when
//! ROUTER_E2E_KUBECONFIG names a kubeconfig with admin rights on an empty
//! cluster; otherwise it says so and passes.
//!
//! The fleet is `ROUTER_E2E_SCALE_SERVICES` VPCServices (default 500), each
//! with its own ready VPCAttachment and four VPCRoutes. docs/performance.md
//! ("Control plane") reports its numbers at 2,500 services, with the
//! release build:
//!
//!     ROUTER_E2E_KUBECONFIG=... ROUTER_E2E_SCALE_SERVICES=2500 ROUTER_E2E_PROFILE=release \
//!       cargo test -p router-tests --test e2e_scale -- --nocapture

use std::{
    path::Path,
    time::{Duration, Instant},
};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Namespace};
use kube::{
    Api, Client,
    api::{ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams},
};
use router_api::{
    galactic::{VPC, VPCAttachment},
    v1alpha1::VPCRoute,
};
use router_tests::{
    cluster::{Component, MANAGER, build_binaries, delete_all, e2e_kubeconfig, impersonating_kubeconfig, install, wait_for},
    fleet::fleet,
    gateway::free_port,
};
use serde_json::json;

#[tokio::test]
async fn control_plane_at_scale() {
    let Some(kubeconfig) = e2e_kubeconfig() else {
        eprintln!("skipped: set ROUTER_E2E_KUBECONFIG to the kubeconfig of an empty cluster (admin rights) to run the end-to-end tests");
        return;
    };
    let services: usize = std::env::var("ROUTER_E2E_SCALE_SERVICES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let admin = router_kube::connect(Some(&kubeconfig)).await.expect("admin client");
    let namespace = format!("router-scale-{}", std::process::id());
    let mut created = Vec::new();
    let result = std::panic::AssertUnwindSafe(scenario(&admin, &kubeconfig, &namespace, services, &mut created)).catch_unwind().await;
    let _ = Api::<Namespace>::all(admin.clone()).delete(&namespace, &DeleteParams::background()).await;
    delete_all(&admin, &created).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Applies `objects` (typed fleet objects) with 32 requests at a time; the
/// metadata the in-memory fleet invents (uid, creation time) is left to the server.
async fn apply_all<K: serde::Serialize>(admin: &Client, ns: &str, resource: &ApiResource, objects: &[K]) {
    let api: Api<DynamicObject> = Api::namespaced_with(admin.clone(), ns, resource);
    futures::stream::iter(objects)
        .map(|o| {
            let mut v = serde_json::to_value(o).expect("serializable");
            let name = v["metadata"]["name"].as_str().expect("named").to_owned();
            v["metadata"] = json!({ "name": name });
            let status = v.as_object_mut().and_then(|m| m.remove("status"));
            let api = api.clone();
            async move {
                api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&v)).await.expect("apply fleet object");
                if let Some(status) = status {
                    api.patch_status(&name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.expect("set status");
                }
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
}

fn condition_true(route: &VPCRoute, type_: &str) -> bool {
    route.status.as_ref().is_some_and(|s| s.conditions.iter().any(|c| c.type_ == type_ && c.status == "True"))
}

/// Status writes the component has made (applied), over every kind.
async fn writes(c: &Component, component: &str) -> u64 {
    let mut total = 0;
    for kind in ["VPCService", "VPCRoute", "ServiceBinding", "TunnelBinding", "VPCIngress", "VPCEgress"] {
        total += c.metric_sum(&format!("datum_router_{component}_status_writes_total{{kind=\"{kind}\",result=\"applied\"}}")).await;
    }
    total
}

/// Waits until the status queue of `c` is empty and its write count stays put for `calm`.
async fn settled(c: &Component, component: &str, calm: Duration) -> u64 {
    let mut last = (writes(c, component).await, Instant::now());
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = writes(c, component).await;
        let queued = c.metric_sum(&format!("datum_router_{component}_status_queue_depth")).await;
        if now != last.0 || queued > 0 {
            last = (now, Instant::now());
        } else if last.1.elapsed() >= calm {
            return now;
        }
    }
}

async fn scenario(admin: &Client, kubeconfig: &Path, ns: &str, n: usize, created: &mut Vec<DynamicObject>) {
    install(admin, ns, created).await;
    let f = fleet(ns, n, 4);
    let objects = n * 2 + f.routes.len() + 1;
    let t = Instant::now();
    apply_all(admin, ns, &ApiResource::erase::<VPC>(&()), &f.vpcs).await;
    apply_all(admin, ns, &ApiResource::erase::<VPCAttachment>(&()), &f.attachments).await;
    apply_all(admin, ns, &ApiResource::erase::<router_api::v1alpha1::VPCService>(&()), &f.services).await;
    apply_all(admin, ns, &ApiResource::erase::<VPCRoute>(&()), &f.routes).await;
    eprintln!("fleet: {objects} objects ({n} services, {} routes) created in {:.1?}", f.routes.len(), t.elapsed());

    let dir = tempfile::tempdir().unwrap();
    let as_sa = |name: &str| {
        let path = dir.path().join(format!("{name}.kubeconfig"));
        impersonating_kubeconfig(kubeconfig, &format!("system:serviceaccount:datum-router:{name}"), None, &path).expect("kubeconfig");
        vec!["--kubeconfig".to_owned(), path.display().to_string()]
    };
    let bin = build_binaries();
    let started = Instant::now();
    let mut controllers: Vec<Component> = ["controller-a", "controller-b"]
        .iter()
        .map(|name| {
            Component::start(&bin.join("router-controller"), name, &as_sa("router-controller"), &[("POD_NAME", (*name).into())], dir.path())
        })
        .collect();
    let discovery = Component::start(
        &bin.join("service-discovery"),
        "discovery",
        &as_sa("service-discovery"),
        &[("POD_NAME", "discovery-a".into())],
        dir.path(),
    );
    let mut gateway_args = as_sa("router-gateway");
    gateway_args.extend(["--listen".into(), format!("127.0.0.1:{}", free_port()), "--access-log".into(), "off".into()]);
    let gateway = Component::start(&bin.join("router-gateway"), "gateway", &gateway_args, &[], dir.path());

    // 1. Convergence: every route Accepted and Programmed; the gateway serving all of them.
    let routes: Api<VPCRoute> = Api::namespaced(admin.clone(), ns);
    let total = f.routes.len();
    let budget = Duration::from_secs(120 + (n as u64) / 10);
    wait_for("every route Accepted and Programmed", budget, || async {
        // A list of every route is heavy: once a second, so the measurement does not load the server it measures.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let list = routes.list(&ListParams::default()).await.ok()?;
        let done = list.items.iter().filter(|r| condition_true(r, "Accepted") && condition_true(r, "Programmed")).count();
        (done == total).then_some(())
    })
    .await;
    let converged = started.elapsed();
    wait_for("the gateway serving every route", budget, || async {
        (gateway.metric_sum("datum_router_routes ").await as usize == total).then_some(())
    })
    .await;
    let serving = started.elapsed();

    let leases: Api<Lease> = Api::namespaced(admin.clone(), "datum-router");
    let holder = wait_for("a controller leader", Duration::from_secs(30), || async {
        leases.get_opt("router-controller").await.ok()??.spec?.holder_identity
    })
    .await;
    let leader = controllers.iter().position(|c| c.name == holder).expect("the leader is one of ours");
    let converging_writes = settled(&controllers[leader], "controller", Duration::from_secs(5)).await;
    let discovery_writes = settled(&discovery, "discovery", Duration::from_secs(5)).await;
    let controller_objects = n + total; // the VPCServices' and VPCRoutes' controller conditions
    let per_object = converging_writes as f64 / controller_objects as f64;
    eprintln!(
        "converged: all {total} routes Accepted+Programmed {converged:.1?} after start, gateway serving them at {serving:.1?}; \
         controller writes {converging_writes} for {controller_objects} objects ({per_object:.3} each), discovery writes {discovery_writes} for {n} services"
    );
    let rss = |c: &Component| c.rss_kib() / 1024;
    let standby = 1 - leader;
    eprintln!(
        "RSS MiB: controller leader {} / standby {} / discovery {} / gateway {}",
        rss(&controllers[leader]),
        rss(&controllers[standby]),
        rss(&discovery),
        rss(&gateway)
    );
    // Each route's status names its destination's ready endpoints, which discovery writes; routes wait
    // for discovery (router-controller's discovery grace), so each object is written once: issue 11's goal.
    assert!(per_object <= 1.05, "{per_object:.3} controller writes per object while converging");
    assert!(discovery_writes as usize <= n + n / 20, "{discovery_writes} discovery writes for {n} services");

    // 2. Quiet: nothing changes for 60 s, nothing is written.
    let before = (writes(&controllers[leader], "controller").await, writes(&discovery, "discovery").await);
    tokio::time::sleep(Duration::from_secs(60)).await;
    let after = (writes(&controllers[leader], "controller").await, writes(&discovery, "discovery").await);
    assert_eq!(after, before, "status writes (controller, discovery) in 60 idle seconds");

    // 3. One changed route: one write, of that route.
    routes
        .patch(
            "route-0-0",
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute", "metadata": { "name": "route-0-0" },
                "spec": { "hostnames": ["svc-0.example.com"], "matches": [{ "pathPrefix": "/p0" }],
                          "destinations": [{ "vpcServiceRef": { "name": "no-such-service" } }] },
            })),
        )
        .await
        .expect("change one route");
    let changed_at = Instant::now();
    wait_for("the changed route's ResolvedRefs=False", Duration::from_secs(30), || async {
        let r = routes.get("route-0-0").await.ok()?;
        r.status?.conditions.iter().any(|c| c.type_ == "ResolvedRefs" && c.status == "False").then_some(())
    })
    .await;
    let change_seen = changed_at.elapsed();
    let after_change = settled(&controllers[leader], "controller", Duration::from_secs(5)).await;
    eprintln!("one route changed: status in {change_seen:.2?}, {} controller writes", after_change - after.0);
    assert_eq!(after_change - after.0, 1, "one changed route costs one write");

    // 4. Cold failover: the standby takes over a current world and writes nothing.
    let standby_before = writes(&controllers[standby], "controller").await;
    controllers[leader].kill();
    let standby_name = controllers[standby].name.clone();
    wait_for("the standby leading", Duration::from_secs(60), || async {
        (leases.get_opt("router-controller").await.ok()??.spec?.holder_identity? == standby_name).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(20)).await;
    let standby_after = settled(&controllers[standby], "controller", Duration::from_secs(5)).await;
    eprintln!("failover: the new leader wrote {}", standby_after - standby_before);
    assert_eq!(standby_after, standby_before, "a cold leader over a current world writes nothing");
}
