//! router-gateway: Datum Router's data plane.
//!
//! Standalone mode (`--config`) reads VPC, VPCAttachment, VPCService,
//! VPCRoute, VPCIngress, VPCEgress and Secret YAML from a file or directory,
//! resolves endpoints in-process and reloads on change. Without `--config` it
//! runs in cluster mode: it watches the Kubernetes API read-only (where
//! service-discovery writes the endpoints) and serves what it finds.

mod demo;
mod trim;

use std::{
    net::{IpAddr, SocketAddr},
    path::PathBuf,
    process::ExitCode,
    sync::Arc,
    time::Duration,
};

use clap::Parser;
use router_api::{
    datum::{Locality, LocalityParseError},
    schema::SchemaValidator,
};
use router_core::EndpointStore;
use router_kube::shutdown::stopped;
use router_proxy::{
    admin::{self, Admin, Health},
    config::{ClusterSource, Reloader, SnapshotCell},
    health::HealthChecker,
    http::headers::Entry,
    listeners::IngressListeners,
    request::Gateway,
    server::{self, ConnectionLimit, ListenerKind, ServerSettings},
    telemetry::{AccessLog, AccessLogFormat, Metrics, spans::SpanExport},
    tls::{self, DefaultCertificate, TlsBuilder, accept::TlsPort},
    upstream::{UpstreamSettings, Upstreams},
};
use tokio::net::TcpListener;

