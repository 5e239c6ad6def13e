//! Helpers of the end-to-end tests against a real API server: apply YAML
//! the way `kubectl apply --server-side` does, kubeconfigs that impersonate a
//! ServiceAccount, the control-plane binaries as child processes, a TCP relay
//! in front of the API server that a test can cut, and waiting for a
//! condition.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use kube::{
    Api, Client, ResourceExt,
    api::{DeleteParams, DynamicObject, Patch, PatchParams},
    config::Kubeconfig,
    core::GroupVersionKind,
    discovery::{ApiCapabilities, ApiResource, Scope},
};
use tokio::{net::TcpListener, sync::Notify};

/// The field manager of everything the tests apply.
pub const MANAGER: &str = "router-e2e";

/// The kubeconfig of an empty cluster with admin rights, if the tests should run.
pub fn e2e_kubeconfig() -> Option<PathBuf> {
    std::env::var_os("ROUTER_E2E_KUBECONFIG").map(PathBuf::from)
}

async fn resolve(client: &Client, obj: &DynamicObject) -> Result<(ApiResource, ApiCapabilities), String> {
    let types = obj.types.as_ref().ok_or("object without apiVersion/kind")?;
    let gvk = GroupVersionKind::try_from(types).map_err(|e| e.to_string())?;
    kube::discovery::pinned_kind(client, &gvk).await.map_err(|e| format!("{}/{}: {e}", types.api_version, types.kind))
}

fn api_for(client: &Client, resource: &ApiResource, caps: &ApiCapabilities, namespace: Option<&str>) -> Api<DynamicObject> {
    match (caps.scope.clone(), namespace) {
        (Scope::Namespaced, Some(ns)) => Api::namespaced_with(client.clone(), ns, resource),
        (Scope::Namespaced, None) => Api::default_namespaced_with(client.clone(), resource),
        (Scope::Cluster, _) => Api::all_with(client.clone(), resource),
    }
}

/// Server-side applies every document of `yaml`; objects without a namespace land in `namespace` (if namespaced).
pub async fn apply_yaml(client: &Client, yaml: &str, namespace: Option<&str>) -> Result<Vec<DynamicObject>, String> {
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(yaml).map_err(|e| e.to_string())?;
    let mut applied = Vec::new();
    for doc in docs.into_iter().filter(|d| !d.is_null()) {
        let obj: DynamicObject = serde_json::from_value(doc).map_err(|e| e.to_string())?;
        let (resource, caps) = resolve(client, &obj).await?;
        let ns = obj.metadata.namespace.clone().or_else(|| namespace.map(str::to_owned));
        let api = api_for(client, &resource, &caps, ns.as_deref());
        let name = obj.name_any();
        let out =
            api.patch(&name, &PatchParams::apply(MANAGER).force(), &Patch::Apply(&obj)).await.map_err(|e| format!("apply {name}: {e}"))?;
        applied.push(out);
    }
    Ok(applied)
}

/// Applies every YAML file of `dir`.
pub async fn apply_dir(client: &Client, dir: &Path) -> Result<Vec<DynamicObject>, String> {
    let mut all = Vec::new();
    for file in crate::yaml_files(dir) {
        let text = std::fs::read_to_string(&file).map_err(|e| e.to_string())?;
        all.extend(apply_yaml(client, &text, None).await.map_err(|e| format!("{}: {e}", file.display()))?);
    }
    Ok(all)
}

/// Deletes what `apply_*` created (ignoring what is already gone).
pub async fn delete_all(client: &Client, objects: &[DynamicObject]) {
    for obj in objects.iter().rev() {
        if let Ok((resource, caps)) = resolve(client, obj).await {
            let api = api_for(client, &resource, &caps, obj.metadata.namespace.as_deref());
            let _ = api.delete(&obj.name_any(), &DeleteParams::background()).await;
        }
    }
}

