//! The bodies that cross the upstream side: what the gateway sends (the
//! client's body as it streams, teed to a mirror, or a buffered copy that can
//! be sent again on retry), the mirror's copy, and the upstream's response
//! body, which hands its HTTP/1.1 connection back to the pool once it has been
//! read to the end.
//!
//! The client's body is read under the body read timeout
//! (`--request-body-timeout-secs`): once the gateway waits for body bytes,
//! each 64 KiB (or the end) must arrive within the timeout. A per-read idle
//! timeout, nginx's `client_body_timeout`, does not bound a client that sends
//! one byte a second; this does, while an upload of any size at more than
//! 64 KiB per timeout passes. gRPC request streams are exempt (a client stream
//! may rightly stay quiet for minutes: that is what gRPC deadlines are for).

use std::{
    error::Error,
    fmt,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, combinators::BoxBody};
use hyper::body::Incoming;
use tokio::{sync::mpsc, time::Sleep};

use super::{BoxError, h1::ResponseBody, pool::Lease};

/// Bytes after which the body read timeout starts again.
const BODY_TIMEOUT_WINDOW: usize = 64 * 1024;

/// Why reading the client's body failed: the client's fault either way, never the upstream's.
#[derive(Debug)]
pub enum ClientBodyError {
    /// The connection broke the body's framing or went away.
    Read(BoxError),
    /// 64 KiB (or the end) did not arrive within the body read timeout.
    Timeout,
}

impl fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read(e) => write!(f, "reading the client's body: {e}"),
            Self::Timeout => f.write_str("the client's body did not arrive within the body read timeout"),
        }
    }
}

impl Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            Self::Read(e) => Some(e.as_ref()),
            Self::Timeout => None,
        }
    }
}

/// The client's request body, read under the body read timeout: hyper's
/// (HTTP/2) or the gateway's own HTTP/1.1 server's, boxed once per request
/// (an empty body is a zero-sized box, which allocates nothing).
pub struct ClientBody {
    inner: BoxBody<Bytes, BoxError>,
    timeout: Option<Duration>,
    /// Armed the first time the gateway waits for bytes, moved on after each window.
    deadline: Option<Pin<Box<Sleep>>>,
    window: usize,
}

impl ClientBody {
    /// Read without a timeout until [`Self::set_timeout`] sets one.
    pub fn new<B>(inner: B) -> Self
    where
        B: Body<Data = Bytes> + Send + Sync + 'static,
        B::Error: Into<BoxError>,
    {
        Self { inner: inner.map_err(Into::into).boxed(), timeout: None, deadline: None, window: 0 }
    }

    /// The body read timeout (`None`: none), set once the request path knows
    /// what the request is; the server that read the head does not.
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }
}

