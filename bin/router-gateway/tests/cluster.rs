//! Cluster mode without a reachable API server: the gateway starts, says it
//! is alive but not ready (it has nothing to serve until a first full sync),
//! counts its failing watches, and keeps trying. The end-to-end tests under
//! tests/ cover cluster mode against a real API server.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use router_tests::{client::Client, gateway::free_port};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn without_an_api_server_the_gateway_is_alive_not_ready_and_keeps_retrying() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    // Port 1 on loopback: nothing listens there, every request is refused at once.
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: dead, cluster: {server: \"https://127.0.0.1:1\"}}]\n\
         users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: dead, user: u}}]\ncurrent-context: c\n",
    )
    .unwrap();
    let (listen, admin) = (free_port(), free_port());
    let mut child = Command::new(BIN)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{listen}"), "--admin-addr", &format!("127.0.0.1:{admin}")])
        .env("TOKIO_WORKER_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let client = Client::http1();
    let url = |path: &str| format!("http://127.0.0.1:{admin}{path}");
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut restarts = 0;
    while Instant::now() < deadline {
        if let Ok(m) = client.get(&url("/metrics"), &[]).await {
            restarts = m.body.lines().filter(|l| l.starts_with("datum_router_watch_restarts_total")).count();
            if restarts >= 5 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(restarts >= 5, "every watched kind reports its failing watch");
    assert_eq!(client.get(&url("/healthz"), &[]).await.unwrap().status, 200);
    assert_eq!(client.get(&url("/readyz"), &[]).await.unwrap().status, 503, "not ready before a first sync");
    assert!(child.try_wait().unwrap().is_none(), "still running");
    let _ = child.kill();
    let _ = child.wait();
}