/// A copy of the admin kubeconfig that impersonates `user` (a ServiceAccount's
/// `system:serviceaccount:<ns>:<name>`), optionally pointed at another server address.
pub fn impersonating_kubeconfig(admin: &Path, user: &str, server: Option<SocketAddr>, out: &Path) -> Result<(), String> {
    let mut config = Kubeconfig::read_from(admin).map_err(|e| e.to_string())?;
    for auth in &mut config.auth_infos {
        if let Some(info) = auth.auth_info.as_mut() {
            info.impersonate = Some(user.to_owned());
        }
    }
    if let Some(addr) = server {
        for cluster in config.clusters.iter_mut().filter_map(|c| c.cluster.as_mut()) {
            let original = cluster.server.clone().unwrap_or_default();
            let host = original.split("://").nth(1).and_then(|rest| rest.split([':', '/']).next()).unwrap_or_default().to_owned();
            cluster.server = Some(format!("https://{addr}"));
            // The certificate still names the real server.
            cluster.tls_server_name.get_or_insert(host);
        }
    }
    // JSON is YAML: kube reads it back as a kubeconfig.
    std::fs::write(out, serde_json::to_vec(&config).map_err(|e| e.to_string())?).map_err(|e| e.to_string())
}

/// The API server's address (host:port) from a kubeconfig's current cluster.
pub fn server_addr(kubeconfig: &Path) -> Result<String, String> {
    let config = Kubeconfig::read_from(kubeconfig).map_err(|e| e.to_string())?;
    let context = config.current_context.clone().unwrap_or_default();
    let cluster_name = config.contexts.iter().find(|c| c.name == context).and_then(|c| c.context.as_ref()).map(|c| c.cluster.clone());
    let cluster = config
        .clusters
        .iter()
        .find(|c| Some(&c.name) == cluster_name.as_ref())
        .or(config.clusters.first())
        .and_then(|c| c.cluster.as_ref())
        .ok_or("no cluster in the kubeconfig")?;
    let server = cluster.server.clone().ok_or("the cluster has no server")?;
    let authority = server.split("://").nth(1).unwrap_or(&server).split('/').next().unwrap_or_default().to_owned();
    Ok(if authority.contains(':') { authority } else { format!("{authority}:443") })
}

/// A TCP relay to the API server that a test can cut: connections through it stop, new ones are refused.
pub struct Relay {
    pub addr: SocketAddr,
    cut: Arc<Notify>,
}

impl Relay {
    pub async fn start(upstream: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("bound");
        let cut = Arc::new(Notify::new());
        let cut_c = cut.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((mut client, _)) = accepted else { continue };
                        let (upstream, cut) = (upstream.clone(), cut_c.clone());
                        tokio::spawn(async move {
                            let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else { return };
                            tokio::select! {
                                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                                () = cut.notified() => {}
                            }
                        });
                    }
                    () = cut_c.notified() => return,
                }
            }
        });
        Self { addr, cut }
    }

    /// Closes the listener and every relayed connection.
    pub fn cut(&self) {
        self.cut.notify_waiters();
    }
}

/// A control-plane binary running as a child process; killed when dropped.
pub struct Component {
    pub name: String,
    pub admin: SocketAddr,
    child: Child,
    pub log: PathBuf,
}

impl Component {
    /// Starts `binary` with `args` and `env`, logging to `<dir>/<name>.log`.
    pub fn start(binary: &Path, name: &str, args: &[String], env: &[(&str, String)], dir: &Path) -> Self {
        let admin: SocketAddr = ([127, 0, 0, 1], crate::gateway::free_port()).into();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(binary)
            .args(args)
            .env("ROUTER_ADMIN_ADDR", admin.to_string())
            .env("RUST_LOG", "info")
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
        Self { name: name.to_owned(), admin, child, log }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The sum of the samples of `/metrics` whose lines start with `prefix` (0 when the admin port does not answer).
    pub async fn metric_sum(&self, prefix: &str) -> u64 {
        let text = crate::client::Client::http1().get(&format!("http://{}/metrics", self.admin), &[]).await.map(|r| r.body);
        crate::sample_sum(&text.unwrap_or_default(), prefix)
    }

    /// Resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        crate::gateway::rss_kib(self.child.id())
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Builds the control-plane binaries and returns the directory they are in:
/// a debug build, or the cargo profile `ROUTER_E2E_PROFILE` names (`release`
/// for measurements that mean something).
pub fn build_binaries() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let profile = std::env::var("ROUTER_E2E_PROFILE").unwrap_or_else(|_| "dev".to_owned());
    let status = Command::new(cargo)
        .current_dir(crate::workspace_root())
        .args(["build", "--profile", &profile])
        .args(["-p", "router-controller", "-p", "service-discovery", "-p", "router-gateway", "-p", "tunnel-gateway"])
        .status()
        .expect("cargo build");
    assert!(status.success(), "building the binaries failed");
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| crate::workspace_root().join("target"));
    target.join(if profile == "dev" { "debug" } else { &profile })
}