/// Datum Router gateway: proxies HTTP/1.1, HTTP/2 and gRPC to services in Galactic VPCs.
///
/// With --config it runs standalone from YAML files (the same objects you would
/// `kubectl apply`). Without --config it watches the Kubernetes API (cluster mode).
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// A YAML file or a directory of YAML files (VPC, VPCAttachment, VPCService, VPCRoute, ...); reloaded on change.
    #[arg(long, env = "ROUTER_CONFIG")]
    config: Option<PathBuf>,
    /// Cluster mode: the kubeconfig to use; the usual inference (KUBECONFIG, ~/.kube/config, in-cluster) when unset.
    #[arg(long, conflicts_with = "config")]
    kubeconfig: Option<PathBuf>,
    /// Data listener (HTTP/1.1 and h2c with prior knowledge).
    #[arg(long, env = "ROUTER_LISTEN_ADDR", default_value = "0.0.0.0:8080")]
    listen: SocketAddr,
    /// PEM certificate chain of the internal HTTPS listener (with --tls-key); reloaded on change.
    #[arg(long, env = "ROUTER_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the internal HTTPS listener.
    #[arg(long, env = "ROUTER_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Internal HTTPS listener, opened when --tls-cert and --tls-key are given.
    #[arg(long, env = "ROUTER_TLS_LISTEN_ADDR", default_value = "0.0.0.0:8443")]
    tls_listen: SocketAddr,
    /// Address VPCIngress listener ports are opened on.
    #[arg(long, env = "ROUTER_INGRESS_BIND_ADDR", default_value = "0.0.0.0")]
    ingress_bind: IpAddr,
    /// Admin listener: /metrics, /healthz, /readyz, /config.
    #[arg(long, env = "ROUTER_ADMIN_ADDR", default_value = "0.0.0.0:9090")]
    admin_addr: SocketAddr,
    /// Access log on stdout: json, common or off.
    #[arg(long, env = "ROUTER_ACCESS_LOG", default_value = "json")]
    access_log: AccessLogFormat,
    /// Diagnostic log format on stderr: text or json.
    #[arg(long, env = "ROUTER_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// Upstream connect timeout in milliseconds.
    #[arg(long, env = "ROUTER_CONNECT_TIMEOUT_MS", default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// Idle upstream connections kept per endpoint.
    #[arg(long, env = "ROUTER_MAX_IDLE_PER_ENDPOINT", default_value_t = 1024)]
    max_idle_per_endpoint: usize,
    /// Seconds a client has to send a complete request head.
    #[arg(long, env = "ROUTER_HEADER_READ_TIMEOUT_SECS", default_value_t = 10)]
    header_read_timeout_secs: u64,
    /// Most headers in a request; more is answered 431.
    #[arg(long, env = "ROUTER_MAX_HEADERS", default_value_t = 100)]
    max_headers: usize,
    /// Largest request head in bytes.
    #[arg(long, env = "ROUTER_MAX_HEADER_BYTES", default_value_t = 65536)]
    max_header_bytes: usize,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, env = "ROUTER_MAX_CONCURRENT_STREAMS", default_value_t = 256)]
    max_concurrent_streams: u32,
    /// Open client connections across all listeners (the admin port aside); more are refused
    /// (cleartext: 503 connection-limit). 0: no limit.
    #[arg(long, env = "ROUTER_MAX_CONNECTIONS", default_value_t = 20_000)]
    max_connections: usize,
    /// Seconds within which each 64 KiB of a request body (or its end) must arrive once the gateway waits
    /// for it: 408 request-body-timeout otherwise. gRPC streams are exempt. 0: no timeout.
    #[arg(long, env = "ROUTER_REQUEST_BODY_TIMEOUT_SECS", default_value_t = 30)]
    request_body_timeout_secs: u64,
    /// Seconds in-flight requests may take to finish after SIGTERM.
    #[arg(long, env = "ROUTER_DRAIN_TIMEOUT_SECS", default_value_t = 30)]
    drain_timeout_secs: u64,
    /// Bind upstream sockets to the VPC's VRF device (SO_BINDTODEVICE, G<base62 id>V; needs CAP_NET_RAW).
    #[arg(long, env = "ROUTER_BIND_VRF")]
    bind_vrf: bool,
    /// OTLP/HTTP collector base URL (spans go to <url>/v1/traces); span export is off when unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    /// service.name of exported spans.
    #[arg(long, env = "OTEL_SERVICE_NAME", default_value = "router-gateway")]
    otel_service_name: String,
    /// Worker threads; 1 runs everything on a single-threaded runtime (the cheapest per request).
    /// Default: the CPUs this process may use (TOKIO_WORKER_THREADS is honoured too).
    #[arg(long, env = "ROUTER_WORKER_THREADS")]
    worker_threads: Option<usize>,
    /// Where this gateway is, for destinations with trafficDistribution: PreferClose:
    /// `region=…,zone=…,city-code=…` (each part optional).
    #[arg(long, env = "ROUTER_LOCALITY", value_parser = parse_locality)]
    locality: Option<Locality>,
    /// Cluster mode: take the parts `--locality` leaves out from the labels of the node this pod runs on
    /// (its name from NODE_NAME, the Downward API's spec.nodeName).
    #[arg(long, env = "ROUTER_LOCALITY_FROM_NODE")]
    locality_from_node: bool,
    /// Demo only: start a tiny HTTP backend on every loopback endpoint of the configuration.
    #[arg(long)]
    demo_backends: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    router_kube::init_logging(&args.log_format);
    let workers = args
        .worker_threads
        .or_else(|| std::env::var("TOKIO_WORKER_THREADS").ok().and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    // One worker: a current-thread runtime has no cross-thread queues or wakeups to pay for.
    let runtime = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build()
    };
    // ring is the process's one TLS provider: libraries that build their own rustls
    // clients (the OTLP exporter's HTTP client) find it installed instead of none.
    let _ = Arc::unwrap_or_clone(tls::provider()).install_default();
    // The exporter's blocking HTTP client must be built outside the async runtime.
    let spans = match args.otlp_endpoint.as_deref().map(|e| SpanExport::new(e, &args.otel_service_name)) {
        None => None,
        Some(Ok(s)) => Some(Arc::new(s)),
        Some(Err(e)) => {
            eprintln!("router-gateway: {e}");
            return ExitCode::FAILURE;
        }
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("router-gateway: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(run(args, spans.clone()));
    drop(runtime);
    if let Some(spans) = spans {
        spans.shutdown();
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "router-gateway failed");
            ExitCode::FAILURE
        }
    }
}

/// The gateway's locality, logged; None when nothing is known (PreferClose then changes nothing).
fn located(locality: Locality) -> Option<Locality> {
    if locality.is_empty() {
        return None;
    }
    tracing::info!(%locality, "gateway locality");
    Some(locality)
}

fn parse_locality(text: &str) -> Result<Locality, LocalityParseError> {
    Locality::parse(text)
}

