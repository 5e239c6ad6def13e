//! Pooled upstream clients, one per wire protocol.
//!
//! HTTP/1.1 connections are kept alive and reused per endpoint; h2c and gRPC
//! share one multiplexed HTTP/2 connection per endpoint. Both pools are
//! bounded (idle connections per endpoint, idle timeout) and every connect
//! has a timeout, so a black-holed endpoint costs a bounded wait.
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
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use router_api::v1alpha1::ServiceProtocol;

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

pub type UpstreamClient = Client<HttpConnector, RequestBody>;
pub type MirrorClient = Client<HttpConnector, MirrorBody>;

struct ClientPair<B> {
    http1: Client<HttpConnector, B>,
    http2: Client<HttpConnector, B>,
}

impl<B> ClientPair<B>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn new(settings: &UpstreamSettings, connector: &HttpConnector) -> Self {
        let build = |http2_only: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(settings.pool_idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_per_endpoint)
                .http2_only(http2_only);
            if http2_only {
                b.http2_keep_alive_interval(Duration::from_secs(30)).http2_keep_alive_timeout(Duration::from_secs(10));
            }
            b.build(connector.clone())
        };
        Self { http1: build(false), http2: build(true) }
    }

    fn for_protocol(&self, protocol: ServiceProtocol) -> Option<&Client<HttpConnector, B>> {
        match protocol {
            ServiceProtocol::Http => Some(&self.http1),
            ServiceProtocol::Http2 | ServiceProtocol::Grpc => Some(&self.http2),
            ServiceProtocol::Https => None,
        }
    }
}

/// The pools of one way out (unbound, or one VRF device).
struct Clients {
    main: ClientPair<RequestBody>,
    mirror: ClientPair<MirrorBody>,
}

impl Clients {
    fn new(settings: &UpstreamSettings, device: Option<&str>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        if let Some(device) = device {
            connector.set_interface(device);
        }
        Self { main: ClientPair::new(settings, &connector), mirror: ClientPair::new(settings, &connector) }
    }
}

pub struct Upstreams {
    settings: UpstreamSettings,
    unbound: Clients,
    by_device: Mutex<HashMap<String, Arc<Clients>>>,
}

impl Upstreams {
    pub fn new(settings: UpstreamSettings) -> Self {
        Self { unbound: Clients::new(&settings, None), by_device: Mutex::new(HashMap::new()), settings }
    }

    fn with_clients<T>(&self, vrf_device: Option<&str>, f: impl FnOnce(&Clients) -> T) -> T {
        match vrf_device.filter(|_| self.settings.bind_vrf) {
            None => f(&self.unbound),
            Some(device) => {
                let clients = {
                    let mut map = self.by_device.lock().unwrap_or_else(|p| p.into_inner());
                    map.entry(device.to_owned()).or_insert_with(|| Arc::new(Clients::new(&self.settings, Some(device)))).clone()
                };
                f(&clients)
            }
        }
    }

    /// The client for a service's protocol (and VRF device, when binding is on),
    /// or None for HTTPS: upstream TLS is not built yet.
    pub fn client(&self, protocol: ServiceProtocol, vrf_device: Option<&str>) -> Option<UpstreamClient> {
        self.with_clients(vrf_device, |c| c.main.for_protocol(protocol).cloned())
    }

    /// The client for mirrored copies.
    pub fn mirror_client(&self, protocol: ServiceProtocol, vrf_device: Option<&str>) -> Option<MirrorClient> {
        self.with_clients(vrf_device, |c| c.mirror.for_protocol(protocol).cloned())
    }
}
