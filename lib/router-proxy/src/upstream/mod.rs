//! Upstream clients, one per wire protocol and way out.
//!
//! * [`pool`]: cleartext HTTP/1.1 (the common case inside a VPC) goes through
//!   the gateway's own keep-alive pool on hyper's connection-level client.
//! * h2c and gRPC share one multiplexed HTTP/2 connection per endpoint, and
//!   services with TLS get clients of their own (`tls::TlsBuilder`, because
//!   their trust roots, server name and client certificate are their own):
//!   both on hyper-util's pooled client, which also negotiates ALPN.
//!
//! Pools are bounded (idle connections per endpoint, idle timeout) and every
//! connect has a timeout, so a black-holed endpoint costs a bounded wait.
//!
//! With VRF binding on, connections to a service in a Galactic VPC are bound
//! (SO_BINDTODEVICE) to that VPC's VRF device, so they leave through the
//! tenant's routing table; each device gets its own pools.

pub mod body;
#[cfg(test)]
mod exchange_tests;
pub mod h1;
mod pool;

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use bytes::Bytes;
use http::{
    HeaderMap, Method, Request, Response, Uri, Version,
    uri::{Authority, PathAndQuery, Scheme},
};
use hyper::upgrade::OnUpgrade;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo, TokioTimer},
};
use router_api::v1alpha1::ServiceProtocol;
use rustls::{ClientConfig, RootCertStore, crypto::CryptoProvider, pki_types::ServerName};

use crate::http::{field_lines::FieldLines, forwarding::AddedFields, upgrade::Io};

pub use self::body::{ClientBody, ClientBodyError, MirrorBody, RequestBody, UpstreamBody};
use self::pool::Http1Pool;

/// Errors of boxed causes.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why an upstream request got no response.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be made (refused, unreachable, connect timeout, TLS handshake).
    #[error("connecting to the endpoint failed: {0}")]
    Connect(#[source] BoxError),
    /// The connection failed or was reset during the exchange.
    #[error("the upstream exchange failed: {0}")]
    Request(#[source] BoxError),
}

impl UpstreamError {
    fn connect(e: impl Into<BoxError>) -> Self {
        Self::Connect(e.into())
    }

    fn request(e: impl Into<BoxError>) -> Self {
        Self::Request(e.into())
    }

    pub fn is_connect(&self) -> bool {
        matches!(self, Self::Connect(_))
    }
}

/// A client for one service's endpoints. Cloned for every request and
/// carried by its destination through every stage, so both variants are a
/// pointer: hyper-util's client inline made every request-path value that
/// holds one about 900 bytes larger, copied at each stage's await.
pub enum UpstreamClient<B = RequestBody> {
    /// Cleartext HTTP/1.1: the gateway's own pool.
    Http1(Arc<Http1Pool>),
    /// HTTP/2 and TLS: hyper-util's pooled client.
    Pooled(Arc<Client<Connector, B>>),
}

impl<B> Clone for UpstreamClient<B> {
    fn clone(&self) -> Self {
        match self {
            Self::Http1(pool) => Self::Http1(pool.clone()),
            Self::Pooled(client) => Self::Pooled(client.clone()),
        }
    }
}

/// One attempt of a proxied request, borrowed from the request stage: the
/// gateway's HTTP/1.1 client writes it as it stands, without a URI built or
/// a header map copied per attempt; hyper's clients get a `Request` made of it.
pub struct Attempt<'a> {
    pub method: &'a Method,
    pub scheme: &'a Scheme,
    pub authority: &'a Authority,
    pub path_and_query: &'a PathAndQuery,
    pub version: Version,
    /// Taken, not copied, for a hyper client when `last`.
    pub headers: &'a mut HeaderMap,
    /// The fields kept beside the map: written after it, or copied into it for hyper.
    pub added: &'a AddedFields<'a>,
    /// No attempt follows this one.
    pub last: bool,
}

