//! Helpers shared by the workspace's tests: where the fixtures are, real
//! backends on 127.0.0.x, a gateway process started from its binary, and a
//! small HTTP client. Nothing here fakes the gateway or its peers.
#![forbid(unsafe_code)]

pub mod backend;
pub mod client;
pub mod cluster;
pub mod fleet;
pub mod gateway;
pub mod grpc;
pub mod h2frames;
pub mod otlp;
pub mod probe;
pub mod tls;
pub mod tunnel;

use std::path::{Path, PathBuf};

/// The sum of every sample in Prometheus text `metrics` whose line starts
/// with `prefix` (a metric name and leading labels).
pub fn sample_sum(metrics: &str, prefix: &str) -> u64 {
    metrics.lines().filter(|l| l.starts_with(prefix)).filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok()).map(|v| v as u64).sum()
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ lives in the workspace").to_path_buf()
}

/// The project's `shared/` folder (design docs and fixtures), beside the
/// checkout unless `ROUTER_SHARED_DIR` says otherwise. Tests that read it fail
/// loudly when it is missing: the fixtures are promises, not optional extras.
pub fn shared_dir() -> PathBuf {
    let dir = std::env::var_os("ROUTER_SHARED_DIR").map(PathBuf::from).unwrap_or_else(|| workspace_root().join("../shared"));
    assert!(dir.join("fixtures").is_dir(), "shared fixtures not found at {} (set ROUTER_SHARED_DIR)", dir.display());
    dir
}

/// Every `*.yaml` file directly inside `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    files
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after 10 s.
pub async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::time::Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
