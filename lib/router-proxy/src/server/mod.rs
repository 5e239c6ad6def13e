//! Client-facing listeners: HTTP/1.1 and h2c (prior knowledge) on one port,
//! or TLS first (the listener chosen by SNI, HTTP/2 or HTTP/1.1 by ALPN), with the limits that keep a slow or hostile client from holding the
//! gateway (header read timeout, header count and size, concurrent HTTP/2
//! streams and the bounds of `flood`, the connection limit of `admission`)
//! and a graceful drain on shutdown (stop accepting, HTTP/2 GOAWAY, let
//! in-flight requests finish up to the drain timeout).

mod admission;
mod flood;

pub use admission::ConnectionLimit;

use std::{future::Future, sync::Arc, time::Duration};

use hyper::service::service_fn;
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::{conn::auto, graceful::GracefulShutdown},
};
use tokio::net::TcpListener;

use self::{admission::Admitted, flood::Guarded};
use crate::{
    http::headers::{ClientInfo, Entry},
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

fn builder(settings: &ServerSettings) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout)
        .max_headers(settings.max_headers)
        .max_buf_size(settings.max_header_bytes.max(8192))
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(settings.max_concurrent_streams)
        .max_header_list_size(u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX))
        .max_send_buf_size(settings.max_send_buf_per_stream)
        // Rapid reset (CVE-2023-44487): streams the client resets before they are accepted; then GOAWAY.
        .max_pending_accept_reset_streams(20)
        // Streams the gateway itself had to reset (malformed requests, say); then GOAWAY.
        .max_local_error_reset_streams(1024)
        .keep_alive_interval(Some(Duration::from_secs(30)));
    b
}

/// Serves `listener` until `shutdown` resolves, then drains.
pub async fn serve(
    listener: TcpListener,
    kind: ListenerKind,
    gateway: Arc<Gateway>,
    settings: ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let builder = builder(&settings);
    let graceful = GracefulShutdown::new();
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
                let Some(slot) = settings.connections.admit() else {
                    gateway.metrics.connections_refused.with_label_values(&["max-connections"]).inc();
                    tracing::debug!(%peer, "connection limit reached; connection refused");
                    if let ListenerKind::Cleartext(_) = kind {
                        settings.connections.refuse_cleartext(stream);
                    }
                    continue;
                };
                match &kind {
                    ListenerKind::Cleartext(entry) => {
                        let client = ClientInfo::new(peer).with_entry(entry.clone());
                        serve_connection(&builder, &graceful, stream, client, gateway.clone(), slot, settings.header_read_timeout);
                    }
                    ListenerKind::Tls(port) => {
                        let (builder, watcher, gateway, port) = (builder.clone(), graceful.watcher(), gateway.clone(), *port);
                        let timeout = settings.header_read_timeout;
                        tokio::spawn(async move {
                            let _slot = slot;
                            let accepted = match handshake(stream, port, &gateway.cell, timeout).await {
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
                            let metrics = gateway.metrics.clone();
                            let framing = client.framing.clone();
                            let service = service_fn(move |req| gateway.clone().handle(req, client.clone()));
                            let io = TokioIo::new(Guarded::new(stream, metrics.clone(), timeout, framing));
                            let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
                            metrics.active_connections.inc();
                            if let Err(e) = watcher.watch(conn).await {
                                tracing::debug!(%peer, error = %e, "client connection ended with an error");
                            }
                            metrics.active_connections.dec();
                        });
                    }
                }
            }
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!(timeout = ?settings.drain_timeout, "draining connections");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(settings.drain_timeout) => tracing::warn!("drain timeout reached; closing remaining connections"),
    }
}

fn serve_connection(
    builder: &auto::Builder<TokioExecutor>,
    graceful: &GracefulShutdown,
    stream: tokio::net::TcpStream,
    client: ClientInfo,
    gateway: Arc<Gateway>,
    slot: Admitted,
    first_bytes: Duration,
) {
    let metrics = gateway.metrics.clone();
    let peer = client.addr;
    let framing = client.framing.clone();
    let client = Arc::new(client);
    let service = service_fn(move |req| gateway.clone().handle(req, client.clone()));
    let io = TokioIo::new(Guarded::new(stream, metrics.clone(), first_bytes, framing));
    let conn = builder.serve_connection_with_upgrades(io, service).into_owned();
    let conn = graceful.watch(conn);
    metrics.active_connections.inc();
    tokio::spawn(async move {
        let _slot = slot;
        if let Err(e) = conn.await {
            tracing::debug!(%peer, error = %e, "client connection ended with an error");
        }
        metrics.active_connections.dec();
    });
}
