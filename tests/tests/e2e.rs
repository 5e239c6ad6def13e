//! The control plane on a real cluster. Runs only when ROUTER_E2E_KUBECONFIG
//! names a kubeconfig with admin rights on an empty cluster; otherwise it
//! says so and passes.
//!
//! From that kubeconfig alone it applies the CRDs (ours and Galactic's) and
//! the RBAC manifests, starts router-controller (two replicas),
//! service-discovery and router-gateway as processes on this machine, each
//! impersonating its own ServiceAccount so the RBAC is exercised for real,
//! and drives Galactic objects whose interface addresses are the 127.0.0.x
//! addresses of test backends. Everything it creates is deleted at the end.
//!
//!     ROUTER_E2E_KUBECONFIG=$HOME/.kube/kind-config cargo test -p router-tests --test e2e -- --nocapture

use std::{path::Path, time::Duration};

use futures::FutureExt;
use k8s_openapi::api::{
    coordination::v1::Lease,
    core::v1::{Namespace, Pod},
};
use kube::{
    Api, Client,
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
};
use router_api::v1alpha1::{ServiceBinding, TunnelBinding, VPCRoute, VPCService};
use router_tests::{
    backend::{loopback_block, loopback_ip, start_backends},
    client::Client as Http,
    cluster::{
        Component, Relay, apply_yaml, build_binaries, delete_all, e2e_kubeconfig, impersonating_kubeconfig, install, server_addr, wait_for,
    },
    gateway::free_port,
    tunnel::endpoint_id,
};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(60);

fn condition(status: Option<&serde_json::Value>, type_: &str) -> Option<(String, String)> {
    let c = status?.get("conditions")?.as_array()?.iter().find(|c| c["type"] == type_)?;
    Some((c["status"].as_str()?.to_owned(), c["reason"].as_str()?.to_owned()))
}

async fn status_of<K>(api: &Api<K>, name: &str) -> Option<serde_json::Value>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let obj = api.get_opt(name).await.ok()??;
    serde_json::to_value(obj).ok()?.get("status").cloned()
}

async fn set_status<K>(api: &Api<K>, name: &str, status: serde_json::Value)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.patch_status(name, &PatchParams::default(), &Patch::Merge(json!({ "status": status }))).await.expect("set status");
}

