//! The server side of a TLS connection: read the ClientHello, choose the
//! listener by SNI (the same choice a request's Host makes), and hand the
//! handshake to that listener's configuration as it is at this moment.

use std::{sync::Arc, time::Duration};

use rustls::server::Acceptor;
use tokio::net::TcpStream;
use tokio_rustls::{LazyConfigAcceptor, server::TlsStream};

use crate::config::SnapshotCell;
use router_tls::ClientIdentity;

/// Which kind of TLS port a connection arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsPort {
    /// A VPCIngress HTTPS port.
    Ingress(u16),
    /// The internal HTTPS listener (`ROUTER_TLS_CERT`/`ROUTER_TLS_KEY`).
    Internal,
}

/// A completed handshake.
pub struct Accepted {
    pub stream: TlsStream<TcpStream>,
    /// The listener SNI chose (ingress ports only).
    pub listener: Option<Arc<str>>,
    /// The server name the client asked for, lower-case.
    pub sni: Option<String>,
    /// The verified client certificate's identity, on listeners that ask for one.
    pub identity: Option<ClientIdentity>,
}

/// Why a handshake did not complete; the label is the metric's.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no TLS handshake within {0:?}")]
    Timeout(Duration),
    #[error("no listener with a usable certificate serves server name {0:?}")]
    NoListener(Option<String>),
    #[error("{0}")]
    Tls(std::io::Error),
}

impl HandshakeError {
    pub fn label(&self) -> &'static str {
        match self {
            Self::Timeout(_) => "timeout",
            Self::NoListener(_) => "no-listener",
            Self::Tls(_) => "handshake",
        }
    }
}

/// Runs the handshake of one connection within `timeout`.
pub async fn handshake(stream: TcpStream, port: TlsPort, cell: &SnapshotCell, timeout: Duration) -> Result<Accepted, HandshakeError> {
    let run = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), stream).await.map_err(HandshakeError::Tls)?;
        let sni = start.client_hello().server_name().map(str::to_ascii_lowercase);
        let tls = cell.tls();
        let (listener, config) = match port {
            TlsPort::Internal => (None, tls.internal.clone()),
            TlsPort::Ingress(port) => {
                let snapshot = cell.load();
                match snapshot.ingress.ports.get(&port).and_then(|p| p.select(sni.as_deref())) {
                    Some(l) => (Some(l.label.clone()), tls.listeners.get(&l.label).cloned()),
                    None => (None, None),
                }
            }
        };
        let Some(config) = config else { return Err(HandshakeError::NoListener(sni)) };
        let stream = start.into_stream(config).await.map_err(HandshakeError::Tls)?;
        let identity = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(ClientIdentity::of);
        Ok(Accepted { stream, listener, sni, identity })
    };
    tokio::time::timeout(timeout, run).await.unwrap_or(Err(HandshakeError::Timeout(timeout)))
}
