//! Kubernetes plumbing shared by router-controller, service-discovery and
//! router-gateway's cluster mode.
//!
//! * [`connect`]: a client from `--kubeconfig`/`KUBECONFIG` or the in-cluster configuration.
//! * [`cache`]: reflector-backed caches that say when they first synced and wake a consumer on every change.
//! * [`lease`]: leader election on a `coordination.k8s.io` Lease.
//! * [`status`]: server-side apply of a status, with a field manager per component.
//! * [`status_queue`]: the coalescing, rate-limited, retrying queue status writes go through.
//! * [`admin`]: `/metrics`, `/healthz` and `/readyz` on their own port.
//! * [`shutdown`]: SIGTERM and SIGINT as a watch channel.
//! * [`writer`]: the election-driven loop router-controller and service-discovery run their passes in.
#![forbid(unsafe_code)]

pub mod admin;
pub mod cache;
pub mod lease;
pub mod metrics;
pub mod node;
pub mod shutdown;
pub mod status;
pub mod status_queue;
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
    let client = Client::try_from(config)?;
    // Off the start-up path: an API server that is away must not delay the component.
    tokio::spawn(log_server_version(client.clone()));
    Ok(client)
}

/// The oldest Kubernetes release the manifests and components are made for
/// (the README's "Supported Kubernetes versions" says what differs on it).
pub const OLDEST_SUPPORTED: (u32, u32) = (1, 24);

/// Logs the API server's version, and warns when it is older than [`OLDEST_SUPPORTED`].
async fn log_server_version(client: Client) {
    match client.apiserver_version().await {
        Ok(info) => match older_than_supported(&info.major, &info.minor) {
            Some(true) => tracing::warn!(
                version = %info.git_version,
                "the API server is older than Kubernetes {}.{}: the CRDs need apiextensions.k8s.io/v1 with structural schemas, \
                 server-side apply of status and policy/v1, which older releases lack; this release is not supported",
                OLDEST_SUPPORTED.0,
                OLDEST_SUPPORTED.1
            ),
            Some(false) => tracing::info!(version = %info.git_version, "API server"),
            None => {
                tracing::info!(version = %info.git_version, major = %info.major, minor = %info.minor, "API server (version not understood)")
            }
        },
        Err(e) => tracing::warn!(error = %e, "could not read the API server's version"),
    }
}

/// Whether `major.minor` (as `/version` reports them: providers add a `+`, as in "24+") is
/// older than [`OLDEST_SUPPORTED`]; None when they are not numbers.
fn older_than_supported(major: &str, minor: &str) -> Option<bool> {
    let number = |s: &str| s.trim_end_matches(|c: char| !c.is_ascii_digit()).parse::<u32>().ok();
    Some((number(major)?, number(minor)?) < OLDEST_SUPPORTED)
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

#[cfg(test)]
mod tests {
    use super::older_than_supported;

    #[test]
    fn server_versions_older_than_1_24_are_told_apart_with_provider_suffixes() {
        assert_eq!(older_than_supported("1", "23"), Some(true));
        assert_eq!(older_than_supported("1", "24"), Some(false));
        assert_eq!(older_than_supported("1", "24+"), Some(false));
        assert_eq!(older_than_supported("1", "22+"), Some(true));
        assert_eq!(older_than_supported("1", "34"), Some(false));
        assert_eq!(older_than_supported("2", "0"), Some(false));
        assert_eq!(older_than_supported("", ""), None);
    }
}
