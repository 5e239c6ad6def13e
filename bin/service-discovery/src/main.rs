//! service-discovery: walks Galactic VPCs and VPCAttachments and writes the
//! endpoints each VPCService resolves to.
//!
//! Not implemented yet (issue 6): the flags below are the interface it will
//! have; running it says so and exits non-zero rather than pretending to work.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;

/// Datum Router service discovery — NOT YET IMPLEMENTED: exits with status 2.
///
/// Will resolve VPCService endpoints from Galactic VPCs and VPCAttachments
/// and write them to VPCService status, with leader election across replicas.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Kubeconfig to use; in-cluster configuration when unset.
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Seconds between full walks of VPCs and attachments (watches react in between).
    #[arg(long, env = "DISCOVERY_INTERVAL_SECS", default_value_t = 30)]
    discovery_interval_secs: u64,
    /// Most endpoints written to one VPCService's status.
    #[arg(long, env = "DISCOVERY_MAX_ENDPOINTS", default_value_t = 1000)]
    max_endpoints: usize,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Log filter (tracing-subscriber EnvFilter syntax).
    #[arg(long, env = "RUST_LOG", default_value = "info")]
    log: String,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("service-discovery: not yet implemented (tracked as the control-plane issue); no endpoints were resolved");
    ExitCode::from(2)
}
