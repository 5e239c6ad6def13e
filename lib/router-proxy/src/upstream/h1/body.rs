//! The response body of an upstream HTTP/1.1 exchange, read from its
//! connection as it is polled. Data frames are slices of the bytes read (no
//! copy). The moment the last byte is read, a connection that may carry
//! another request is handed to its [`Release`] (the pool); a broken body, or
//! one delimited by the connection closing, takes the connection with it.
//!
//! A body dropped before its end (its client went away: an HTTP/2 stream
//! reset, a closed connection) is read to its end in the background, within
//! [`DRAIN_TIME`] and [`DRAIN_BYTES`], and its connection pooled: under load a
//! client that gives up mid-response would otherwise cost an upstream
//! connection each time (h2load's end cost 15–36 new backend connections the
//! next run, when the 64 streams it left were cut between head and body).

use std::{
    pin::Pin,
    task::{Context, Poll, ready},
    time::Duration,
};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;

use super::{
    Connection, H1Error,
    wire::{BodyFraming, ChunkedDecoder, Decoded},
};

/// How long, and how many more response bytes, an abandoned response may
/// take to be read to its end in the background before its connection is
/// given up instead.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);
pub const DRAIN_BYTES: usize = 256 * 1024;

/// Where a connection goes once its response has been read to the end.
/// (`Send + 'static`: an abandoned body finishes on a task of its own.)
pub trait Release: Send + Unpin + 'static {
    fn release(self, conn: Connection);
}

pub struct ResponseBody<R: Release> {
    conn: Option<Connection>,
    state: State,
    /// Whether the connection can carry another request after this response.
    reusable: bool,
    release: Option<R>,
    /// Whether being dropped before the end hands the rest to a drain task:
    /// not for the drain's own body, so a drain that runs out of time ends.
    drain_on_drop: bool,
}

enum State {
    Length(u64),
    Chunked(ChunkedDecoder),
    Close,
    Done,
}

impl<R: Release> ResponseBody<R> {
    /// The body of a response framed as `framing` on `conn`; `reusable` when
    /// neither side asked to close the connection.
    pub fn new(conn: Connection, framing: BodyFraming, reusable: bool, release: R) -> Self {
        let state = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => State::Done,
            BodyFraming::Length(n) => State::Length(n),
            BodyFraming::Chunked => State::Chunked(ChunkedDecoder::default()),
            BodyFraming::Close => State::Close,
        };
        let reusable = reusable && framing != BodyFraming::Close;
        let mut body = Self { conn: Some(conn), state, reusable, release: Some(release), drain_on_drop: true };
        if matches!(body.state, State::Done) {
            body.finish();
        }
        body
    }

    /// The response is read: the connection goes back if it can carry another
    /// request (and the upstream sent nothing beyond this response).
    fn finish(&mut self) {
        self.state = State::Done;
        if let (Some(conn), Some(release)) = (self.conn.take(), self.release.take())
            && self.reusable
            && conn.buf.is_empty()
        {
            release.release(conn);
        }
    }

    /// Reads the rest of the body and drops it, at most [`DRAIN_BYTES`] of it:
    /// at its end the connection goes back. `None` when the body broke or was too long.
    pub async fn drain(mut self) -> Option<()> {
        self.drain_on_drop = false;
        let mut left = DRAIN_BYTES;
        while let Some(frame) = self.frame().await {
            if let Some(data) = frame.ok()?.data_ref() {
                left = left.checked_sub(data.len())?;
            }
        }
        Some(())
    }

    fn fail(&mut self, e: H1Error) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        self.state = State::Done;
        self.conn = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl<R: Release + Unpin> Body for ResponseBody<R> {
    type Data = Bytes;
    type Error = H1Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, H1Error>>> {
        let this = self.get_mut();
        loop {
            let Some(conn) = this.conn.as_mut() else { return Poll::Ready(None) };
            let ended = match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(left) if !conn.buf.is_empty() => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(conn.buf.len());
                    let data = conn.buf.split_to(n).freeze();
                    *left -= n as u64;
                    if *left == 0 {
                        this.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                State::Length(_) => H1Error::ClosedInBody,
                State::Chunked(decoder) => match decoder.decode(&mut conn.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        this.finish();
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        this.finish();
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::More) => H1Error::ClosedInBody,
                    Err(e) => return this.fail(e.into()),
                },
                State::Close if !conn.buf.is_empty() => {
                    let n = conn.buf.len();
                    return Poll::Ready(Some(Ok(Frame::data(conn.buf.split_to(n).freeze()))));
                }
                State::Close => {
                    // The connection's end is the body's end.
                    match ready!(conn.poll_fill(cx)) {
                        Ok(0) => {
                            this.finish();
                            return Poll::Ready(None);
                        }
                        Ok(_) => continue,
                        Err(e) => return this.fail(e.into()),
                    }
                }
            };
            // More bytes are needed; the connection ending now cuts the body short.
            match ready!(conn.poll_fill(cx)) {
                Ok(0) => return this.fail(ended),
                Ok(_) => {}
                Err(e) => return this.fail(e.into()),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            State::Chunked(_) | State::Close => SizeHint::default(),
        }
    }
}

impl<R: Release> Drop for ResponseBody<R> {
    fn drop(&mut self) {
        if self.conn.is_none() || matches!(self.state, State::Done) || !self.drain_on_drop {
            return;
        }
        let runtime = tokio::runtime::Handle::try_current();
        let (true, Some(_), Ok(runtime)) = (self.reusable, self.release.as_ref(), runtime) else {
            tracing::debug!("response body dropped before its end: its upstream connection closes");
            return;
        };
        let rest = Self {
            conn: self.conn.take(),
            state: std::mem::replace(&mut self.state, State::Done),
            reusable: true,
            release: self.release.take(),
            drain_on_drop: false,
        };
        runtime.spawn(async move {
            if tokio::time::timeout(DRAIN_TIME, rest.drain()).await.ok().flatten().is_none() {
                tracing::debug!("abandoned response body not read to its end in time: its upstream connection closes");
            }
        });
    }
}
