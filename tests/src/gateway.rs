//! The real `router-gateway` binary as a child process, configured with YAML
//! written to a temporary directory, plus builders for that YAML.

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant},
};

use tempfile::TempDir;

use crate::client::Client;

pub struct GatewayProcess {
    child: Child,
    pub addr: SocketAddr,
    pub admin: SocketAddr,
    dir: TempDir,
    stdout: Arc<Mutex<Vec<String>>>,
}

/// A port free on 127.0.0.1, for a child process to bind later.
///
/// Taken below the kernel's ephemeral range: a port from `bind(:0)` could be
/// handed again to any other socket (a backend, an outgoing connection) before
/// the child binds it, which made parallel tests meet each other's listeners.
/// Ports down here are given only by this counter, spread by process id so
/// test binaries run one after another do not start on the same ones.
pub fn free_port() -> u16 {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|&h| h > LOW + 1_000)
        .unwrap_or(32_768);
    let span = high - LOW;
    let start = std::process::id().wrapping_mul(997) % span;
    for _ in 0..span {
        let port = u16::try_from(LOW + (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span).expect("below 65536");
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{high}");
}

impl GatewayProcess {
    /// Starts `bin` on `config` (written as config.yaml) and waits until /readyz answers 200.
    pub async fn start(bin: &str, config: &str, extra_args: &[&str]) -> Self {
        Self::start_with_env(bin, config, extra_args, &[]).await
    }

    /// As [`Self::start`], with extra environment variables.
    pub async fn start_with_env(bin: &str, config: &str, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("config.yaml"), config).expect("write config");
        let addr: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let admin: SocketAddr = ([127, 0, 0, 1], free_port()).into();
        let stderr = std::fs::File::create(dir.path().join("gateway.log")).expect("log file");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(dir.path())
            .arg("--listen")
            .arg(addr.to_string())
            .arg("--admin-addr")
            .arg(admin.to_string())
            .args(extra_args)
            .env("RUST_LOG", "info,router_proxy=debug")
            .env("TOKIO_WORKER_THREADS", "1")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("start router-gateway");
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let pipe = child.stdout.take().expect("piped stdout");
        let lines = stdout.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                lines.lock().expect("not poisoned").push(line);
            }
        });
        let gw = Self { child, addr, admin, dir, stdout };
        gw.wait_ready().await;
        gw
    }

    async fn wait_ready(&self) {
        let client = Client::http1();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(r) = client.get(&self.admin_url("/readyz"), &[]).await
                && r.status == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("router-gateway did not become ready; its log:\n{}", self.log());
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.admin)
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        Client::http1().get(&self.admin_url("/metrics"), &[]).await.expect("admin port answers").body
    }

    /// The sum of every sample whose line starts with `prefix` (a metric name and leading labels).
    pub async fn metric_sum(&self, prefix: &str) -> u64 {
        crate::sample_sum(&self.metrics().await, prefix)
    }

    /// Replaces the configuration the way an editor or kubectl-cp would: write aside, rename.
    pub fn write_config(&self, config: &str) {
        let tmp = self.dir.path().join(".config.yaml.tmp");
        std::fs::write(&tmp, config).expect("write config");
        std::fs::rename(&tmp, self.config_path()).expect("rename config");
    }

    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("config.yaml")
    }

    /// The diagnostic log so far (stderr).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    /// Access log lines so far (stdout).
    pub fn access_log(&self) -> Vec<String> {
        self.stdout.lock().expect("not poisoned").clone()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The gateway's resident memory now, in KiB.
    pub fn rss_kib(&self) -> u64 {
        rss_kib(self.pid())
    }

    /// CPU time the gateway has used so far (user + system), in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are the 12th and 13th of them.
        let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
        let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
        ticks as f64 / 100.0
    }

    /// Sends SIGTERM (graceful drain).
    pub fn terminate(&self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
    }

    /// Waits for the process to exit; returns its exit code.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's resident memory (VmRSS) in KiB; 0 once it is gone.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok()).unwrap_or(0)
}

/// A ready VPC with an identifier.
pub fn vpc(name: &str) -> String {
    format!(
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPC\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{networks: [127.0.0.0/8]}}\nstatus: {{ready: true, identifier: 0a1b2c3d4e5f}}\n---\n"
    )
}

/// An attachment of `vpc` with one interface address per IP, labelled app=<label>.
pub fn attachment(name: &str, vpc: &str, ips: &[IpAddr], ready: bool, label: &str) -> String {
    let addrs: Vec<String> = ips.iter().map(|ip| format!("{ip}/8")).collect();
    format!(
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata: {{name: {name}, namespace: default, labels: {{app: {label}}}}}\n\
         spec: {{vpc: {{name: {vpc}}}, interface: {{name: galactic0, addresses: [{}]}}}}\nstatus: {{ready: {ready}, identifier: 1f2e}}\n---\n",
        addrs.join(", ")
    )
}

/// A VPCService over every attachment labelled app=<label>.
pub fn service(name: &str, label: &str, port: u16, protocol: &str) -> String {
    format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: {label}}}}}, port: {port}, protocol: {protocol}, addressFamily: IPv4}}\n---\n"
    )
}

/// A VPCRoute with the given spec (YAML flow or block, indented by the caller).
pub fn route(name: &str, spec: &str) -> String {
    format!("apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n{spec}\n---\n")
}

/// VPC + one attachment per backend (all labelled `label`) + a VPCService `service_name` over them.
pub fn service_on(service_name: &str, label: &str, backends: &[&crate::backend::Backend], protocol: &str) -> String {
    let mut out = vpc(&format!("{service_name}-vpc"));
    for b in backends {
        out += &attachment(&format!("{service_name}-{}", b.name), &format!("{service_name}-vpc"), &[b.addr.ip()], true, label);
    }
    out + &service(service_name, label, backends[0].addr.port(), protocol)
}
