//! Pooled upstream clients, one per wire protocol.
//!
//! HTTP/1.1 connections are kept alive and reused per endpoint; h2c and gRPC
//! share one multiplexed HTTP/2 connection per endpoint. Both pools are
//! bounded (idle connections per endpoint, idle timeout) and every connect
//! has a timeout, so a black-holed endpoint costs a bounded wait.

use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioTimer},
};
use router_api::v1alpha1::ServiceProtocol;

/// Pool and connect settings.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamSettings {
    pub connect_timeout: Duration,
    pub pool_idle_timeout: Duration,
    pub max_idle_per_endpoint: usize,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            max_idle_per_endpoint: 1024,
        }
    }
}

pub type UpstreamClient = Client<HttpConnector, Incoming>;

pub struct Upstreams {
    http1: UpstreamClient,
    http2: UpstreamClient,
}

impl Upstreams {
    pub fn new(settings: UpstreamSettings) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_keepalive(Some(Duration::from_secs(60)));
        let build = |http2_only: bool| {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(settings.pool_idle_timeout)
                .pool_max_idle_per_host(settings.max_idle_per_endpoint)
                .http2_only(http2_only);
            if http2_only {
                b.http2_keep_alive_interval(Duration::from_secs(30))
                    .http2_keep_alive_timeout(Duration::from_secs(10));
            }
            b.build(connector.clone())
        };
        Self {
            http1: build(false),
            http2: build(true),
        }
    }

    /// The client for a service's protocol, or None for HTTPS (upstream TLS is not built yet).
    pub fn for_protocol(&self, protocol: ServiceProtocol) -> Option<&UpstreamClient> {
        match protocol {
            ServiceProtocol::Http => Some(&self.http1),
            ServiceProtocol::Http2 | ServiceProtocol::Grpc => Some(&self.http2),
            ServiceProtocol::Https => None,
        }
    }
}
