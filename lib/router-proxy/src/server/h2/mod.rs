//! The gateway's own HTTP/2 server (h2c and TLS with ALPN `h2`), driving
//! [`router_h2::conn::Connection`], which holds every rule of the protocol,
//! on one task per connection: it reads frames, starts each request's
//! future, polls the futures and the response bodies of the streams that
//! were woken (each stream has a waker of its own, [`wake`]), and writes
//! what the connection produced in one vectored write.
//!
//! Why the streams of a connection share its task, where hyper spawned a
//! task per stream: the spawn, the channels between the two tasks and the
//! lock around the shared stream store cost more than the request path
//! itself for a small request (docs/performance.md). A connection's streams
//! then run on one thread at a time, as they do in nginx and HAProxy; a
//! busy gateway has many connections to spread.
//!
//! A request body reaches the request path through a [`pipe::Pipe`]; the
//! client's window is given back as the body is read, so an upstream that
//! reads slowly slows the client down instead of filling memory; a client
//! that sent `Expect: 100-continue` gets its `100` when the body is first
//! waited for, as from the HTTP/1.1 server. A CONNECT
//! that the request path accepts (egress) becomes a tunnel over its stream.
//! The flood guard (`server::flood`) sits under this server, and the
//! connection state bounds the rest (see its docs).

mod pipe;
mod respond;
mod wake;

use std::{
    collections::{HashMap, VecDeque},
    future::{Future, poll_fn},
    io::{self, IoSlice},
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Duration,
};

use bytes::{Buf, Bytes, BytesMut};
use foldhash::fast::FixedState;
use http::{Method, Request, Response, StatusCode};
use http_body::Body as _;
use router_h2::{
    conn::{Config, Connection, Event},
    error::Reason,
};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    sync::{oneshot, watch},
};
use tokio_util::io::poll_read_buf;

use self::{
    pipe::{Pipe, RequestBody, Tunnel},
    wake::{ReadySet, StreamWake},
};
use super::{ServerSettings, flood::Guarded};
use crate::{
    http::{
        headers::{self, ClientInfo},
        rewind::Rewind,
        upgrade::{UpgradeSlot, Upgraded},
    },
    local::ProxyBody,
    request::{Gateway, ResponseFields},
    upstream::ClientBody,
};

/// A PING goes out this often; one not answered by the next closes the connection.
const KEEPALIVE: Duration = Duration::from_secs(30);
/// Each read takes at least this much room.
const READ_CHUNK: usize = 16 * 1024 + 9;
/// Reading stops while this much waits to be written (a client that sends but does not read).
const WRITE_BACKLOG: usize = 256 * 1024;
/// Slices per vectored write.
const MAX_SLICES: usize = 32;

/// The connection's settings, from the server's.
fn config(settings: &ServerSettings) -> Config {
    Config {
        max_concurrent_streams: settings.max_concurrent_streams,
        max_header_list_size: u32::try_from(settings.max_header_bytes).unwrap_or(u32::MAX),
        stream_window: 1024 * 1024,
        connection_window: 1024 * 1024,
        max_send_buffer: settings.max_send_buf_per_stream,
        max_local_resets: 1024,
    }
}

/// Serves one HTTP/2 connection until it ends; on drain, GOAWAY and the open streams finish.
pub async fn serve<T>(io: T, client: Arc<ClientInfo>, gateway: Arc<Gateway>, settings: &ServerSettings, mut draining: watch::Receiver<bool>)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let peer = client.addr;
    let io = Guarded::new(io, gateway.metrics.clone(), settings.header_read_timeout);
    let mut driver = Driver::new(io, config(settings), gateway, client);
    let mut drained = false;
    let keepalive = tokio::time::sleep(KEEPALIVE);
    tokio::pin!(keepalive);
    let mut unanswered: Option<u64> = None;
    loop {
        tokio::select! {
            ended = poll_fn(|cx| driver.poll(cx)) => {
                if let Err(e) = ended {
                    tracing::debug!(%peer, error = %e, "HTTP/2 connection ended with an error");
                }
                return;
            }
            _ = draining.changed(), if !drained => {
                drained = true;
                driver.conn.go_away();
            }
            () = &mut keepalive => {
                if unanswered.is_some_and(|pongs| driver.conn.pongs() == pongs) {
                    tracing::debug!(%peer, "keep-alive PING not answered; connection closed");
                    return;
                }
                unanswered = Some(driver.conn.pongs());
                driver.conn.ping();
                keepalive.as_mut().reset(tokio::time::Instant::now() + KEEPALIVE);
            }
        }
    }
}

type Answer = Pin<Box<dyn Future<Output = (Response<ProxyBody>, ResponseFields)> + Send>>;

enum State {
    /// The request path is at work.
    Answering(Answer),
    /// The response body is being handed to the connection.
    Sending(ProxyBody),
    /// An accepted CONNECT: what the tunnel writes goes to the client.
    Tunnel(Arc<Pipe>),
}