impl<B> UpstreamClient<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    /// Sends a request whose URI names the endpoint (`scheme://ip:port/path`).
    pub async fn request(&self, req: Request<B>) -> Result<Response<UpstreamBody>, UpstreamError> {
        match self {
            Self::Http1(pool) => pool.send(req).await,
            Self::Pooled(client) => hyper_request(client, req).await,
        }
    }

    /// Sends one attempt of a proxied request, with `body`. The response's
    /// fields are in its map, or beside it as the gateway's HTTP/1.1 client
    /// read them (see [`FieldLines`]).
    pub async fn attempt(&self, attempt: Attempt<'_>, body: B) -> Result<(Response<UpstreamBody>, FieldLines), UpstreamError> {
        match self {
            Self::Http1(pool) => {
                let head = h1::RequestHead {
                    method: attempt.method,
                    target: attempt.path_and_query.as_str(),
                    headers: attempt.headers,
                    added: Some(attempt.added),
                };
                pool.send_head(attempt.authority, head, body, None).await
            }
            Self::Pooled(client) => {
                let uri = Uri::builder()
                    .scheme(attempt.scheme.clone())
                    .authority(attempt.authority.clone())
                    .path_and_query(attempt.path_and_query.clone())
                    .build()
                    .map_err(UpstreamError::request)?;
                let mut req = Request::new(body);
                *req.method_mut() = attempt.method.clone();
                *req.uri_mut() = uri;
                *req.version_mut() = attempt.version;
                *req.headers_mut() = if attempt.last { std::mem::take(attempt.headers) } else { attempt.headers.clone() };
                attempt.added.insert_copies(req.headers_mut());
                Ok((hyper_request(client, req).await?, FieldLines::default()))
            }
        }
    }
}

async fn hyper_request<B>(client: &Client<Connector, B>, req: Request<B>) -> Result<Response<UpstreamBody>, UpstreamError>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    match client.request(req).await {
        Ok(response) => Ok(response.map(UpstreamBody::hyper)),
        Err(e) if e.is_connect() => Err(UpstreamError::Connect(e.into())),
        Err(e) => Err(UpstreamError::Request(e.into())),
    }
}

/// The upstream's side of an accepted upgrade (101): hyper's, or the gateway's own HTTP/1.1 connection.
pub enum UpstreamUpgrade {
    Hyper(OnUpgrade),
    Http1(Option<h1::Connection>),
}

impl UpstreamUpgrade {
    /// Takes the upgraded connection out of `response` (a 101).
    pub fn on<T>(response: &mut Response<T>) -> Self {
        match response.extensions().get::<h1::Upgrade>() {
            Some(upgrade) => Self::Http1(upgrade.take()),
            None => Self::Hyper(hyper::upgrade::on(response)),
        }
    }

    /// Copies bytes both ways between `client` and the upstream until either side closes.
    pub async fn splice(self, mut client: Box<dyn Io>) -> Result<(), BoxError> {
        match self {
            Self::Hyper(on) => {
                let mut upstream = TokioIo::new(on.await?);
                tokio::io::copy_bidirectional(&mut client, &mut upstream).await?;
            }
            Self::Http1(Some(conn)) => conn.splice(&mut client).await?,
            Self::Http1(None) => return Err("the upgraded connection was already taken".into()),
        }
        Ok(())
    }
}

/// Whether a service's endpoints speak HTTP/1.1 (HTTP and HTTPS) rather than HTTP/2 (h2c and gRPC).
pub fn is_http1(protocol: ServiceProtocol) -> bool {
    matches!(protocol, ServiceProtocol::Http | ServiceProtocol::Https)
}

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
pub type MirrorClient = UpstreamClient<MirrorBody>;

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
pub fn pooled_client<B>(settings: &UpstreamSettings, connector: Connector, http2_only: bool) -> UpstreamClient<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    let mut b = Client::builder(TokioExecutor::new());
    b.pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        .pool_idle_timeout(settings.pool_idle_timeout)
        .pool_max_idle_per_host(settings.max_idle_per_endpoint)
        .http2_only(http2_only)
        .http2_keep_alive_interval(Duration::from_secs(30))
        .http2_keep_alive_timeout(Duration::from_secs(10));
    UpstreamClient::Pooled(Arc::new(b.build(connector)))
}

struct ClientPair<B> {
    http1: UpstreamClient<B>,
    http2: UpstreamClient<B>,
}

impl<B> ClientPair<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<BoxError>,
{
    fn new(settings: &UpstreamSettings, device: Option<&str>, connector: &Connector) -> Self {
        let http1 = Http1Pool::new(tcp_connector(settings, device), settings.pool_idle_timeout, settings.max_idle_per_endpoint);
        Self { http1: UpstreamClient::Http1(http1), http2: pooled_client(settings, connector.clone(), true) }
    }

    /// HTTPS is served here only by mistake: TLS services have clients of their own (tls::TlsState).
    fn for_protocol(&self, protocol: ServiceProtocol) -> &UpstreamClient<B> {
        if is_http1(protocol) { &self.http1 } else { &self.http2 }
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
        Self { main: ClientPair::new(settings, device, &connector), mirror: ClientPair::new(settings, device, &connector) }
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
