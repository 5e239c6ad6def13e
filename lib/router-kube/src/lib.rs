//! Kubernetes plumbing shared by router-controller, service-discovery and
//! router-gateway's cluster mode.
//!
//! * [`connect`]: a client from `--kubeconfig`/`KUBECONFIG` or the in-cluster configuration.
//! * [`cache`]: reflector-backed caches that say when they first synced and wake a consumer on every change.
//! * [`lease`]: leader election on a `coordination.k8s.io` Lease.
//! * [`status`]: server-side apply of a status, with a field manager per component.
//! * [`admin`]: `/metrics`, `/healthz` and `/readyz` on their own port.
//! * [`shutdown`]: SIGTERM and SIGINT as a watch channel.
//! * [`writer`]: the election-driven loop router-controller and service-discovery run their passes in.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod lease;
pub mod metrics;
pub mod shutdown;
pub mod status;
pub mod writer;

use std::path::Path;

use kube::{Client, Config, config::KubeConfigOptions};

/// Why no client could be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("reading kubeconfig {path}: {source}")]
    Kubeconfig { path: String, source: kube::config::KubeconfigError },
    #[error("no Kubernetes configuration: {0}")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("building the Kubernetes client: {0}")]
    Client(#[from] kube::Error),
}

/// A client from the kubeconfig at `path` (its current context), or, without
/// one, the usual inference (`KUBECONFIG`, `~/.kube/config`, in-cluster).
pub async fn connect(path: Option<&Path>) -> Result<Client, ConnectError> {
    let config = match path {
        Some(p) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(p)
                .map_err(|source| ConnectError::Kubeconfig { path: p.display().to_string(), source })?;
            Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|source| ConnectError::Kubeconfig { path: p.display().to_string(), source })?
        }
        None => Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Diagnostic logs on stderr, `text` or `json`, filtered by `RUST_LOG` (default `info`).
pub fn init_logging(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}
