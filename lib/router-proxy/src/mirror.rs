//! Request mirroring: a copy of a share of matched requests goes to another
//! VPCService, fire and forget — its answer, its slowness or its failure never
//! touches the client's request.
//!
//! Bodies are teed as they stream: each data chunk the upstream request reads
//! is also offered to the mirror through a small bounded channel. If the mirror
//! falls behind and the channel is full, the mirror copy is aborted (its
//! request fails rather than arriving truncated) instead of slowing the real
//! request down or buffering without bound.

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
use http::{
    Request, Uri, Version,
    uri::{PathAndQuery, Scheme},
};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use router_core::{balance::PickContext, snapshot::DestinationTarget};
use tokio::sync::mpsc;

use crate::{
    proxy::{Gateway, upstream_is_http1},
    tls,
};

/// Data chunks the mirror may lag behind before its copy is aborted.
const MIRROR_BACKLOG: usize = 64;

/// The body of an upstream request: the client's own as it streams, the same
/// teed to a mirror, or a buffered copy that can be sent again on retry.
pub enum RequestBody {
    Direct(Incoming),
    Teed {
        inner: Incoming,
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
    type Error = hyper::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
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

impl Gateway {
    /// Starts a mirrored copy of the request when `percent` says so, and
    /// returns the body to send upstream (teed when the copy needs it).
    pub(crate) fn mirror(&self, target: &DestinationTarget, percent: u32, parts: &http::request::Parts, body: RequestBody) -> RequestBody {
        if percent == 0 || (percent < 100 && rand::random_range(0..100) >= percent) {
            return body;
        }
        let DestinationTarget::Resolved { service, picker } = target else {
            self.metrics.mirrors.with_label_values(&["unresolved"]).inc();
            return body;
        };
        let Some(endpoint) = picker.pick(&PickContext::default()) else {
            self.metrics.mirrors.with_label_values(&["no-endpoint"]).inc();
            return body;
        };
        let (client, scheme) = if !tls::wants_tls(service) {
            (self.upstreams.mirror_client(service.protocol, service.vrf_device.as_deref()), Scheme::HTTP)
        } else if let Some(Ok(clients)) = self.cell.tls().upstream.get(&service.key) {
            (clients.mirror.clone(), Scheme::HTTPS)
        } else {
            self.metrics.mirrors.with_label_values(&["failed"]).inc();
            return body;
        };
        let path = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
        let Ok(uri) = Uri::builder().scheme(scheme).authority(endpoint.authority.clone()).path_and_query(path).build() else {
            return body;
        };
        let aborted = Arc::new(AtomicBool::new(false));
        let (mirror_body, upstream_body) = match body {
            RequestBody::Replay(bytes) => (MirrorBody::Full(bytes.clone()), RequestBody::Replay(bytes)),
            RequestBody::Direct(inner) if inner.is_end_stream() => (MirrorBody::Empty, RequestBody::Direct(inner)),
            RequestBody::Direct(inner) => {
                let (tx, rx) = mpsc::channel(MIRROR_BACKLOG);
                (MirrorBody::Channel { rx, aborted: aborted.clone() }, RequestBody::Teed { inner, tx: Some(tx), aborted: aborted.clone() })
            }
            teed @ RequestBody::Teed { .. } => return teed,
        };
        let mut req = Request::new(mirror_body);
        *req.method_mut() = parts.method.clone();
        *req.uri_mut() = uri;
        *req.version_mut() = if upstream_is_http1(service.protocol) { Version::HTTP_11 } else { Version::HTTP_2 };
        *req.headers_mut() = parts.headers.clone();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let result = tokio::time::timeout(Duration::from_secs(30), client.request(req)).await;
            let outcome = match result {
                _ if aborted.load(Ordering::Acquire) => "aborted",
                Ok(Ok(_)) => "sent",
                _ => "failed",
            };
            metrics.mirrors.with_label_values(&[outcome]).inc();
        });
        upstream_body
    }
}
