//! The bytes of one stream between the connection's task and whoever reads
//! or writes them elsewhere: a request body read by the request path (maybe
//! on an upstream connection's task), and both directions of a CONNECT
//! tunnel. The connection's task is told when bytes were taken, so that it
//! gives the client's window back or writes what was queued.

use std::{
    collections::VecDeque,
    io,
    pin::Pin,
    sync::{Arc, Mutex, MutexGuard},
    task::{Context, Poll, Waker},
};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use router_h2::error::Reason;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes a tunnel's writer may queue before it waits for the client's window.
const TUNNEL_BUFFER: usize = 64 * 1024;

#[derive(Debug, Default)]
struct State {
    chunks: VecDeque<Bytes>,
    queued: usize,
    trailers: Option<HeaderMap>,
    ended: bool,
    /// The stream was reset: the reader sees an error.
    reset: Option<Reason>,
    /// Bytes taken that the connection has not yet accounted for.
    taken: usize,
    /// The request asked for `100 Continue` before it sends its body; due
    /// once the body is first waited for.
    expects_continue: bool,
    continue_due: bool,
    reader: Option<Waker>,
    writer: Option<Waker>,
}

/// One direction of a stream's bytes. The connection's side holds it too,
/// with the stream's waker, which wakes the connection's task for that stream.
#[derive(Debug)]
pub struct Pipe {
    state: Mutex<State>,
    /// Wakes the connection's task for this stream.
    stream: Waker,
}

