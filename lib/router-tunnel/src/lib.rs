//! Iroh tunnels for services that are not on a VPC.
//!
//! A *connector* (`tunnel-gateway connect`) runs next to the off-VPC service
//! and opens no inbound port of its own beyond its QUIC socket; the
//! *gateway* side (`tunnel-gateway serve`) is an ordinary VPC member that
//! dials each connector by its endpoint id and keeps one warm QUIC connection
//! per connector ([`link`]). Every TCP connection the gateway accepts on a
//! tunnel-backed VPCService's port ([`listener`]) becomes one bidirectional
//! stream to one live connector, which carries one HTTP/1.1 `CONNECT
//! host:port` exchange ([`connect`]) and then the spliced bytes ([`splice`]).
//! router-gateway sees plain TCP endpoints, so its health checks, retries,
//! TLS to the origin, h2c/gRPC and WebSocket work through the tunnel unchanged.
//!
//! Both sides authorize the peer by endpoint id right after the handshake,
//! before any stream is read. Endpoints are built from iroh's minimal preset
//! ([`endpoint`]): no n0 DNS, no pkarr, no port mapper, and relays only when
//! a relay URL is configured, so nothing leaves the machine unless asked to.
#![forbid(unsafe_code)]

pub mod connect;
pub mod connector;
pub mod endpoint;
pub mod key;
pub mod link;
pub mod listener;
pub mod metrics;
pub mod plan;
pub mod serve;
pub mod splice;
pub mod status;

/// The ALPN of the tunnel protocol, the one Datum's connector agent (datum-connect) speaks.
pub const ALPN: &[u8] = b"iroh-http-proxy/1";