/// A stream the gateway is answering.
struct Work {
    waker: Waker,
    wake: Arc<StreamWake>,
    state: State,
    /// The request body's pipe, when it has one.
    body: Option<Arc<Pipe>>,
    /// Where an accepted CONNECT's tunnel goes.
    upgrade: Option<oneshot::Sender<Upgraded>>,
}

struct Driver<T> {
    io: T,
    conn: Connection,
    read: BytesMut,
    write: VecDeque<Bytes>,
    write_len: usize,
    works: HashMap<u32, Work, FixedState>,
    ready: Arc<ReadySet>,
    /// Streams to poll now, and those waiting for room in their send buffer.
    now: Vec<u32>,
    blocked: Vec<u32>,
    gateway: Arc<Gateway>,
    client: Arc<ClientInfo>,
    /// The client closed its side.
    eof: bool,
    /// Written since the last flush (TLS holds written bytes until flushed).
    unflushed: bool,
}

impl<T: AsyncRead + AsyncWrite + Unpin> Driver<T> {
    fn new(io: T, config: Config, gateway: Arc<Gateway>, client: Arc<ClientInfo>) -> Self {
        Self {
            io,
            conn: Connection::new(config),
            read: BytesMut::with_capacity(READ_CHUNK),
            write: VecDeque::new(),
            write_len: 0,
            works: HashMap::with_hasher(FixedState::default()),
            ready: Arc::default(),
            now: Vec::new(),
            blocked: Vec::new(),
            gateway,
            client,
            eof: false,
            unflushed: false,
        }
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.ready.register(cx.waker());
        loop {
            let mut progress = false;
            if !self.eof && self.write_len < WRITE_BACKLOG {
                if self.read.capacity() - self.read.len() < READ_CHUNK {
                    self.read.reserve(READ_CHUNK);
                }
                match poll_read_buf(Pin::new(&mut self.io), cx, &mut self.read) {
                    Poll::Ready(Ok(0)) => {
                        self.eof = true;
                        progress = true;
                    }
                    Poll::Ready(Ok(_)) => {
                        progress = true;
                        if let Err(e) = self.conn.recv(&mut self.read) {
                            tracing::debug!(peer = %self.client.addr, error = %e, "HTTP/2 protocol error; connection closing");
                            self.eof = true;
                        }
                    }
                    Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                    Poll::Pending => {}
                }
            }
            self.events();
            self.ready.take(&mut self.now);
            if !self.now.is_empty() {
                progress = true;
                self.poll_works();
            }
            progress |= self.flush(cx)?;
            if self.write.is_empty() && !self.conn.has_output() && (self.conn.is_finished() || (self.eof && self.works.is_empty())) {
                return Pin::new(&mut self.io).poll_shutdown(cx).map(|_| Ok(()));
            }
            if !progress {
                return Poll::Pending;
            }
        }
    }

    /// Takes what the client asked for.
    fn events(&mut self) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                Event::Request { stream, head, end_stream } => self.start(stream, head, end_stream),
                Event::Data { stream, data, end_stream } => match self.works.get(&stream).and_then(|w| w.body.as_ref()) {
                    Some(pipe) => pipe.push(data, end_stream),
                    // The answer is done: nobody reads these bytes.
                    None => self.conn.release(stream, data.len()),
                },
                Event::Trailers { stream, trailers } => {
                    if let Some(pipe) = self.works.get(&stream).and_then(|w| w.body.as_ref()) {
                        pipe.push_trailers(trailers);
                    }
                }
                Event::Reset { stream, reason } => {
                    if let Some(work) = self.works.remove(&stream) {
                        self.end(stream, work, Some(reason));
                    }
                }
            }
        }
    }

    fn start(&mut self, stream: u32, head: http::request::Parts, end_stream: bool) {
        let (waker, wake) = self.ready.waker(stream);
        let mut req = Request::from_parts(head, ClientBody::default());
        let body = (!end_stream).then(|| Pipe::new(waker.clone()));
        if let Some(pipe) = &body {
            if headers::expects_continue(req.headers()) {
                pipe.expect_continue();
            }
            *req.body_mut() = ClientBody::new(RequestBody(pipe.clone()));
        }
        let upgrade = (req.method() == Method::CONNECT).then(|| {
            let (slot, tx) = UpgradeSlot::pair();
            req.extensions_mut().insert(slot);
            tx
        });
        let (gateway, client) = (self.gateway.clone(), self.client.clone());
        let answer: Answer = Box::pin(async move {
            let mut req = req;
            gateway.answer(&mut req, &client).await
        });
        self.works.insert(stream, Work { waker, wake, state: State::Answering(answer), body, upgrade });
        self.now.push(stream);
    }

    /// Polls the streams in `now`; those done are forgotten.
    fn poll_works(&mut self) {
        let mut now = std::mem::take(&mut self.now);
        for &stream in &now {
            let Some(work) = self.works.get_mut(&stream) else { continue };
            work.wake.polled();
            if let Some(pipe) = &work.body {
                let taken = pipe.take_count();
                if taken > 0 {
                    self.conn.release(stream, taken);
                }
                if pipe.continue_due() {
                    let _ = self.conn.send_interim(stream, StatusCode::CONTINUE);
                }
            }
            if poll_work(&mut self.conn, stream, work, &mut self.blocked)
                && let Some(work) = self.works.remove(&stream)
            {
                self.end(stream, work, None);
            }
        }
        now.clear();
        if self.now.is_empty() {
            self.now = now;
        }
    }

    /// Forgets a stream's work; its request body's unread bytes go back to the client's window.
    fn end(&mut self, stream: u32, work: Work, reset: Option<Reason>) {
        if let Some(pipe) = work.body {
            let unread = pipe.close();
            // Whoever still holds the body (an upstream exchange cut short) sees it end in an error.
            pipe.reset(reset.unwrap_or(Reason::CANCEL));
            self.conn.release(stream, unread);
        }
    }

    /// Writes what the connection has produced; true if anything was written
    /// or a stream that waited for room in its send buffer has some now.
    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<bool> {
        let mut progress = false;
        loop {
            if self.write.is_empty() {
                self.conn.output(&mut self.write);
                self.write_len = self.write.iter().map(Bytes::len).sum();
                // Data left the streams' buffers: those waiting for room may go on.
                let (conn, now) = (&self.conn, &mut self.now);
                self.blocked.retain(|&stream| {
                    let waits = conn.send_room(stream) == Ok(0);
                    if !waits {
                        now.push(stream);
                        progress = true;
                    }
                    waits
                });
                if self.write.is_empty() {
                    if self.unflushed && Pin::new(&mut self.io).poll_flush(cx)?.is_ready() {
                        self.unflushed = false;
                    }
                    return Ok(progress);
                }
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let n = self.write.len().min(MAX_SLICES);
            for (slice, bytes) in slices.iter_mut().zip(&self.write) {
                *slice = IoSlice::new(bytes);
            }
            match Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..n]) {
                Poll::Ready(Ok(0)) => return Err(io::ErrorKind::WriteZero.into()),
                Poll::Ready(Ok(mut n)) => {
                    progress = true;
                    self.unflushed = true;
                    self.write_len -= n;
                    while n > 0 {
                        let front = self.write.front_mut().expect("written bytes were queued");
                        if front.len() <= n {
                            n -= front.len();
                            self.write.pop_front();
                        } else {
                            front.advance(n);
                            n = 0;
                        }
                    }
                }
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(progress),
            }
        }
    }
}

