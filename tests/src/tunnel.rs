//! The real `tunnel-gateway` binary as child processes (`connect` next to an
//! origin, `serve` on a VPC address), for end-to-end tests through the tunnel.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use crate::{client::Client, gateway::free_port};

/// A running `tunnel-gateway` process; killed when dropped.
pub struct TunnelProcess {
    child: Child,
    pub admin: SocketAddr,
    log: PathBuf,
}

impl TunnelProcess {
    /// Runs `bin <args> --admin-addr <free port>`, logging into `dir`, and waits for `/readyz`.
    pub async fn start(bin: &str, name: &str, args: &[String], dir: &Path) -> Self {
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let log = dir.join(format!("{name}.log"));
        let child = Command::new(bin)
            .args(args)
            .arg("--admin-addr")
            .arg(admin.to_string())
            .env("RUST_LOG", "info,router_tunnel=debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start tunnel-gateway");
        let p = Self { child, admin, log };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if Client::http1().get(&p.admin_url("/readyz"), &[]).await.is_ok_and(|r| r.status == 200) {
                return p;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tunnel-gateway {name} did not become ready; its log:\n{}", p.log());
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// What `/config` says (serve only).
    pub async fn config(&self) -> serde_json::Value {
        Client::http1().get(&self.admin_url("/config"), &[]).await.expect("admin answers").json()
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        Client::http1().get(&self.admin_url("/metrics"), &[]).await.expect("admin answers").body
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the process at once (SIGKILL): a connector that vanishes.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for TunnelProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `tunnel-gateway id`: creates the key file if needed and returns the endpoint id.
pub fn endpoint_id(bin: &str, key: &Path) -> String {
    let out = Command::new(bin).args(["id", "--secret-key-file"]).arg(key).output().expect("run tunnel-gateway id");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A TunnelBinding for `service` with these connectors (`id`, `ip:port`).
pub fn tunnel_binding(name: &str, service: &str, target: SocketAddr, connectors: &[(String, SocketAddr)]) -> String {
    let list: Vec<String> = connectors.iter().map(|(id, addr)| format!("{{endpointId: \"{id}\", addresses: [\"{addr}\"]}}")).collect();
    format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: TunnelBinding\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{vpcServiceRef: {{name: {service}}}, target: {{host: \"{}\", port: {}}}, connectors: [{}]}}\n---\n",
        target.ip(),
        target.port(),
        list.join(", ")
    )
}