async fn run(args: Args, spans: Option<Arc<SpanExport>>) -> Result<(), Box<dyn std::error::Error>> {
    let provider = tls::provider();
    let upstream_settings = UpstreamSettings {
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        max_idle_per_endpoint: args.max_idle_per_endpoint,
        bind_vrf: args.bind_vrf,
        ..Default::default()
    };
    let default_certificate = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(DefaultCertificate { cert: cert.clone(), key: key.clone() }),
        _ => None,
    };
    let tls_listen = default_certificate.as_ref().map(|_| args.tls_listen);
    let cell = Arc::new(SnapshotCell::default());
    trim::after_each_publish(&cell);
    let metrics = Arc::new(Metrics::new());
    let health = Arc::new(Health::default());
    let store = Arc::new(EndpointStore::default());
    let tls = Arc::new(TlsBuilder::new(provider.clone(), upstream_settings, default_certificate)?);
    let reserved_ports: Vec<u16> =
        [Some(args.listen.port()), Some(args.admin_addr.port()), tls_listen.map(|a| a.port())].into_iter().flatten().collect();
    let stop = router_kube::shutdown::on_signal();

    match &args.config {
        Some(config) => {
            let reloader = Arc::new(Reloader {
                path: config.clone(),
                schemas: Arc::new(SchemaValidator::for_router_kinds()?),
                store,
                cell: cell.clone(),
                metrics: metrics.clone(),
                tls,
                reserved_ports,
                locality: located(args.locality.clone().unwrap_or_default()),
                documents: Default::default(),
                builder: Default::default(),
            });
            // The first load must succeed: there is no last good configuration to fall back to.
            if !reloader.reload() {
                return Err(format!("{}: no valid configuration to start with", config.display()).into());
            }
            if args.demo_backends {
                demo::start_backends(&cell.load()).await?;
            }
            tokio::spawn(async move {
                if let Err(e) = reloader.watch().await {
                    tracing::error!(error = %e, "cannot watch the configuration; changes will not be reloaded");
                }
            });
        }
        None => {
            let client = router_kube::connect(args.kubeconfig.as_deref()).await?;
            let mut locality = args.locality.clone().unwrap_or_default();
            if args.locality_from_node {
                let node =
                    std::env::var("NODE_NAME").map_err(|_| "--locality-from-node needs NODE_NAME (the Downward API's spec.nodeName)")?;
                let labels = router_kube::node::labels(&client, &node).await.map_err(|e| format!("reading node {node}: {e}"))?;
                locality = locality.or(Locality::from_map(|k| labels.get(k)));
            }
            tracing::info!("cluster mode: watching the Kubernetes API; ready after the first full sync");
            let source = ClusterSource {
                client,
                store,
                cell: cell.clone(),
                metrics: metrics.clone(),
                tls,
                reserved_ports,
                locality: located(locality),
            };
            tokio::spawn(source.run(stop.clone()));
        }
    }

    let admin_listener = TcpListener::bind(args.admin_addr).await.map_err(|e| format!("admin listener {}: {e}", args.admin_addr))?;
    let listener = TcpListener::bind(args.listen).await.map_err(|e| format!("listener {}: {e}", args.listen))?;
    let tls_listener = match tls_listen {
        Some(addr) => Some(TcpListener::bind(addr).await.map_err(|e| format!("TLS listener {addr}: {e}"))?),
        None => None,
    };
    tracing::info!(listen = %args.listen, tls_listen = ?tls_listen, admin = %args.admin_addr, "router-gateway serving");
    tokio::spawn(HealthChecker::new(metrics.clone(), upstream_settings, provider.clone()).run(cell.clone()));
    tokio::spawn(admin::serve(admin_listener, Arc::new(Admin { cell: cell.clone(), metrics: metrics.clone(), health: health.clone() })));

    let access_log = AccessLog::new(args.access_log);
    let gateway = Arc::new(Gateway {
        cell,
        upstreams: Upstreams::new(upstream_settings, provider),
        metrics,
        access_log: access_log.clone(),
        spans,
        client_body_timeout: (args.request_body_timeout_secs > 0).then(|| Duration::from_secs(args.request_body_timeout_secs)),
    });
    let settings = ServerSettings {
        header_read_timeout: Duration::from_secs(args.header_read_timeout_secs),
        max_headers: args.max_headers,
        max_header_bytes: args.max_header_bytes,
        max_concurrent_streams: args.max_concurrent_streams,
        drain_timeout: Duration::from_secs(args.drain_timeout_secs),
        connections: ConnectionLimit::new(args.max_connections),
        ..ServerSettings::default()
    };
    tokio::spawn({
        let stop = stop.clone();
        async move {
            stopped(stop).await;
            tracing::info!("not ready, draining");
            health.start_draining();
        }
    });
    let ingress = tokio::spawn(IngressListeners::new(args.ingress_bind, gateway.clone(), settings.clone()).run(stop.clone()));
    let internal_tls = tls_listener.map(|l| {
        tokio::spawn(server::serve(l, ListenerKind::Tls(TlsPort::Internal), gateway.clone(), settings.clone(), stopped(stop.clone())))
    });
    server::serve(listener, ListenerKind::Cleartext(Entry::Internal), gateway, settings, stopped(stop)).await;
    if let Some(t) = internal_tls {
        let _ = t.await;
    }
    let _ = ingress.await;
    access_log.flush();
    Ok(())
}