/// Applies what a user applies before the components start — the Galactic
/// CRDs, ours, the Location stand-in and the RBAC manifests — waits until the
/// API server serves them, and creates namespace `ns`. What was applied is
/// added to `created` as it goes (for [`delete_all`], even after a failure).
pub async fn install(admin: &Client, ns: &str, created: &mut Vec<DynamicObject>) {
    for crd in ["galactic.datumapis.com_vpcs.yaml", "galactic.datumapis.com_vpcattachments.yaml"] {
        let text = std::fs::read_to_string(crate::shared_dir().join("fixtures/galactic").join(crd)).expect("Galactic CRD");
        created.extend(apply_yaml(admin, &text, None).await.expect("apply Galactic CRDs"));
    }
    let root = crate::workspace_root();
    created.extend(apply_dir(admin, &root.join("manifests/crds")).await.expect("apply CRDs"));
    created.extend(apply_dir(admin, &root.join("tests/fixtures/datum")).await.expect("apply the Location CRD"));
    created.extend(apply_dir(admin, &root.join("manifests/rbac")).await.expect("apply RBAC"));
    wait_for("the CRDs established", Duration::from_secs(60), || async {
        let router = Api::<router_api::v1alpha1::VPCService>::all(admin.clone()).list(&Default::default()).await.is_ok();
        let galactic = Api::<DynamicObject>::all_with(admin.clone(), &ApiResource::erase::<router_api::galactic::VPCAttachment>(&()))
            .list(&Default::default())
            .await
            .is_ok();
        (router && galactic).then_some(())
    })
    .await;
    let namespace: k8s_openapi::api::core::v1::Namespace =
        serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})).expect("namespace");
    Api::all(admin.clone()).create(&kube::api::PostParams::default(), &namespace).await.expect("test namespace");
}

/// Polls `check` until it returns Some, or panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match wait_for_opt(timeout, check).await {
        Some(v) => v,
        None => panic!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A kubeconfig whose API server refuses every connection (port 1 on loopback).
pub fn unreachable_kubeconfig(dir: &Path) -> PathBuf {
    let path = dir.join("unreachable.kubeconfig");
    std::fs::write(
        &path,
        "apiVersion: v1\nkind: Config\nclusters: [{name: dead, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: dead, user: u}}]\ncurrent-context: c\n",
    )
    .expect("write kubeconfig");
    path
}

/// Starts `binary` against an unreachable API server and checks what an
/// operator would see: alive, not ready, every watch counted as restarting
/// (at least `watches` series under `restarts_metric`), still running.
pub async fn check_survives_unreachable_api(binary: &Path, args: &[&str], restarts_metric: &str, watches: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let mut all_args = vec!["--kubeconfig".to_owned(), kubeconfig.display().to_string()];
    all_args.extend(args.iter().map(|a| (*a).to_owned()));
    let mut c = Component::start(binary, "component", &all_args, &[("TOKIO_WORKER_THREADS", "1".to_owned())], dir.path());
    let http = crate::client::Client::http1();
    let url = |p: &str| format!("http://{}{p}", c.admin);
    let found = wait_for_opt(Duration::from_secs(20), || async {
        let m = http.get(&url("/metrics"), &[]).await.ok()?;
        (m.body.lines().filter(|l| l.starts_with(restarts_metric)).count() >= watches).then_some(())
    })
    .await;
    assert!(found.is_some(), "every watch reports its failures; log:\n{}", c.log_text());
    assert_eq!(http.get(&url("/healthz"), &[]).await.expect("admin answers").status, 200);
    assert_eq!(http.get(&url("/readyz"), &[]).await.expect("admin answers").status, 503, "not ready without a first sync");
    assert!(c.child.try_wait().expect("process state").is_none(), "still running; log:\n{}", c.log_text());
    c.kill();
}

/// Polls `check` until it returns Some, or gives None after `timeout`.
pub async fn wait_for_opt<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(v) = check().await {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}
