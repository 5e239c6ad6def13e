//! The connector agent (`tunnel-gateway connect`): serves the tunnel ALPN
//! next to an off-VPC service. A connection from a peer that is not one of
//! the allowed gateways is closed right after the handshake, before any
//! stream is read. Each stream's CONNECT is answered `403` for a target that
//! is not listed, `502` when the target does not accept a TCP connection in
//! time, else `200`, and then the stream and the TCP connection are spliced.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use bytes::BytesMut;
use iroh::{Endpoint, PublicKey, endpoint::Connection};
use tokio::net::TcpStream;

use crate::{connect, metrics::TunnelMetrics, splice::splice};

/// How long a target gets to accept a TCP connection before the CONNECT is answered 502.
pub const TARGET_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The QUIC error code a refused peer's connection is closed with, and its reason.
pub const FORBIDDEN_CODE: u32 = 403;

/// What a connector serves, and to whom.
pub struct ConnectorPolicy {
    /// Gateways allowed to connect.
    pub gateways: BTreeSet<PublicKey>,
    /// `host:port` targets CONNECT may ask for, compared case-insensitively on the host.
    pub targets: BTreeSet<String>,
}

impl ConnectorPolicy {
    pub fn new(gateways: impl IntoIterator<Item = PublicKey>, targets: impl IntoIterator<Item = String>) -> Self {
        Self { gateways: gateways.into_iter().collect(), targets: targets.into_iter().map(|t| normalize(&t)).collect() }
    }

    fn allows_target(&self, authority: &str) -> bool {
        self.targets.contains(&normalize(authority))
    }
}

fn normalize(authority: &str) -> String {
    authority.to_ascii_lowercase()
}

/// Accepts connections on `endpoint` until it closes.
pub async fn run(endpoint: Endpoint, policy: Arc<ConnectorPolicy>, metrics: Arc<TunnelMetrics>) {
    while let Some(incoming) = endpoint.accept().await {
        let (policy, metrics) = (policy.clone(), metrics.clone());
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) => serve_connection(conn, &policy, &metrics).await,
                Err(e) => tracing::debug!(error = %e, "incoming connection failed"),
            }
        });
    }
}

async fn serve_connection(conn: Connection, policy: &Arc<ConnectorPolicy>, metrics: &Arc<TunnelMetrics>) {
    let peer = conn.remote_id();
    if !policy.gateways.contains(&peer) {
        metrics.denied_peers.with_label_values(&["connector"]).inc();
        tracing::warn!(peer = %peer, "refused a gateway that is not in --allow-gateway");
        conn.close(FORBIDDEN_CODE.into(), b"gateway not allowed");
        return;
    }
    tracing::info!(gateway = %peer.fmt_short(), "gateway connected");
    loop {
        match conn.accept_bi().await {
            Ok((send, recv)) => {
                let (policy, metrics) = (policy.clone(), metrics.clone());
                tokio::spawn(async move { serve_stream(send, recv, &policy, &metrics).await });
            }
            Err(e) => {
                tracing::info!(gateway = %peer.fmt_short(), reason = %e, "gateway connection closed");
                return;
            }
        }
    }
}

async fn serve_stream(
    mut send: iroh::endpoint::SendStream,
    mut recv: iroh::endpoint::RecvStream,
    policy: &ConnectorPolicy,
    metrics: &TunnelMetrics,
) {
    let mut rest = BytesMut::new();
    let authority = match connect::read_request(&mut recv, &mut rest).await {
        Ok(a) => a,
        Err(e) => {
            tracing::debug!(error = %e, "stream without a usable CONNECT");
            let _ = connect::send_response(&mut send, 400).await;
            let _ = send.finish();
            return;
        }
    };
    let count = |result: &str| metrics.connections.with_label_values(&[authority.as_str(), result]).inc();
    if !policy.allows_target(&authority) {
        count("forbidden");
        tracing::warn!(target = %authority, "CONNECT to a target this connector does not serve");
        let _ = connect::send_response(&mut send, 403).await;
        let _ = send.finish();
        return;
    }
    let origin = match tokio::time::timeout(TARGET_CONNECT_TIMEOUT, TcpStream::connect(&authority)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return bad_gateway(send, &authority, &e.to_string(), count).await,
        Err(_) => return bad_gateway(send, &authority, "timed out", count).await,
    };
    let _ = origin.set_nodelay(true);
    if connect::send_response(&mut send, 200).await.is_err() {
        return;
    }
    count("ok");
    let (origin_read, mut origin_write) = origin.into_split();
    if connect::forward_rest(&mut origin_write, &mut rest).await.is_err() {
        return;
    }
    let active = metrics.active_streams.with_label_values(&[authority.as_str()]);
    active.inc();
    let to_origin = metrics.bytes.with_label_values(&[authority.as_str(), "to-origin"]);
    let from_origin = metrics.bytes.with_label_values(&[authority.as_str(), "from-origin"]);
    if let Err(e) = splice((recv, send), (origin_read, origin_write), &to_origin, &from_origin).await {
        tracing::debug!(target = %authority, error = %e, "tunnel stream ended with an error");
    }
    active.dec();
}

async fn bad_gateway(mut send: iroh::endpoint::SendStream, authority: &str, why: &str, count: impl Fn(&str)) {
    count("bad-gateway");
    tracing::warn!(target = %authority, error = %why, "origin unreachable");
    let _ = connect::send_response(&mut send, 502).await;
    let _ = send.finish();
}
