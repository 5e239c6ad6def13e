//! The gateway's own HTTP/1.1 client, one connection at a time: it writes the
//! request head and body, reads the response head, and hands back a body
//! that reads the socket itself, on the task that polls it (the client
//! connection's).
//!
//! hyper's connection-level client ran every upstream connection as a task of
//! its own; each request, response head and body chunk crossed between that
//! task and the request's through channels and wake-ups, about 14k of a small
//! request's 47k instructions (docs/performance.md). Here there is no second
//! task: the request's future does the writing and reading, and a connection
//! goes back to its pool the moment the last byte of its response is read.
//!
//! * [`wire`]: the bytes (heads, framing, chunked coding), pure and tested;
//! * [`exchange`](Connection::write_request): writing a request while
//!   watching for an early answer, reading the response head;
//! * [`body`]: the response body, read from the connection as it is polled.

pub mod body;
mod exchange;
pub mod wire;

use std::{
    io,
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll, Waker, ready},
};

use bytes::BytesMut;
use tokio::{
    io::{AsyncRead, AsyncWrite, AsyncWriteExt},
    net::TcpStream,
};

pub use self::{
    body::{DRAIN_BYTES, DRAIN_TIME, Release, ResponseBody},
    exchange::Written,
    wire::{RequestHead, WireError},
};
use super::BoxError;

/// Smallest and largest read into a connection's buffer (either side's).
/// Reads grow while they fill what was offered, so a large body is read in
/// 64 KiB steps and a small message costs one small buffer; the cap bounds
/// what one connection holds for a peer that reads slowly.
const MIN_READ: usize = 8 * 1024;
const MAX_READ: usize = 64 * 1024;

/// The size of a connection's next read, growing from [`MIN_READ`] to [`MAX_READ`].
#[derive(Debug)]
pub(crate) struct GrowingReads(usize);

impl GrowingReads {
    pub(crate) const fn new() -> Self {
        Self(MIN_READ)
    }

    /// Reads what `io` has into `buf`; `Ok(0)` at its end. Through
    /// `AsyncRead` (not `try_read`): a short read clears the socket's read
    /// readiness there, which [`Connection::is_idle_and_open`] relies on.
    pub(crate) fn poll_fill<R: AsyncRead + Unpin>(
        &mut self,
        io: &mut R,
        buf: &mut BytesMut,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<usize>> {
        buf.reserve(self.0);
        let offered = buf.capacity() - buf.len();
        let n = ready!(tokio_util::io::poll_read_buf(Pin::new(io), cx, buf))?;
        if n == offered {
            self.0 = (self.0 * 2).min(MAX_READ);
        }
        Poll::Ready(Ok(n))
    }
}

/// Why an upstream HTTP/1.1 exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("upstream connection: {0}")]
    Io(#[from] io::Error),
    #[error("the upstream closed the connection before answering")]
    ClosedBeforeResponse,
    #[error("the upstream closed the connection inside the response head")]
    ClosedInHead,
    #[error("the upstream closed the connection before the end of the response body")]
    ClosedInBody,
    /// The body being sent (the client's) failed; its error is the source.
    #[error("sending the request body: {0}")]
    Body(#[source] BoxError),
}

impl H1Error {
    /// Whether the connection was found closed before the upstream saw
    /// anything of the request: what an idle keep-alive connection the
    /// upstream closed just as it was reused looks like.
    pub fn is_stale_connection(&self) -> bool {
        match self {
            Self::ClosedBeforeResponse => true,
            Self::Io(e) => {
                matches!(e.kind(), io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted)
            }
            _ => false,
        }
    }
}

/// One upstream TCP connection and the bytes read from it but not yet used.
#[derive(Debug)]
pub struct Connection {
    io: TcpStream,
    buf: BytesMut,
    reads: GrowingReads,
}

impl Connection {
    pub fn new(io: TcpStream) -> Self {
        Self { io, buf: BytesMut::new(), reads: GrowingReads::new() }
    }

    /// Whether an idle connection can take a request: the upstream has
    /// neither closed it nor sent anything unasked since its last response.
    ///
    /// Usually answered without a syscall: the last read was short, which
    /// (epoll being edge-triggered) cleared the socket's read readiness, and
    /// no event has set it since, so nothing arrived and no FIN either. Only
    /// a socket marked readable is probed with a read; asking the kernel every
    /// time was one `recvfrom` per request, returning EAGAIN. (A close the
    /// runtime has not seen yet is the keep-alive race `send` already retries.)
    pub fn is_idle_and_open(&self) -> bool {
        if !self.buf.is_empty() {
            return false;
        }
        match self.io.poll_read_ready(&mut Context::from_waker(Waker::noop())) {
            Poll::Pending => true,
            Poll::Ready(Ok(())) => matches!(self.io.try_read(&mut [0; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            Poll::Ready(Err(_)) => false,
        }
    }

    /// Reads what the upstream sent into the buffer; `Ok(0)` at its end.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.reads.poll_fill(&mut self.io, &mut self.buf, cx)
    }

    async fn fill(&mut self) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_fill(cx)).await
    }

    /// After an accepted upgrade: copies bytes both ways between `client` and
    /// the upstream (first those the upstream sent right after its 101) until
    /// either side closes.
    pub async fn splice<T: AsyncRead + AsyncWrite + Unpin>(mut self, client: &mut T) -> io::Result<()> {
        client.write_all(&self.buf).await?;
        self.buf.clear();
        tokio::io::copy_bidirectional(client, &mut self.io).await.map(|_| ())
    }
}

/// The upstream connection of an accepted upgrade (101), carried in the
/// response's extensions until the gateway splices it to the client's.
#[derive(Clone, Debug)]
pub struct Upgrade(Arc<Mutex<Option<Connection>>>);

impl Upgrade {
    pub fn new(conn: Connection) -> Self {
        Self(Arc::new(Mutex::new(Some(conn))))
    }

    pub fn take(&self) -> Option<Connection> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).take()
    }
}