impl Pipe {
    pub fn new(stream: Waker) -> Arc<Self> {
        Arc::new(Self { state: Mutex::default(), stream })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A request body whose client waits for `100 Continue` (`Expect: 100-continue`).
    pub fn expect_continue(&self) {
        self.lock().expects_continue = true;
    }

    /// Whether `100 Continue` is to be sent now: the body is waited for and nothing came yet.
    pub fn continue_due(&self) -> bool {
        std::mem::take(&mut self.lock().continue_due)
    }

    /// A pipe that has ended already (a CONNECT whose client sent nothing more).
    pub fn ended(stream: Waker) -> Arc<Self> {
        let pipe = Self::new(stream);
        pipe.lock().ended = true;
        pipe
    }

    /// The connection forgets the stream: the bytes not yet read, and those
    /// read but not yet counted, are returned to be given back to the window.
    pub fn close(&self) -> usize {
        let mut s = self.lock();
        let unread = s.queued + std::mem::take(&mut s.taken);
        s.chunks.clear();
        s.queued = 0;
        unread
    }

    /// Adds bytes for the reader (the connection's side of a request body).
    pub fn push(&self, data: Bytes, end: bool) {
        let mut s = self.lock();
        if !data.is_empty() {
            s.queued += data.len();
            s.chunks.push_back(data);
        }
        s.ended |= end;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    pub fn push_trailers(&self, trailers: HeaderMap) {
        let mut s = self.lock();
        s.trailers = Some(trailers);
        s.ended = true;
        if let Some(w) = s.reader.take() {
            w.wake();
        }
    }

    /// The stream is gone: the reader sees an error, a writer an end.
    pub fn reset(&self, reason: Reason) {
        let mut s = self.lock();
        s.reset = Some(reason);
        for w in [s.reader.take(), s.writer.take()].into_iter().flatten() {
            w.wake();
        }
    }

    /// Bytes taken by the reader since the last call.
    pub fn take_count(&self) -> usize {
        std::mem::take(&mut self.lock().taken)
    }

    /// The connection's side of a tunnel's sending direction: the next chunk
    /// to send, `Ready(None)` at its end; `Pending` registers `cx`.
    pub fn poll_next(&self, cx: &mut Context<'_>) -> Poll<Option<Bytes>> {
        let mut s = self.lock();
        if let Some(chunk) = s.chunks.pop_front() {
            s.queued -= chunk.len();
            if let Some(w) = s.writer.take() {
                w.wake();
            }
            return Poll::Ready(Some(chunk));
        }
        if s.ended || s.reset.is_some() {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    /// The reader's side: the next frame of the body.
    fn poll_frame(&self, cx: &mut Context<'_>, max: usize) -> Poll<Option<Result<Frame<Bytes>, StreamReset>>> {
        let mut s = self.lock();
        // As the HTTP/1.1 server does: the client is told to go on when the body is first read.
        if std::mem::take(&mut s.expects_continue) && s.chunks.is_empty() && !s.ended {
            s.continue_due = true;
            self.stream.wake_by_ref();
        }
        if let Some(front) = s.chunks.front_mut() {
            let chunk = if front.len() <= max { s.chunks.pop_front().expect("front exists") } else { front.split_to(max) };
            s.queued -= chunk.len();
            s.taken += chunk.len();
            drop(s);
            self.stream.wake_by_ref();
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(reason) = s.reset {
            return Poll::Ready(Some(Err(StreamReset(reason))));
        }
        if let Some(t) = s.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        if s.ended {
            return Poll::Ready(None);
        }
        s.reader = Some(cx.waker().clone());
        Poll::Pending
    }

    fn is_end(&self) -> bool {
        let s = self.lock();
        s.ended && s.chunks.is_empty() && s.trailers.is_none()
    }
}

/// The client reset the stream (or the connection ended) before its body did.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("HTTP/2 stream reset ({0})")]
pub struct StreamReset(pub Reason);

/// A request body as it arrives in DATA frames.
pub struct RequestBody(pub Arc<Pipe>);

impl Body for RequestBody {
    type Data = Bytes;
    type Error = StreamReset;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, StreamReset>>> {
        self.0.poll_frame(cx, usize::MAX)
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

/// The client's side of a CONNECT tunnel: reads the stream's DATA, writes DATA back.
pub struct Tunnel {
    pub from_client: Arc<Pipe>,
    pub to_client: Arc<Pipe>,
    /// What was taken from a chunk larger than the reader's buffer.
    rest: Bytes,
}

impl Tunnel {
    pub fn new(from_client: Arc<Pipe>, to_client: Arc<Pipe>) -> Self {
        Self { from_client, to_client, rest: Bytes::new() }
    }
}

impl AsyncRead for Tunnel {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.rest.is_empty() {
            match self.from_client.poll_frame(cx, buf.remaining()) {
                Poll::Ready(Some(Ok(frame))) => self.rest = frame.into_data().unwrap_or_default(),
                Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(io::Error::new(io::ErrorKind::ConnectionReset, e))),
                Poll::Ready(None) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
        let n = self.rest.len().min(buf.remaining());
        buf.put_slice(&self.rest[..n]);
        self.rest.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Tunnel {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let pipe = &self.to_client;
        let mut s = pipe.lock();
        if s.reset.is_some() || s.ended {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.queued >= TUNNEL_BUFFER {
            s.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let n = buf.len().min(TUNNEL_BUFFER - s.queued);
        s.queued += n;
        s.chunks.push_back(Bytes::copy_from_slice(&buf[..n]));
        drop(s);
        pipe.stream.wake_by_ref();
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.to_client.push(Bytes::new(), true);
        self.to_client.stream.wake_by_ref();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Tunnel {
    fn drop(&mut self) {
        // A tunnel dropped without a shutdown still ends its stream.
        self.to_client.push(Bytes::new(), true);
        self.to_client.stream.wake_by_ref();
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        task::Wake,
    };

    use http_body_util::BodyExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Counts the wakes of the connection's side.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn pipe() -> (Arc<Pipe>, Arc<Count>) {
        let count = Arc::new(Count::default());
        (Pipe::new(Waker::from(count.clone())), count)
    }

    #[tokio::test]
    async fn a_request_body_yields_its_data_then_trailers_and_counts_what_was_read() {
        let (p, woken) = pipe();
        p.push(Bytes::from_static(b"ab"), false);
        p.push(Bytes::from_static(b"cde"), false);
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        p.push_trailers(trailers);
        let collected = RequestBody(p.clone()).collect().await.unwrap();
        assert_eq!(collected.trailers().unwrap()["grpc-status"], "0");
        assert_eq!(collected.to_bytes(), "abcde");
        assert_eq!(p.take_count(), 5, "read bytes are counted for the window");
        assert_eq!(p.take_count(), 0);
        assert!(woken.0.load(Ordering::Relaxed) >= 2, "the connection hears of each read");
    }

    #[tokio::test]
    async fn a_reset_stream_ends_its_body_in_an_error_and_close_returns_the_unread_bytes() {
        let (p, _) = pipe();
        p.push(Bytes::from_static(b"unread"), false);
        assert_eq!(p.close(), 6);
        p.reset(Reason::CANCEL);
        let err = RequestBody(p).collect().await.unwrap_err();
        assert_eq!(err.0, Reason::CANCEL);
    }

    #[tokio::test]
    async fn a_tunnel_reads_the_clients_data_and_its_writes_wait_for_room() {
        let (from, _) = pipe();
        let (to, _) = pipe();
        let mut t = Tunnel::new(from.clone(), to.clone());
        from.push(Bytes::from_static(b"hello world"), true);
        let mut got = String::new();
        t.read_to_string(&mut got).await.unwrap();
        assert_eq!(got, "hello world");

        t.write_all(&[0; TUNNEL_BUFFER]).await.unwrap();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut t).poll_write(&mut cx, b"more").is_pending(), "the buffer is full");
        assert!(matches!(to.poll_next(&mut cx), Poll::Ready(Some(chunk)) if chunk.len() == TUNNEL_BUFFER));
        assert!(Pin::new(&mut t).poll_write(&mut cx, b"more").is_ready());
        drop(t);
        assert!(matches!(to.poll_next(&mut cx), Poll::Ready(Some(chunk)) if &chunk[..] == b"more"));
        assert!(matches!(to.poll_next(&mut cx), Poll::Ready(None)), "a dropped tunnel ends its stream");
    }

    #[test]
    fn continue_is_due_when_the_body_is_first_waited_for_and_not_before_or_twice() {
        let p = Pipe::new(Waker::noop().clone());
        p.expect_continue();
        assert!(!p.continue_due(), "not before the body is read");
        let mut body = RequestBody(p.clone());
        let mut cx = Context::from_waker(Waker::noop());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(p.continue_due());
        assert!(Pin::new(&mut body).poll_frame(&mut cx).is_pending());
        assert!(!p.continue_due(), "once");

        let eager = Pipe::new(Waker::noop().clone());
        eager.expect_continue();
        eager.push(Bytes::from_static(b"sent anyway"), true);
        assert!(Pin::new(&mut RequestBody(eager.clone())).poll_frame(&mut cx).is_ready());
        assert!(!eager.continue_due(), "a client that sent its body needs no 100");
    }
}