/// Polls one stream's work: its answer, then its response body or tunnel,
/// as far as the stream's send buffer has room. True once the work is done.
fn poll_work(conn: &mut Connection, stream: u32, work: &mut Work, blocked: &mut Vec<u32>) -> bool {
    let mut cx = Context::from_waker(&work.waker);
    loop {
        // A body or a tunnel is polled only while the stream's send buffer has room.
        if !matches!(work.state, State::Answering(_)) {
            match conn.send_room(stream) {
                Err(_) => return true,
                Ok(0) => {
                    blocked.push(stream);
                    return false;
                }
                Ok(_) => {}
            }
        }
        match &mut work.state {
            State::Answering(answer) => {
                let Poll::Ready((response, fields)) = answer.as_mut().poll(&mut cx) else { return false };
                let (parts, body) = response.into_parts();
                let tunnel = work.upgrade.is_some() && parts.status.is_success();
                let end = !tunnel && body.is_end_stream();
                if conn.send_headers(stream, parts.status, |block| respond::encode_head(&parts, &fields, block), end).is_err() || end {
                    return true;
                }
                work.state = match work.upgrade.take().filter(|_| tunnel) {
                    Some(tx) => {
                        let to_client = Pipe::new(work.waker.clone());
                        let from_client = work.body.clone().unwrap_or_else(|| Pipe::ended(work.waker.clone()));
                        let io: Box<dyn crate::http::upgrade::Io> = Box::new(Tunnel::new(from_client, to_client.clone()));
                        let _ = tx.send(Rewind::new(Bytes::new(), io));
                        State::Tunnel(to_client)
                    }
                    None => State::Sending(body),
                };
            }
            State::Sending(body) => match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Pending => return false,
                Poll::Ready(None) => {
                    let _ = conn.send_data(stream, Bytes::new(), true);
                    return true;
                }
                Poll::Ready(Some(Err(e))) => {
                    tracing::debug!(stream, error = %e, "response body failed; HTTP/2 stream reset");
                    conn.reset(stream, Reason::INTERNAL_ERROR);
                    return true;
                }
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let end = body.is_end_stream();
                        if conn.send_data(stream, data, end).is_err() || end {
                            return true;
                        }
                    }
                    Err(frame) => {
                        if let Ok(trailers) = frame.into_trailers() {
                            let _ = conn.send_trailers(stream, &trailers);
                        }
                        return true;
                    }
                },
            },
            State::Tunnel(pipe) => match pipe.poll_next(&mut cx) {
                Poll::Pending => return false,
                Poll::Ready(Some(chunk)) => {
                    if conn.send_data(stream, chunk, false).is_err() {
                        return true;
                    }
                }
                Poll::Ready(None) => {
                    let _ = conn.send_data(stream, Bytes::new(), true);
                    return true;
                }
            },
        }
    }
}
