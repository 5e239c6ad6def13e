//! The client's side of a connection that stops being HTTP: an accepted
//! upgrade (101, WebSocket) or a CONNECT tunnel (2xx). The gateway's servers
//! hand it over once the response head is written: the HTTP/1.1 server
//! (`server::h1`) the connection itself, the HTTP/2 server (`server::h2`)
//! the CONNECT's stream. The request path asks for it the same way for both.

use std::sync::{Arc, Mutex};

use http::Request;
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::oneshot,
};

use super::rewind::Rewind;
use crate::upstream::BoxError;

/// A byte stream both ways.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// The client's upgraded connection, with the bytes it sent after its
/// request head that the server had already read.
pub type Upgraded = Rewind<Box<dyn Io>>;

/// Where a server leaves the connection (or stream) for the request that
/// asked to upgrade it; carried in the request's extensions (which need `Clone`).
#[derive(Clone)]
pub struct UpgradeSlot(Arc<Mutex<Option<oneshot::Receiver<Upgraded>>>>);

impl UpgradeSlot {
    /// The slot for a request, and the sender the server keeps.
    pub fn pair() -> (Self, oneshot::Sender<Upgraded>) {
        let (tx, rx) = oneshot::channel();
        (Self(Arc::new(Mutex::new(Some(rx)))), tx)
    }
}

/// The client's connection once the response that accepts the upgrade is out.
pub struct OnUpgrade(Option<oneshot::Receiver<Upgraded>>);

impl OnUpgrade {
    /// Takes the upgrade out of `req`: the slot its server left, if any.
    pub fn on<B>(req: &mut Request<B>) -> Self {
        Self(req.extensions_mut().remove::<UpgradeSlot>().and_then(|slot| slot.0.lock().unwrap_or_else(|p| p.into_inner()).take()))
    }

    /// Waits for the connection; an error when the response did not accept the upgrade.
    pub async fn connection(self) -> Result<Box<dyn Io>, BoxError> {
        match self.0 {
            Some(rx) => Ok(Box::new(rx.await.map_err(|_| "the client connection was not upgraded")?)),
            None => Err("the request carried no upgrade".into()),
        }
    }
}
