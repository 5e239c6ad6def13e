//! router-controller: reconciles VPCService, VPCRoute, ServiceBinding,
//! VPCIngress and VPCEgress and writes their conditions.
//!
//! Not implemented yet (issue 6): the flags below are the interface it will
//! have; running it says so and exits non-zero rather than pretending to work.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;

/// Datum Router controller — NOT YET IMPLEMENTED: exits with status 2.
///
/// Will reconcile router.datum.net/v1alpha1 objects, resolve their references
/// and write conditions, with leader election across replicas.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kubeconfig to use; in-cluster configuration when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Namespace of the leader-election Lease.
    #[arg(long, env = "POD_NAMESPACE", default_value = "datum-router")]
    lease_namespace: String,
    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("router-controller: not yet implemented (tracked as the control-plane issue); nothing was reconciled");
    ExitCode::from(2)
}
