//! The gateway's own HTTP/1.x server, one client connection at a time: read
//! a request head, hand the request to the request path on this same task,
//! write the response, and go on to the next request on the connection.
//!
//! hyper's server did the same work with more machinery than a proxy needs:
//! about 9k of the 37k instructions of a small proxied request (its
//! dispatcher, the body channel between the connection and the request, and
//! a header map built then re-walked on the way out; docs/performance.md).
//! Here a request without a body carries an empty one that costs nothing, a
//! body reads the socket itself on the task that polls it ([`body`]), and the
//! response head and a small body leave in one write ([`respond`]).
//!
//! * [`head`]: parsing a request head and its framing, pure and tested;
//! * [`body`]: the connection's read side and the request body read from it;
//! * [`respond`]: the response's framing, head and body as bytes.
//!
//! What a client is held to: the head must arrive within the header read
//! timeout (from the moment the gateway waits for it, so an idle keep-alive
//! connection is closed after that long too, as hyper's server did), fit the
//! header limits (431) and parse (400); the connection then closes. A body
//! left unread by an answer that did not need it is drained if it is small
//! and quick to arrive, else the connection closes after the response.

mod body;
pub mod head;
mod respond;

use std::{sync::Arc, time::Duration};

use bytes::BytesMut;
use http::{Method, Request, StatusCode};
use http_body::Body as _;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf},
    sync::watch,
    time::{Instant, Sleep},
};

use self::{
    body::{Left, Reader, RequestBody, Returned},
    head::{BodyFraming, Head, HeadError, Limits},
    respond::{Asked, Written},
};
use super::ServerSettings;
use crate::{
    http::{
        headers::ClientInfo,
        upgrade::{UpgradeSlot, Upgraded},
    },
    request::{AmbiguousFraming, Gateway},
    upstream::ClientBody,
};

/// An unread body is drained up to this many bytes, within [`DRAIN_TIME`], to keep the connection.
const DRAIN_BYTES: u64 = 64 * 1024;
const DRAIN_TIME: Duration = Duration::from_secs(1);
/// How long a closing connection reads and discards what the client still sends,
/// so the close does not turn into a reset that destroys the response in flight.
const LINGER: Duration = Duration::from_secs(1);

/// Serves HTTP/1.x requests on `io` until the client closes, a request asks
/// for the close, an error ends it, or `drain` says the gateway is shutting
/// down. `read_ahead` holds the bytes already read from `io`.
pub async fn serve<T>(
    io: T,
    read_ahead: BytesMut,
    gateway: Arc<Gateway>,
    client: Arc<ClientInfo>,
    settings: &ServerSettings,
    mut drain: watch::Receiver<bool>,
) where
    T: AsyncRead + AsyncWrite + Send + Sync + Unpin + 'static,
{
    let (read, mut write) = tokio::io::split(io);
    // Away (inside a request body) while a body is in flight; back before the next head.
    let mut reader = Some(Reader::new(read, read_ahead));
    let mut out = Vec::new();
    let limits = Limits { max_headers: settings.max_headers, max_bytes: settings.max_header_bytes };
    let mut timer = Box::pin(tokio::time::sleep(settings.header_read_timeout));
    while let Some(r) = reader.as_mut() {
        let mut request = Request::new(ClientBody::default());
        let head = match next_head(r, limits, settings.header_read_timeout, &mut timer, &mut drain, &mut request).await {
            Ok(Some(head)) => head,
            Ok(None) => return,
            Err(e) => {
                tracing::debug!(peer = %client.addr, error = %e, "request head refused");
                refuse(&mut write, e.status()).await;
                return linger(reader, write).await;
            }
        };
        let Head { body, mut keep_alive, expect_continue, upgrade, trailers, ambiguous } = head;
        // Kept aside: the request path takes the request out of its place when it forwards it.
        let (method, version) = (request.method().clone(), request.version());
        let mut slot = None;
        // No body is the empty one the request was made with, which allocates nothing.
        let back = match body {
            // The ambiguous request's body is never read: its answer is a 400 and the connection closes.
            _ if ambiguous => None,
            BodyFraming::None => None,
            framing => {
                if expect_continue && write.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").await.is_err() {
                    return;
                }
                let Some(r) = reader.take() else { return };
                let (body, back) = RequestBody::new(r, framing);
                *request.body_mut() = ClientBody::new(body);
                Some(back)
            }
        };
        if ambiguous {
            request.extensions_mut().insert(AmbiguousFraming);
            keep_alive = false;
        } else if upgrade && back.is_none() {
            let (upgrade_slot, tx) = UpgradeSlot::pair();
            request.extensions_mut().insert(upgrade_slot);
            slot = Some(tx);
        }

        let (response, fields) = gateway.answer(&mut request, &client).await;
        let (parts, body) = response.into_parts();
        // A body the answer left unread gives the read side back when it drops.
        drop(request);
        let upgraded =
            slot.is_some() && (parts.status == StatusCode::SWITCHING_PROTOCOLS || (method == Method::CONNECT && parts.status.is_success()));
        keep_alive &= !upgraded && !drain.has_changed().unwrap_or(true);
        let asked = Asked { method: &method, version };
        let framing = respond::framing(asked, &parts, &fields, body.size_hint().exact());
        // A body that ends with the connection ends the connection.
        keep_alive &= framing != respond::Framing::Close;
        respond::write_head(&mut out, &parts, &fields, framing, asked, keep_alive || upgraded);
        let written = respond::write_body(&mut write, &mut out, body, framing, trailers).await;
        out.clear();
        match written {
            Ok(Written::Complete) => {}
            Ok(Written::Cut) | Err(_) => return,
        }
        if let Some(tx) = slot.filter(|_| upgraded) {
            // An upgrade request has no body, so the read side never left.
            if let Some(Reader { io, buf, .. }) = reader {
                let _ = tx.send(Upgraded::new(buf.freeze(), Box::new(io.unsplit(write))));
            }
            return;
        }
        if let Some(back) = back {
            match tokio::time::timeout(settings.header_read_timeout, back).await {
                Ok(Ok(Returned { reader: mut returned, left })) => {
                    keep_alive &= drain_unread(&mut returned, left).await;
                    reader = Some(returned);
                }
                // The body is still held somewhere, or its task went away with it.
                _ => return,
            }
        }
        if !keep_alive {
            return linger(reader, write).await;
        }
    }
}