#[tokio::test]
async fn control_plane_end_to_end() {
    let Some(kubeconfig) = e2e_kubeconfig() else {
        eprintln!("skipped: set ROUTER_E2E_KUBECONFIG to the kubeconfig of an empty cluster (admin rights) to run the end-to-end tests");
        return;
    };
    let admin = router_kube::connect(Some(&kubeconfig)).await.expect("admin client");
    let mut created: Vec<DynamicObject> = Vec::new();
    let namespace = format!("router-e2e-{}", std::process::id());
    let result = std::panic::AssertUnwindSafe(scenario(&admin, &kubeconfig, &namespace, &mut created)).catch_unwind().await;
    // Clean up whatever happened: the test namespace, then what was applied (RBAC, CRDs).
    let _ = Api::<Namespace>::all(admin.clone()).delete(&namespace, &DeleteParams::background()).await;
    delete_all(&admin, &created).await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn scenario(admin: &Client, kubeconfig: &Path, ns: &str, created: &mut Vec<DynamicObject>) {
    // 1. CRDs and RBAC, as a user would apply them.
    install(admin, ns, created).await;

    // 2. The components, each as its own ServiceAccount; the gateway through a relay the test can cut.
    let dir = tempfile::tempdir().unwrap();
    let as_sa = |name: &str, server| {
        let path = dir.path().join(format!("{name}.kubeconfig"));
        impersonating_kubeconfig(kubeconfig, &format!("system:serviceaccount:datum-router:{name}"), server, &path).expect("kubeconfig");
        path
    };
    let bin = build_binaries();
    let relay = Relay::start(server_addr(kubeconfig).expect("API server address")).await;
    let arg = |p: &Path| vec!["--kubeconfig".to_owned(), p.display().to_string()];
    let controller_cfg = as_sa("router-controller", None);
    let mut controllers = [
        Component::start(
            &bin.join("router-controller"),
            "controller-a",
            &arg(&controller_cfg),
            &[("POD_NAME", "controller-a".into())],
            dir.path(),
        ),
        Component::start(
            &bin.join("router-controller"),
            "controller-b",
            &arg(&controller_cfg),
            &[("POD_NAME", "controller-b".into())],
            dir.path(),
        ),
    ];
    let _discovery = Component::start(
        &bin.join("service-discovery"),
        "discovery",
        &arg(&as_sa("service-discovery", None)),
        &[("POD_NAME", "discovery-a".into()), ("DISCOVERY_INTERVAL_SECS", "2".into())],
        dir.path(),
    );
    let listen = free_port();
    let ingress_port = free_port();
    let mut gateway_args = arg(&as_sa("router-gateway", Some(relay.addr)));
    gateway_args.extend([
        "--listen".into(),
        format!("127.0.0.1:{listen}"),
        "--ingress-bind".into(),
        "127.0.0.1".into(),
        "--access-log".into(),
        "off".into(),
        "--locality".into(),
        "region=e2e,zone=e2e-zone-a".into(),
    ]);
    let gateway = Component::start(&bin.join("router-gateway"), "gateway", &gateway_args, &[], dir.path());

    // 3. Galactic objects on the backends' loopback addresses.
    let backends = start_backends(&["a", "b"]).await;
    let port = backends[0].addr.port();
    let galactic = format!(
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPC\nmetadata: {{name: vpc, namespace: {ns}}}\nspec: {{networks: [127.0.0.0/8]}}\n---\n\
         apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata: {{name: att-a, namespace: {ns}, labels: {{app: web,\n\
         \x20 topology.kubernetes.io/region: e2e, topology.kubernetes.io/zone: e2e-zone-a}}}}\n\
         spec: {{vpc: {{name: vpc}}, interface: {{name: galactic0, addresses: [{}/8]}}}}\n---\n\
         apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata: {{name: att-b, namespace: {ns},\n\
         \x20 labels: {{app: web, networking.datumapis.com/location: dfw}}}}\n\
         spec: {{vpc: {{name: vpc}}, interface: {{name: galactic0, addresses: [{}/8]}}}}\n---\n\
         apiVersion: networking.datumapis.com/v1alpha\nkind: Location\nmetadata: {{name: dfw, namespace: {ns}}}\n\
         spec: {{locationClassName: datum-managed, topology: {{topology.datum.net/city-code: DFW}},\n\
         \x20 provider: {{gcp: {{projectId: e2e, region: e2e-other, zone: e2e-zone-b}}}}}}\n",
        backends[0].addr.ip(),
        backends[1].addr.ip()
    );
    apply_yaml(admin, &galactic, Some(ns)).await.expect("Galactic objects");
    let vpcs: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &kube::discovery::ApiResource::erase::<router_api::galactic::VPC>(&()));
    let attachments: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &kube::discovery::ApiResource::erase::<router_api::galactic::VPCAttachment>(&()));
    set_status(&vpcs, "vpc", json!({"ready": true, "identifier": "0a1b2c3d4e5f"})).await;
    set_status(&attachments, "att-a", json!({"ready": true, "identifier": "1f2e"})).await;
    set_status(&attachments, "att-b", json!({"ready": true, "identifier": "1f2f"})).await;

    let router = format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: web}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: web}}}}, port: {port}, protocol: HTTP, addressFamily: IPv4}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: only-b}}\n\
         spec: {{vpcAttachmentRef: {{name: att-b}}, port: {port}, protocol: HTTP, addressFamily: IPv4}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: web}}\n\
         spec: {{hostnames: [web.e2e.example], destinations: [{{vpcServiceRef: {{name: web}}}}]}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: near}}\n\
         spec: {{hostnames: [near.e2e.example], destinations: [{{vpcServiceRef: {{name: web}}, trafficDistribution: PreferClose}}]}}\n"
    );
    apply_yaml(admin, &router, Some(ns)).await.expect("router objects");
    let services: Api<VPCService> = Api::namespaced(admin.clone(), ns);
    let routes: Api<VPCRoute> = Api::namespaced(admin.clone(), ns);

    // 4. Discovery resolves, the controller accepts, the gateway routes.
    wait_for("two ready endpoints on VPCService web", WAIT, || async {
        let s = status_of(&services, "web").await?;
        (s["readyEndpoints"] == 2 && condition(Some(&s), "Discovered")?.0 == "True" && condition(Some(&s), "Accepted")?.0 == "True")
            .then_some(())
    })
    .await;
    wait_for("VPCRoute web Accepted, ResolvedRefs and Programmed", WAIT, || async {
        let s = status_of(&routes, "web").await?;
        ["Accepted", "ResolvedRefs", "Programmed"].iter().all(|t| condition(Some(&s), t).is_some_and(|c| c.0 == "True")).then_some(())
    })
    .await;
    let http = Http::http1();
    let url = format!("http://127.0.0.1:{listen}/");
    let host = [("host", "web.e2e.example")];
    wait_for("the gateway serving the route", WAIT, || async { (http.get(&url, &host).await.ok()?.status == 200).then_some(()) }).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        seen.insert(http.get(&url, &host).await.unwrap().backend().unwrap_or_default().to_owned());
    }
    assert_eq!(seen, ["a".to_owned(), "b".to_owned()].into(), "both backends serve");

    // 4b. Locality: service-discovery wrote where each endpoint is (att-a's labels; att-b's Location,
    // its city code from the topology and region and zone from its GCP provider), and a PreferClose
    // destination keeps a gateway in e2e-zone-a on att-a.
    wait_for("endpoint localities in VPCService web's status", WAIT, || async {
        let s = status_of(&services, "web").await?;
        let endpoints = s["endpoints"].as_array()?;
        let of = |att: &str| endpoints.iter().find(|e| e["attachment"] == att).cloned();
        let (a, b) = (of("att-a")?, of("att-b")?);
        (a["zone"] == "e2e-zone-a"
            && a["region"] == "e2e"
            && b["cityCode"] == "DFW"
            && b["zone"] == "e2e-zone-b"
            && b["region"] == "e2e-other")
            .then_some(())
    })
    .await;
    let near = [("host", "near.e2e.example")];
    wait_for("the gateway keeping the PreferClose route in its zone", WAIT, || async {
        let mut all_a = true;
        for _ in 0..10 {
            all_a &= http.get(&url, &near).await.ok()?.backend() == Some("a");
        }
        all_a.then_some(())
    })
    .await;
    for _ in 0..20 {
        assert_eq!(http.get(&url, &near).await.unwrap().backend(), Some("a"), "PreferClose keeps the gateway in its zone");
    }

    // 5. A route change moves traffic.
    routes
        .patch(
            "web",
            &PatchParams::apply("router-e2e").force(),
            &Patch::Apply(json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute", "metadata": {"name": "web"},
            "spec": {"hostnames": ["web.e2e.example"], "destinations": [{"vpcServiceRef": {"name": "only-b"}}]}})),
        )
        .await
        .expect("change the route");
    wait_for("traffic on b only", WAIT, || async {
        let mut all_b = true;
        for _ in 0..10 {
            all_b &= http.get(&url, &host).await.ok()?.backend() == Some("b");
        }
        all_b.then_some(())
    })
    .await;

    // 6. An attachment that is not ready loses its endpoints.
    set_status(&attachments, "att-a", json!({"ready": false, "identifier": "1f2e"})).await;
    wait_for("web down to one ready endpoint", WAIT, || async {
        let s = status_of(&services, "web").await?;
        (s["readyEndpoints"] == 1).then_some(())
    })
    .await;

    // 7. A ServiceBinding: a Service, pods whose status the test sets (bound to a node that does not
    // exist, so no kubelet overrides it), endpoints from the pod's attachment.
    let binding = format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: bound}}\nspec: {{selector: {{app: bound}}, ports: [{{port: 80}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: bound-0, labels: {{app: bound}}, annotations: {{k8s.v1alpha.galactic.datumapis.com/vpc-attachment: att-b}}}}\n\
         spec: {{nodeName: router-e2e-no-such-node, containers: [{{name: c, image: registry.invalid/none}}]}}\n---\n\
         apiVersion: v1\nkind: Pod\nmetadata: {{name: bound-1, labels: {{app: bound}}}}\n\
         spec: {{nodeName: router-e2e-no-such-node, containers: [{{name: c, image: registry.invalid/none}}]}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: bound}}\n\
         spec: {{vpcAttachmentRef: {{name: att-b}}, port: {port}, protocol: HTTP}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: ServiceBinding\nmetadata: {{name: bound}}\nspec: {{serviceRef: {{name: bound}}, vpcServiceRef: {{name: bound}}}}\n"
    );
    // Pods are refused until the namespace's default ServiceAccount exists (a race in a new namespace).
    let accounts: Api<k8s_openapi::api::core::v1::ServiceAccount> = Api::namespaced(admin.clone(), ns);
    wait_for("the namespace's default ServiceAccount", WAIT, || async { accounts.get_opt("default").await.ok()?.map(|_| ()) }).await;
    apply_yaml(admin, &binding, Some(ns)).await.expect("binding objects");
    let pods: Api<Pod> = Api::namespaced(admin.clone(), ns);
    pods.patch_status(
        "bound-0",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}})),
    )
    .await
    .expect("pod status");
    let bindings: Api<ServiceBinding> = Api::namespaced(admin.clone(), ns);
    wait_for("the binding synced, the unannotated pod reported", WAIT, || async {
        let s = status_of(&bindings, "bound").await?;
        (s["readyEndpoints"] == 1 && s["unattachedPods"] == json!(["bound-1"]) && condition(Some(&s), "Synced")?.1 == "UnattachedPods")
            .then_some(())
    })
    .await;
    wait_for("the bound VPCService's endpoint from the pod", WAIT, || async {
        let s = status_of(&services, "bound").await?;
        (s["endpoints"][0]["pod"] == "bound-0" && s["readyEndpoints"] == 1).then_some(())
    })
    .await;

    // 8. A VPCIngress listener opens a port for the routes attached to it.
    let ingress = format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCIngress\nmetadata: {{name: public}}\n\
         spec: {{vpcRef: {{name: vpc}}, listeners: [{{name: http, port: {ingress_port}, protocol: HTTP, hostnames: [public.e2e.example]}}]}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: public}}\n\
         spec: {{ingressRefs: [{{name: public}}], destinations: [{{vpcServiceRef: {{name: only-b}}}}]}}\n"
    );
    apply_yaml(admin, &ingress, Some(ns)).await.expect("ingress objects");
    let public = format!("http://127.0.0.1:{ingress_port}/");
    wait_for("the ingress listener serving", WAIT, || async {
        (http.get(&public, &[("host", "public.e2e.example")]).await.ok()?.backend() == Some("b")).then_some(())
    })
    .await;
    let ingresses: Api<DynamicObject> =
        Api::namespaced_with(admin.clone(), ns, &kube::discovery::ApiResource::erase::<router_api::v1alpha1::VPCIngress>(&()));
    wait_for("VPCIngress programmed with one attached route", WAIT, || async {
        let s = status_of(&ingresses, "public").await?;
        (condition(Some(&s), "Programmed")?.0 == "True" && s["listeners"][0]["attachedRoutes"] == 1).then_some(())
    })
    .await;

    // 9. A service off every VPC, through tunnel-gateway: serve as its own ServiceAccount, a
    // connector on loopback, a TunnelBinding; each status field from the manager that owns it.
    let tunnel_ip = loopback_ip(loopback_block(), 250);
    let tunnel_port = free_port();
    let (gw_key, c_key) = (dir.path().join("tunnel-gateway-0.key"), dir.path().join("connector.key"));
    let tunnel_bin = bin.join("tunnel-gateway").display().to_string();
    let (gw_id, c_id) = (endpoint_id(&tunnel_bin, &gw_key), endpoint_id(&tunnel_bin, &c_key));
    let c_addr = std::net::SocketAddr::new([127, 0, 0, 1].into(), free_port());
    let start_connector = |name: &str| {
        let args = ["connect", "--secret-key-file", &c_key.display().to_string(), "--bind", &c_addr.to_string()]
            .into_iter()
            .chain(["--allow-gateway", &gw_id, "--target", &backends[0].addr.to_string()])
            .map(str::to_owned)
            .collect::<Vec<_>>();
        Component::start(&bin.join("tunnel-gateway"), name, &args, &[], dir.path())
    };
    let mut connector = start_connector("connector");
    let mut serve_args = vec!["serve".to_owned()];
    serve_args.extend(arg(&as_sa("tunnel-gateway", None)));
    serve_args.extend(
        [
            "--secret-key-file",
            &gw_key.display().to_string(),
            "--bind",
            &format!("{tunnel_ip}:0"),
            "--listen-address",
            &tunnel_ip.to_string(),
        ]
        .map(str::to_owned),
    );
    let _serve = Component::start(
        &bin.join("tunnel-gateway"),
        "tunnel-serve",
        &serve_args,
        &[("POD_NAME", "tunnel-gateway-0".into()), ("POD_NAMESPACE", "datum-router".into())],
        dir.path(),
    );
    let tunnel = format!(
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata: {{name: att-tunnel, labels: {{app: tunnel}}}}\n\
         spec: {{vpc: {{name: vpc}}, interface: {{name: galactic0, addresses: [{tunnel_ip}/8]}}}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: laptop}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: tunnel}}}}, port: {tunnel_port}, protocol: HTTP}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: TunnelBinding\nmetadata: {{name: laptop}}\n\
         spec: {{vpcServiceRef: {{name: laptop}}, target: {{host: \"{}\", port: {}}}, connectors: [{{endpointId: \"{c_id}\", addresses: [\"{c_addr}\"]}}]}}\n---\n\
         apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: laptop}}\n\
         spec: {{hostnames: [laptop.e2e.example], destinations: [{{vpcServiceRef: {{name: laptop}}}}]}}\n",
        backends[0].addr.ip(),
        backends[0].addr.port()
    );
    apply_yaml(admin, &tunnel, Some(ns)).await.expect("tunnel objects");
    set_status(&attachments, "att-tunnel", json!({"ready": true, "identifier": "1f30"})).await;
    let tunnels: Api<TunnelBinding> = Api::namespaced(admin.clone(), ns);
    wait_for("TunnelBinding Accepted, ResolvedRefs and Ready, with the gateway's id", WAIT, || async {
        let s = status_of(&tunnels, "laptop").await?;
        let ready = condition(Some(&s), "Ready")? == ("True".to_owned(), "ConnectorReachable".to_owned());
        let accepted = condition(Some(&s), "Accepted")?.0 == "True" && condition(Some(&s), "ResolvedRefs")?.0 == "True";
        let ids = s["gatewayEndpointIds"] == json!([gw_id]);
        let connector =
            s["connectors"][0]["endpointId"] == c_id && s["connectors"][0]["reachable"] == true && s["reachableConnectors"] == 1;
        (ready && accepted && ids && connector).then_some(())
    })
    .await;
    let managers: Vec<String> = tunnels
        .get("laptop")
        .await
        .expect("binding")
        .metadata
        .managed_fields
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m.subresource.as_deref() == Some("status"))
        .filter_map(|m| m.manager)
        .collect();
    for manager in ["datum-router-controller", "datum-tunnel-gateway", "datum-tunnel-gateway-tunnel-gateway-0"] {
        assert!(managers.iter().any(|m| m == manager), "status written by {manager}: {managers:?}");
    }
    wait_for("router-gateway serving the tunnel-backed service", WAIT, || async {
        (http.get(&url, &[("host", "laptop.e2e.example")]).await.ok()?.backend() == Some("a")).then_some(())
    })
    .await;
    let second = "apiVersion: router.datum.net/v1alpha1\nkind: TunnelBinding\nmetadata: {name: laptop-too}\n\
         spec: {vpcServiceRef: {name: laptop}, target: {host: 127.0.0.1, port: 1}, connectors: [{endpointId: \"";
    apply_yaml(admin, &format!("{second}{c_id}\"}}]}}\n"), Some(ns)).await.expect("a second binding");
    wait_for("the newer binding for the same VPCService Conflicted, naming the older", WAIT, || async {
        let s = status_of(&tunnels, "laptop-too").await?;
        let c = s["conditions"].as_array()?.iter().find(|c| c["type"] == "Accepted")?.clone();
        (c["reason"] == "Conflicted" && c["message"].as_str()?.contains("laptop")).then_some(())
    })
    .await;
    connector.kill();
    wait_for("Ready=False NoConnectorReachable once the connector is gone", WAIT, || async {
        let s = status_of(&tunnels, "laptop").await?;
        (condition(Some(&s), "Ready")? == ("False".to_owned(), "NoConnectorReachable".to_owned())).then_some(())
    })
    .await;

    // 10. A route that breaks a CEL rule: a server that enforces the rules refuses it with the
    // rule's message; one that does not (1.24 without the gate) stores it, and then the
    // controller reports it Invalid and the gateway does not serve it.
    let broken = "apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {name: broken}\n\
         spec: {hostnames: [broken.e2e.example], hashOn: {header: x-user}, destinations: [{vpcServiceRef: {name: web}}]}\n";
    match apply_yaml(admin, broken, Some(ns)).await {
        Err(e) => assert!(e.contains("hashOn applies only to loadBalancing consistent-hash"), "refused with the rule's message: {e}"),
        Ok(_) => {
            wait_for("the unenforced rule reported Accepted=False Invalid", WAIT, || async {
                let s = status_of(&routes, "broken").await?;
                (condition(Some(&s), "Accepted")? == ("False".to_owned(), "Invalid".to_owned())).then_some(())
            })
            .await;
            let r = http.get(&url, &[("host", "broken.e2e.example")]).await.expect("gateway answers");
            assert_eq!(r.status, 404, "the invalid route is not served");
        }
    }
    for c in &controllers {
        assert!(c.log_text().contains("API server"), "each component logs the API server's version: {}", c.log_text());
    }

    // 11. A deleted VPCService is reported on the route that needs it.
    services.delete("only-b", &DeleteParams::default()).await.expect("delete VPCService");
    wait_for("the route reports the missing VPCService", WAIT, || async {
        let s = status_of(&routes, "web").await?;
        (condition(Some(&s), "ResolvedRefs")? == ("False".to_owned(), "RefNotFound".to_owned())).then_some(())
    })
    .await;

    // 12. The controller leader dies; the other replica takes over and keeps writing.
    let leases: Api<Lease> = Api::namespaced(admin.clone(), "datum-router");
    let holder = |l: Lease| l.spec.and_then(|s| s.holder_identity);
    let leader = wait_for("a controller leader", WAIT, || async { holder(leases.get_opt("router-controller").await.ok()??) }).await;
    let index = controllers.iter().position(|c| c.name == leader).expect("the leader is one of ours");
    controllers[index].kill();
    let survivor = controllers[1 - index].name.clone();
    wait_for("the other replica leading", Duration::from_secs(45), || async {
        (holder(leases.get_opt("router-controller").await.ok()??)? == survivor).then_some(())
    })
    .await;
    let again = format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: only-b-again}}\n\
         spec: {{vpcAttachmentRef: {{name: att-b}}, port: {port}, protocol: HTTP}}\n"
    );
    apply_yaml(admin, &again, Some(ns)).await.expect("a new VPCService");
    wait_for("the new leader accepting a new VPCService", WAIT, || async {
        let s = status_of(&services, "only-b-again").await?;
        (condition(Some(&s), "Accepted")?.0 == "True").then_some(())
    })
    .await;

    // 13. The gateway loses the API server and keeps serving what it has.
    relay.cut();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..10 {
        let r = http.get(&public, &[("host", "public.e2e.example")]).await.expect("served without the API server");
        assert_ne!(r.status, 0);
    }
    assert_eq!(http.get(&url, &host).await.unwrap().status, 500, "the route still points at the deleted service, as last seen");
    assert!(!gateway.log_text().contains("panicked"), "{}", gateway.log_text());
}
