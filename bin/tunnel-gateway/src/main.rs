//! tunnel-gateway: carries services that are not on a VPC over Iroh P2P tunnels.
//!
//! Not implemented yet: no issue schedules it. Running it says so and exits
//! non-zero rather than pretending to work.

use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

use clap::Parser;

/// Datum Router tunnel gateway — NOT YET IMPLEMENTED: exits with status 2.
///
/// Will expose services that are not on a Galactic VPC through Iroh P2P tunnels.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// File holding the tunnel endpoint's secret key.
    #[arg(long, env = "TUNNEL_SECRET_KEY_FILE")]
    secret_key_file: Option<PathBuf>,
    /// Admin listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
}

fn main() -> ExitCode {
    let _args = Args::parse();
    eprintln!("tunnel-gateway: not yet implemented; no tunnel was opened");
    ExitCode::from(2)
}
