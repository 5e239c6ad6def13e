//! Pooled upstream clients, one per wire protocol.
//!
//! HTTP/1.1 connections are kept alive and reused per endpoint; h2c and gRPC
//! share one multiplexed HTTP/2 connection per endpoint. Both pools are
//! bounded (idle connections per endpoint, idle timeout) and every connect
//! has a timeout, so a black-holed endpoint costs a bounded wait.
//!
//! Every client speaks through one connector type that does TLS for `https`
//! URIs only, so plain and TLS services share the request path; a service
//! with TLS gets clients of its own (`tls::TlsBuilder`), because its trust
//! roots, server name and client certificate are its own.
//!
//! With VRF binding on, connections to a service in a Galactic VPC are bound
//! (SO_BINDTODEVICE) to that VPC's VRF device, so they leave through the
//! tenant's routing table; each device gets its own pools.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use router_api::v1alpha1::ServiceProtocol;
use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider, pki_types::ServerName};

use crate::mirror::{MirrorBody, RequestBody};

/// Pool and connect settings.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
    /// Bind upstream sockets to the VPC's VRF device (needs CAP_NET_RAW or root).
    pub bind_vrf: bool,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_endpoint: 1024,
            bind_vrf: false,
        }
    }
}

/// TCP (bound to a VRF device when asked), then TLS for `https` URIs.
pub type Connector = HttpsConnector<HttpConnector>;
pub type UpstreamClient = Client<Connector, RequestBody>;
pub type MirrorClient = Client<Connector, MirrorBody>;

fn tcp_connector(settings: &UpstreamSettings, device: Option<&str>) -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(settings.connect_timeout));
    connector.set_keepalive(Some(Duration::from_secs(60)));
    // hyper-rustls decides between TCP and TLS by the URI's scheme.
    connector.enforce_http(false);
    if let Some(device) = device {
        connector.set_interface(device);
    }
    connector
}

/// A connector for cleartext services: it refuses nothing, because their URIs are `http`.
fn cleartext_connector(settings: &UpstreamSettings, device: Option<&str>, provider: &Arc<CryptoProvider>) -> Connector {
    let unused = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("the provider supports the default versions")
        .with_root_certificates(RootCertStore::empty())
        .with_no_client_auth();
    HttpsConnectorBuilder::new()
        .with_tls_config(unused)
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(tcp_connector(settings, device))
}

/// A TLS connector for one service: ALPN offers h2 only, or h2 and http/1.1,
/// and the certificate is checked for `server_name` (the endpoint IP when None).
pub fn tls_connector(
    settings: &UpstreamSettings,
    device: Option<&str>,
    config: ClientConfig,
    server_name: Option<ServerName<'static>>,
    http2_only: bool,
) -> Connector {
    let builder = HttpsConnectorBuilder::new().with_tls_config(config).https_only();
    let builder = match server_name {
        Some(name) => builder.with_server_name_resolver(hyper_rustls::FixedServerNameResolver::new(name)),
        None => builder,
    };
    let tcp = tcp_connector(settings, device);
    if http2_only { builder.enable_http2().wrap_connector(tcp) } else { builder.enable_all_versions().wrap_connector(tcp) }
}

/// A pooled client over `connector`; `http2_only` for h2c and gRPC, otherwise
/// HTTP/1.1 (or, over TLS, whatever ALPN settles on).
pub fn pooled_client<B>(settings: &UpstreamSettings, connector: Connector, http2_only: bool) -> Client<Connector, B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_endpoint)
        .http2_only(http2_only)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10));
    b.build(connector)
}

struct ClientPair<B> {
    http1: Client<Connector, B>,
    http2: Client<Connector, B>,
}

impl<B> ClientPair<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn new(settings: &UpstreamSettings, connector: &Connector) -> Self {
        Self { http1: pooled_client(settings, connector.clone(), false), http2: pooled_client(settings, connector.clone(), true) }
    }

    /// HTTPS is served here only by mistake: TLS services have clients of their own (tls::TlsState).
    fn for_protocol(&self, protocol: ServiceProtocol) -> &Client<Connector, B> {
        match protocol {
            ServiceProtocol::Http | ServiceProtocol::Https => &self.http1,
            ServiceProtocol::Http2 | ServiceProtocol::Grpc => &self.http2,
        }
    }
}

/// The pools of one way out (unbound, or one VRF device).
struct Clients {
    main: ClientPair<RequestBody>,
    mirror: ClientPair<MirrorBody>,
}

impl Clients {
    fn new(settings: &UpstreamSettings, device: Option<&str>, provider: &Arc<CryptoProvider>) -> Self {
        let connector = cleartext_connector(settings, device, provider);
        Self { main: ClientPair::new(settings, &connector), mirror: ClientPair::new(settings, &connector) }
    }
}

pub struct Upstreams {
    settings: UpstreamSettings,
    provider: Arc<CryptoProvider>,
    unbound: Clients,
    by_device: Mutex<HashMap<String, Arc<Clients>>>,
}

impl Upstreams {
    pub fn new(settings: UpstreamSettings, provider: Arc<CryptoProvider>) -> Self {
        Self { unbound: Clients::new(&settings, None, &provider), by_device: Mutex::new(HashMap::new()), settings, provider }
    }

    pub fn settings(&self) -> &UpstreamSettings {
        &self.settings
    }

    fn with_clients<T>(&self, vrf_device: Option<&str>, f: impl FnOnce(&Clients) -> T) -> T {
        match vrf_device.filter(|_| self.settings.bind_vrf) {
            None => f(&self.unbound),
            Some(device) => {
                let clients = {
                    let mut map = self.by_device.lock().unwrap_or_else(|p| p.into_inner());
                    map.entry(device.to_owned())
                        .or_insert_with(|| Arc::new(Clients::new(&self.settings, Some(device), &self.provider)))
                        .clone()
                };
                f(&clients)
            }
        }
    }

    /// The client for a cleartext service's protocol (and VRF device, when binding is on).
    pub fn client(&self, protocol: ServiceProtocol, vrf_device: Option<&str>) -> UpstreamClient {
        self.with_clients(vrf_device, |c| c.main.for_protocol(protocol).clone())
    }

    /// The client for mirrored copies to a cleartext service.
    pub fn mirror_client(&self, protocol: ServiceProtocol, vrf_device: Option<&str>) -> MirrorClient {
        self.with_clients(vrf_device, |c| c.mirror.for_protocol(protocol).clone())
    }
}