/// An empty body (a zero-sized box: no allocation), what a request taken
/// out of its place leaves there.
impl Default for ClientBody {
    fn default() -> Self {
        Self::new(http_body_util::Empty::new())
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                this.window += frame.data_ref().map_or(0, Bytes::len);
                if this.window >= BODY_TIMEOUT_WINDOW {
                    this.window = 0;
                    if let (Some(deadline), Some(timeout)) = (&mut this.deadline, this.timeout) {
                        deadline.as_mut().reset(tokio::time::Instant::now() + timeout);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(ClientBodyError::Read(e)))),
            Poll::Ready(None) => Poll::Ready(None),
            Poll::Pending => {
                let Some(timeout) = this.timeout else { return Poll::Pending };
                let deadline = this.deadline.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
                ready!(deadline.as_mut().poll(cx));
                Poll::Ready(Some(Err(ClientBodyError::Timeout)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The body of an upstream request: the client's own as it streams, the same
/// teed to a mirror, or a buffered copy that can be sent again on retry.
pub enum RequestBody {
    Direct(ClientBody),
    Teed {
        inner: ClientBody,
        tx: Option<mpsc::Sender<Bytes>>,
        aborted: Arc<AtomicBool>,
    },
    /// Yields its bytes once; `None` once sent.
    Replay(Option<Bytes>),
}

impl RequestBody {
    /// The buffered bytes, when this body can be sent again.
    pub fn replayable(&self) -> Option<Bytes> {
        match self {
            Self::Replay(bytes) => Some(bytes.clone().unwrap_or_default()),
            _ => None,
        }
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = ClientBodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, ClientBodyError>>> {
        match self.get_mut() {
            Self::Direct(inner) => Pin::new(inner).poll_frame(cx),
            Self::Replay(bytes) => Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
            Self::Teed { inner, tx, aborted } => {
                let frame = ready!(Pin::new(inner).poll_frame(cx));
                match &frame {
                    Some(Ok(f)) => {
                        if let (Some(data), Some(sender)) = (f.data_ref(), tx.as_ref())
                            && sender.try_send(data.clone()).is_err()
                        {
                            aborted.store(true, Ordering::Release);
                            *tx = None;
                        }
                    }
                    Some(Err(_)) => {
                        aborted.store(true, Ordering::Release);
                        *tx = None;
                    }
                    // End of body: dropping the sender ends the mirror's body cleanly.
                    None => *tx = None,
                }
                Poll::Ready(frame)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Direct(inner) | Self::Teed { inner, .. } => inner.is_end_stream(),
            Self::Replay(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Direct(inner) | Self::Teed { inner, .. } => inner.size_hint(),
            Self::Replay(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
        }
    }
}

/// The mirror copy's body was cut short because the mirror fell behind.
#[derive(Debug)]
pub struct MirrorAborted;

impl fmt::Display for MirrorAborted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("mirror copy aborted: the mirror fell behind the request")
    }
}

impl Error for MirrorAborted {}

/// The body of a mirrored copy.
pub enum MirrorBody {
    Empty,
    /// A copy of a buffered body, sent once.
    Full(Option<Bytes>),
    Channel {
        rx: mpsc::Receiver<Bytes>,
        aborted: Arc<AtomicBool>,
    },
}

impl Body for MirrorBody {
    type Data = Bytes;
    type Error = MirrorAborted;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, MirrorAborted>>> {
        match self.get_mut() {
            Self::Empty => Poll::Ready(None),
            Self::Full(bytes) => Poll::Ready(bytes.take().filter(|b| !b.is_empty()).map(|b| Ok(Frame::data(b)))),
            Self::Channel { rx, aborted } => match ready!(rx.poll_recv(cx)) {
                Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
                None if aborted.load(Ordering::Acquire) => Poll::Ready(Some(Err(MirrorAborted))),
                None => Poll::Ready(None),
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Self::Empty => true,
            Self::Full(bytes) => bytes.as_ref().is_none_or(Bytes::is_empty),
            Self::Channel { .. } => false,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Empty => SizeHint::with_exact(0),
            Self::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Self::Channel { .. } => SizeHint::default(),
        }
    }
}

/// An upstream response body: hyper's (HTTP/2, TLS), or read from a pooled
/// HTTP/1.1 connection, which goes back to its pool once the body has been
/// read to its end (see [`super::h1::ResponseBody`]).
pub struct UpstreamBody {
    inner: Inner,
}

enum Inner {
    Hyper(Incoming),
    Http1(ResponseBody<Lease>),
    /// After an upgrade (101).
    Empty,
}

impl UpstreamBody {
    pub(super) fn hyper(body: Incoming) -> Self {
        Self { inner: Inner::Hyper(body) }
    }

    pub(super) fn http1(body: ResponseBody<Lease>) -> Self {
        Self { inner: Inner::Http1(body) }
    }

    pub(super) fn empty() -> Self {
        Self { inner: Inner::Empty }
    }
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.get_mut().inner {
            Inner::Hyper(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            Inner::Http1(body) => Pin::new(body).poll_frame(cx).map_err(BoxError::from),
            Inner::Empty => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Hyper(body) => body.is_end_stream(),
            Inner::Http1(body) => body.is_end_stream(),
            Inner::Empty => true,
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Hyper(body) => body.size_hint(),
            Inner::Http1(body) => body.size_hint(),
            Inner::Empty => SizeHint::with_exact(0),
        }
    }
}
