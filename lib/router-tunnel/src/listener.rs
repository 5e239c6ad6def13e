//! The TCP side of a tunnel-backed VPCService on one gateway replica. Each
//! accepted connection becomes one stream to one live connector: the one
//! with the fewest streams in flight. When opening the stream fails before
//! any byte of the client's moved (the connection died, the CONNECT got no
//! answer in time), the next connector is tried, once. The listener only
//! exists while a connector is live (the supervisor in [`crate::serve`]
//! opens and closes it), so router-gateway sees connection refused on a
//! replica that cannot carry the service, and ejects that endpoint.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::BytesMut;
use tokio::{
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::{
    connect,
    link::{Link, by_least_in_flight},
    metrics::TunnelMetrics,
    splice::splice,
};

/// How long a connector gets to answer a CONNECT before the next one is tried.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(3);

/// An open listener; dropping it closes the port (connections already carried go on).
pub struct ServiceListener {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for ServiceListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a binding's connections go.
#[derive(Clone)]
pub struct Route {
    pub binding: String,
    pub target: String,
    pub links: Vec<Arc<Link>>,
}

impl ServiceListener {
    /// Binds `addr` and carries every connection it accepts along `route`.
    pub fn open(addr: SocketAddr, route: Route, metrics: Arc<TunnelMetrics>) -> std::io::Result<Self> {
        // Bound synchronously (a bind never waits) so the caller can hold a plain lock around it.
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(listener)?;
        let addr = listener.local_addr()?;
        let route = Arc::new(route);
        let task = tokio::spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((tcp, _)) => {
                        let (route, metrics) = (route.clone(), metrics.clone());
                        tokio::spawn(async move { carry(tcp, &route, &metrics).await });
                    }
                    // Out of descriptors and the like: wait, keep the listener.
                    Err(e) => {
                        tracing::warn!(binding = %route.binding, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
        });
        Ok(Self { addr, task })
    }
}

/// Why opening a stream on one connector did not give a tunnel.
enum Opened {
    Tunnel(iroh::endpoint::SendStream, iroh::endpoint::RecvStream, BytesMut),
    /// The connector answered, and not 200: final.
    Refused(u16),
    /// Nothing moved yet: another connector may be tried.
    Failed(String),
}

async fn open_stream(link: &Link, target: &str) -> Opened {
    let Some(conn) = link.connection() else { return Opened::Failed("connection closed".into()) };
    let exchange = async {
        let (mut send, mut recv) = conn.open_bi().await.map_err(|e| e.to_string())?;
        connect::send_request(&mut send, target).await.map_err(|e| e.to_string())?;
        let mut rest = BytesMut::new();
        let status = connect::read_response(&mut recv, &mut rest).await.map_err(|e| e.to_string())?;
        Ok::<_, String>((send, recv, rest, status))
    };
    match tokio::time::timeout(OPEN_TIMEOUT, exchange).await {
        Ok(Ok((send, recv, rest, 200))) => Opened::Tunnel(send, recv, rest),
        Ok(Ok((_, _, _, status))) => Opened::Refused(status),
        Ok(Err(e)) => Opened::Failed(e),
        Err(_) => Opened::Failed(format!("no answer to CONNECT within {OPEN_TIMEOUT:?}")),
    }
}

async fn carry(tcp: TcpStream, route: &Route, metrics: &TunnelMetrics) {
    let count = |result: &str| metrics.connections.with_label_values(&[route.binding.as_str(), result]).inc();
    let candidates = by_least_in_flight(&route.links);
    if candidates.is_empty() {
        count("no-connector");
        return;
    }
    for link in candidates.iter().take(2) {
        let guard = link.stream_guard();
        match open_stream(link, &route.target).await {
            Opened::Tunnel(send, recv, mut rest) => {
                count("ok");
                let _ = tcp.set_nodelay(true);
                let (tcp_read, mut tcp_write) = tcp.into_split();
                if connect::forward_rest(&mut tcp_write, &mut rest).await.is_err() {
                    return;
                }
                let active = metrics.active_streams.with_label_values(&[route.binding.as_str()]);
                active.inc();
                let to_origin = metrics.bytes.with_label_values(&[route.binding.as_str(), "to-origin"]);
                let from_origin = metrics.bytes.with_label_values(&[route.binding.as_str(), "from-origin"]);
                if let Err(e) = splice((tcp_read, tcp_write), (recv, send), &to_origin, &from_origin).await {
                    tracing::debug!(binding = %route.binding, error = %e, "tunnel stream ended with an error");
                }
                active.dec();
                drop(guard);
                return;
            }
            Opened::Refused(status) => {
                count(match status {
                    403 => "forbidden",
                    502 => "bad-gateway",
                    _ => "refused",
                });
                tracing::warn!(binding = %route.binding, connector = %link.id.fmt_short(), status, target = %route.target, "connector refused the CONNECT");
                return;
            }
            Opened::Failed(why) => {
                tracing::debug!(binding = %route.binding, connector = %link.id.fmt_short(), error = %why, "stream open failed");
            }
        }
    }
    count("open-failed");
}
