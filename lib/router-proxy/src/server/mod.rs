//! Client-facing listeners: HTTP/1.1 and h2c (prior knowledge) on one port,
//! or TLS first (the listener chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN), with
//! the limits that keep a slow or hostile client from holding the gateway
//! (header read timeout, header count and size, concurrent HTTP/2 streams and
//! the bounds of `flood`, the connection limit of `admission`) and a graceful
//! drain on shutdown (stop accepting, HTTP/2 GOAWAY, HTTP/1.1 connections
//! closed after their request in flight, up to the drain timeout).
//!
//! HTTP/1.x and HTTP/2 are served by the gateway's own servers ([`h1`],
//! [`h2`], the latter behind the flood guard). A cleartext connection is told apart by its first
//! bytes (HTTP/2's preface or not), a TLS one by ALPN.

mod admission;
mod date;
mod flood;
pub mod h1;
mod h2;

pub use admission::ConnectionLimit;

use std::{future::Future, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite},
    net::TcpListener,
    sync::watch,
};

use router_h2::conn::PREFACE;

use self::admission::Admitted;
use crate::{
    http::{
        headers::{ClientInfo, Entry},
        rewind::Rewind,
    },
    request::Gateway,
    tls::accept::{Accepted, TlsPort, handshake},
};

/// How connections on a listening socket start.
#[derive(Debug, Clone)]
pub enum ListenerKind {
    /// HTTP/1.1 and h2c straight away.
    Cleartext(Entry),
    /// A TLS handshake first; its time counts against the header read timeout.
    Tls(TlsPort),
}

/// Limits and timeouts of the client side.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Time a client has to send a complete request head (slowloris guard).
    pub header_read_timeout: Duration,
    /// Most request headers (HTTP/1.1); more is answered 431.
    pub max_headers: usize,
    /// Largest request head in bytes (HTTP/1.1 read buffer; HTTP/2 header list).
    pub max_header_bytes: usize,
    pub max_concurrent_streams: u32,
    /// Bytes of response data queued per HTTP/2 stream beyond what the socket
    /// takes: with `max_concurrent_streams`, what a client that never reads
    /// can make a connection hold.
    pub max_send_buf_per_stream: usize,
    /// How long in-flight requests may take to finish after shutdown begins.
    pub drain_timeout: Duration,
    /// Open client connections across every listener.
    pub connections: ConnectionLimit,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            max_headers: 100,
            max_header_bytes: 64 * 1024,
            max_concurrent_streams: 256,
            max_send_buf_per_stream: 64 * 1024,
            drain_timeout: Duration::from_secs(30),
            connections: ConnectionLimit::default(),
        }
    }
}

/// What every connection of a listener shares.
struct Shared {
    gateway: Arc<Gateway>,
    settings: ServerSettings,
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    gateway: Arc<Gateway>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let shared = Arc::new(Shared { gateway, settings });
    // Every connection holds a receiver: the send starts the drain, and the
    // sender sees them all gone once the last connection has ended.
    let (drain, draining) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let Some(slot) = shared.settings.connections.admit() else {
                    shared.gateway.metrics.connections_refused.with_label_values(&["max-connections"]).inc();
                    tracing::debug!(%peer, "connection limit reached; connection refused");
                    if let ListenerKind::Cleartext(_) = kind {
                        shared.settings.connections.refuse_cleartext(stream);
                    }
                    continue;
                };
                let (shared, draining) = (shared.clone(), draining.clone());
                match &kind {
                    ListenerKind::Cleartext(entry) => {
                        let client = Arc::new(ClientInfo::new(peer).with_entry(entry.clone()));
                        // Boxed: tokio moves a task's future through several calls as it spawns it,
                        // and this one is ten kilobytes (callgrind: six 9.8 KB copies a connection).
                        tokio::spawn(Box::pin(serve_client(stream, false, client, shared, draining, slot)));
                    }
                    ListenerKind::Tls(port) => {
                        let port = *port;
                        tokio::spawn(Box::pin(async move {
                            let gateway = &shared.gateway;
                            let accepted = match handshake(stream, port, &gateway.cell, shared.settings.header_read_timeout).await {
                                Ok(a) => a,
                                Err(e) => {
                                    gateway.metrics.tls_handshake_errors.with_label_values(&[e.label()]).inc();
                                    tracing::debug!(%peer, error = %e, "TLS handshake failed");
                                    return;
                                }
                            };
                            let Accepted { stream, listener, sni, identity } = accepted;
                            let (_, conn) = stream.get_ref();
                            let version = conn.protocol_version().map_or("unknown", |v| v.as_str().unwrap_or("unknown"));
                            let alpn = match conn.alpn_protocol() {
                                Some(b"h2") => "h2",
                                Some(b"http/1.1") => "http/1.1",
                                _ => "none",
                            };
                            gateway.metrics.tls_handshakes.with_label_values(&[version, alpn]).inc();
                            let entry = match port {
                                TlsPort::Internal => Entry::Internal,
                                TlsPort::Ingress(port) => Entry::Ingress { port, tls_listener: listener },
                            };
                            let client = Arc::new(ClientInfo::new(peer).with_entry(entry).with_tls(sni, identity.as_ref()));
                            serve_client(stream, alpn == "h2", client, shared, draining, slot).await;
                        }));
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop((listener, draining));
    tracing::info!(timeout = ?shared.settings.drain_timeout, "draining connections");
    let _ = drain.send(true);
    tokio::select! {
        () = drain.closed() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(shared.settings.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

/// Serves one client connection: HTTP/2 when ALPN said so or its first bytes
/// are the preface, HTTP/1.x otherwise.
async fn serve_client<T>(mut io: T, h2: bool, client: Arc<ClientInfo>, shared: Arc<Shared>, draining: watch::Receiver<bool>, slot: Admitted)
where
    T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let _slot = slot;
    let metrics = shared.gateway.metrics.clone();
    metrics.active_connections.inc();
    let timeout = shared.settings.header_read_timeout;
    if h2 {
        h2::serve(io, client, shared.gateway.clone(), &shared.settings, draining).await;
    } else {
        let mut first = BytesMut::with_capacity(8 * 1024);
        match tokio::time::timeout(timeout, starts_with_preface(&mut io, &mut first)).await {
            Ok(Ok(true)) => h2::serve(Rewind::new(first.freeze(), io), client, shared.gateway.clone(), &shared.settings, draining).await,
            Ok(Ok(false)) => h1::serve(io, first, shared.gateway.clone(), client, &shared.settings, draining).await,
            Ok(Err(e)) => tracing::debug!(peer = %client.addr, error = %e, "client connection closed before a request"),
            Err(_) => tracing::debug!(peer = %client.addr, "nothing sent within the header read timeout; connection closed"),
        }
    }
    metrics.active_connections.dec();
}

/// Reads until the bytes in `buf` are, or cannot be, HTTP/2's preface.
async fn starts_with_preface<T: AsyncRead + Unpin>(io: &mut T, buf: &mut BytesMut) -> std::io::Result<bool> {
    loop {
        let seen = buf.len().min(PREFACE.len());
        if buf[..seen] != PREFACE[..seen] {
            return Ok(false);
        }
        if seen == PREFACE.len() {
            return Ok(true);
        }
        if io.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}
