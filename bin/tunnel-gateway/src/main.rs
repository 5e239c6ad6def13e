//! tunnel-gateway: carries services that are not on a VPC over Iroh tunnels.
//!
//! `serve` runs in the cluster as an ordinary VPC member (a StatefulSet, each
//! replica its own key) and listens on a tunnel-backed VPCService's port;
//! `connect` runs next to the off-VPC service; `id` makes or reads a key and
//! prints the endpoint id. The tunnel itself is `router-tunnel`; this binary
//! wires flags, configuration sources and the admin port.

mod admin;
mod cluster;
mod standalone;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
};

use clap::{Args, Parser, Subcommand};
use router_tunnel::{
    ALPN, connect,
    connector::{self, ConnectorPolicy},
    endpoint::{self, Endpoint, EndpointSettings},
    key,
    metrics::TunnelMetrics,
    serve::Tunnels,
};

/// Datum Router tunnel gateway: services that are not on a VPC, over Iroh tunnels.
#[derive(Parser, Debug)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Diagnostic log format on stderr: text or json (filter with RUST_LOG).
    #[arg(long, env = "ROUTER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"], global = true)]
    log_format: String,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Prints the endpoint id of a key file, creating the file (32 random bytes, mode 0600) if there is none.
    Id {
        /// The secret key file.
        #[arg(long, env = "TUNNEL_SECRET_KEY_FILE")]
        secret_key_file: PathBuf,
    },
    /// Runs next to an off-VPC service: serves tunnels to the allowed gateways, for the listed targets.
    Connect(ConnectArgs),
    /// Runs in the cluster: listens on each tunnel-backed VPCService's port and carries connections to connectors.
    Serve(ServeArgs),
}

/// What both tunnel ends take.
#[derive(Args, Debug)]
struct EndpointArgs {
    /// The secret key file (created if missing; a malformed one is an error, never overwritten).
    #[arg(long, env = "TUNNEL_SECRET_KEY_FILE")]
    secret_key_file: PathBuf,
    /// UDP address of the QUIC endpoint.
    #[arg(long, env = "TUNNEL_BIND_ADDR", default_value = "0.0.0.0:7842")]
    bind: SocketAddr,
    /// Relay servers (repeat or comma-separate); none disables relays, so only direct addresses are used.
    #[arg(long = "relay-url", env = "TUNNEL_RELAY_URLS", value_delimiter = ',')]
    relay_urls: Vec<String>,
    /// Admin listener for /metrics, /healthz and /readyz (and /config on serve).
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
}

#[derive(Args, Debug)]
struct ConnectArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Endpoint ids of the gateways allowed to connect (repeat or comma-separate): the
    /// `gatewayEndpointIds` of the TunnelBinding. Any other peer is refused after the handshake.
    #[arg(long = "allow-gateway", env = "TUNNEL_ALLOW_GATEWAYS", value_delimiter = ',', required = true)]
    allow_gateways: Vec<String>,
    /// `host:port` targets a gateway may ask for (repeat or comma-separate); others are answered 403.
    #[arg(long = "target", env = "TUNNEL_TARGETS", value_delimiter = ',', required = true)]
    targets: Vec<String>,
}

#[derive(Args, Debug)]
struct ServeArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Standalone mode: a YAML file or directory (TunnelBinding, VPCService, …), reloaded on change.
    #[arg(long, env = "ROUTER_CONFIG", conflicts_with = "kubeconfig")]
    config: Option<PathBuf>,
    /// Cluster mode (no --config): the kubeconfig; the usual inference when unset.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// This replica's VPC address: each tunnel-backed VPCService's port is opened on it.
    #[arg(long, env = "ROUTER_TUNNEL_LISTEN_ADDR")]
    listen_address: IpAddr,
    /// Namespace of the leader-election Lease (cluster mode).
    #[arg(long, env = "POD_NAMESPACE", default_value = "datum-router")]
    lease_namespace: String,
    /// This replica's identity in the Lease and in its field manager (the pod name).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    router_kube::init_logging(&cli.log_format);
    let result = match cli.command {
        Command::Id { secret_key_file } => key::load_or_create(&secret_key_file).map(|k| println!("{}", k.public())).map_err(Into::into),
        Command::Connect(args) => connect(args).await,
        Command::Serve(args) => serve(args).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tunnel-gateway: {e}");
            ExitCode::FAILURE
        }
    }
}

type Failure = Box<dyn std::error::Error>;

async fn bind(args: &EndpointArgs, alpns: Vec<Vec<u8>>) -> Result<Endpoint, Failure> {
    let secret_key = key::load_or_create(&args.secret_key_file)?;
    let relay_urls = endpoint::parse_relay_urls(&args.relay_urls)?;
    let ep = endpoint::bind(EndpointSettings { secret_key, bind: args.bind, relay_urls, alpns }).await?;
    tracing::info!(endpoint_id = %ep.id(), sockets = ?ep.bound_sockets(), relays = args.relay_urls.len(), "endpoint bound");
    Ok(ep)
}

async fn connect(args: ConnectArgs) -> Result<(), Failure> {
    let gateways = args.allow_gateways.iter().map(|g| key::parse_endpoint_id(g)).collect::<Result<Vec<_>, _>>()?;
    for t in &args.targets {
        if !connect::is_authority(t) {
            return Err(format!("--target {t:?} is not host:port").into());
        }
    }
    let metrics = Arc::new(TunnelMetrics::new());
    let ep = bind(&args.endpoint, vec![ALPN.to_vec()]).await?;
    let ready = admin::start(args.endpoint.admin_addr, metrics.clone(), None).await?;
    ready.set(true);
    tracing::info!(gateways = gateways.len(), targets = ?args.targets, "connector serving");
    let policy = Arc::new(ConnectorPolicy::new(gateways, args.targets));
    tokio::select! {
        () = connector::run(ep.clone(), policy, metrics) => {}
        () = router_kube::shutdown::signal() => tracing::info!("stopping"),
    }
    ep.close().await;
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<(), Failure> {
    let metrics = Arc::new(TunnelMetrics::new());
    // The ALPN is registered so that a peer dialing a gateway is seen, refused and counted.
    let ep = bind(&args.endpoint, vec![ALPN.to_vec()]).await?;
    tokio::spawn(router_tunnel::serve::refuse_incoming(ep.clone(), metrics.clone()));
    let tunnels = Tunnels::new(ep.clone(), args.listen_address, metrics.clone());
    let ready = admin::start(args.endpoint.admin_addr, metrics.clone(), Some(tunnels.clone())).await?;
    let stop = router_kube::shutdown::on_signal();
    tokio::spawn(tunnels.clone().run(stop.clone()));
    match &args.config {
        Some(path) => standalone::run(path, &tunnels, &ready, stop).await,
        None => cluster::run(&args, &tunnels, &ready, stop).await?,
    }
    ep.close().await;
    Ok(())
}