/// Reads the next request head into `request`: `None` when the client closed, stayed
/// silent past the header read timeout, or the gateway is draining while it is idle.
async fn next_head<R: AsyncRead + Unpin>(
    reader: &mut Reader<R>,
    limits: Limits,
    timeout: Duration,
    timer: &mut std::pin::Pin<Box<Sleep>>,
    drain: &mut watch::Receiver<bool>,
    request: &mut Request<ClientBody>,
) -> Result<Option<Head>, HeadError> {
    if let Some(head) = head::parse(&mut reader.buf, limits, request)? {
        return Ok(Some(head));
    }
    timer.as_mut().reset(Instant::now() + timeout);
    loop {
        tokio::select! {
            biased;
            filled = std::future::poll_fn(|cx| reader.poll_fill(cx)) => match filled {
                Ok(0) | Err(_) => return Ok(None),
                Ok(_) => {
                    if let Some(head) = head::parse(&mut reader.buf, limits, request)? {
                        return Ok(Some(head));
                    }
                }
            },
            () = timer.as_mut() => {
                tracing::debug!("no complete request head within the header read timeout; connection closed");
                return Ok(None);
            }
            _ = drain.changed(), if reader.buf.is_empty() => return Ok(None),
        }
    }
}

/// Reads and discards what is left of a body the answer did not need, if it
/// is small and arrives quickly; whether the connection can carry another request.
async fn drain_unread<R: AsyncRead + Unpin>(reader: &mut Reader<R>, mut left: Left) -> bool {
    if matches!(left, Left::Done) {
        return true;
    }
    let drained = async {
        let mut read = 0u64;
        while let Some(frame) = std::future::poll_fn(|cx| left.poll_next(reader, cx)).await {
            let Ok(frame) = frame else { return false };
            read += frame.data_ref().map_or(0, |d| d.len() as u64);
            if read > DRAIN_BYTES {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_TIME, drained).await.unwrap_or(false)
}

/// Answers a head that was refused; the connection closes after.
async fn refuse<W: AsyncWrite + Unpin>(write: &mut W, status: StatusCode) {
    let line = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or("")
    );
    let _ = write.write_all(line.as_bytes()).await;
}

/// Closes the connection after its last response: the write side first, then
/// what the client still sends is read and thrown away for a moment, so the
/// kernel does not answer unread bytes with a reset that would destroy the
/// response before the client has read it.
async fn linger<T: AsyncRead + AsyncWrite>(reader: Option<Reader<ReadHalf<T>>>, mut write: WriteHalf<T>) {
    let Some(Reader { mut io, .. }) = reader else { return };
    if write.shutdown().await.is_err() {
        return;
    }
    let mut sink = [0u8; 4096];
    let _ = tokio::time::timeout(LINGER, async {
        let mut total = 0usize;
        while let Ok(n @ 1..) = io.read(&mut sink).await {
            total += n;
            if total > 256 * 1024 {
                break;
            }
        }
    })
    .await;
}
