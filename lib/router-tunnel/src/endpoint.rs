//! Iroh endpoints as this project builds them: from the minimal preset (a
//! crypto provider and nothing else: no n0 DNS or pkarr address lookup, no
//! default relays), with the port mapper compiled out, bound to exactly the
//! address given, and with relays only when relay URLs are configured. A
//! peer is then reached on the addresses its TunnelBinding lists, or through
//! the relays named, and no packet leaves for anywhere else.

use std::{net::SocketAddr, time::Duration};

pub use iroh::Endpoint;
use iroh::{
    EndpointAddr, RelayMap, RelayMode, RelayUrl, SecretKey,
    endpoint::{QuicTransportConfig, VarInt, presets},
};

/// A connection with no packet from the peer for this long is closed, so a
/// connector that vanished (killed, its network gone) is noticed and redialed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// Keep-alives keep a quiet tunnel from reaching [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE: Duration = Duration::from_secs(1);
/// Streams one connection may carry at once: one per spliced TCP connection.
pub const MAX_STREAMS: u32 = 4096;

/// What an endpoint is built from.
pub struct EndpointSettings {
    pub secret_key: SecretKey,
    /// The UDP address to bind (for example `127.0.0.1:0` in tests, `0.0.0.0:7842` in a pod).
    pub bind: SocketAddr,
    /// Relays to use; none disables relaying altogether.
    pub relay_urls: Vec<RelayUrl>,
    /// Protocols accepted from peers.
    pub alpns: Vec<Vec<u8>>,
}

/// Binds an endpoint with `settings`.
pub async fn bind(settings: EndpointSettings) -> Result<Endpoint, String> {
    let transport = QuicTransportConfig::builder()
        .keep_alive_interval(KEEP_ALIVE)
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().map_err(|e| format!("idle timeout: {e}"))?))
        .max_concurrent_bidi_streams(VarInt::from_u32(MAX_STREAMS))
        .build();
    let relays = if settings.relay_urls.is_empty() {
        RelayMode::Disabled
    } else {
        RelayMode::Custom(settings.relay_urls.into_iter().collect::<RelayMap>())
    };
    Endpoint::builder(presets::Minimal)
        .secret_key(settings.secret_key)
        .alpns(settings.alpns)
        .transport_config(transport)
        .relay_mode(relays)
        .clear_ip_transports()
        .bind_addr(settings.bind)
        .map_err(|e| format!("bind address {}: {e}", settings.bind))?
        .bind()
        .await
        .map_err(|e| format!("binding the endpoint on {}: {e}", settings.bind))
}

/// Where to reach a peer: its id, its direct addresses and its relay.
pub fn peer_addr(id: iroh::PublicKey, addresses: &[SocketAddr], relay: Option<&RelayUrl>) -> EndpointAddr {
    let mut addr = EndpointAddr::new(id);
    for a in addresses {
        addr = addr.with_ip_addr(*a);
    }
    if let Some(r) = relay {
        addr = addr.with_relay_url(r.clone());
    }
    addr
}

/// Relay URLs from text, each checked.
pub fn parse_relay_urls(urls: &[String]) -> Result<Vec<RelayUrl>, String> {
    urls.iter().map(|u| u.parse::<RelayUrl>().map_err(|e| format!("relay URL {u:?}: {e}"))).collect()
}
