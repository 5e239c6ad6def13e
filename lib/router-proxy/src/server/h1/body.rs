//! The read side of a client connection, and a request body read from it.
//!
//! While a request's body is in flight the body owns the read side (the
//! socket's read half and the bytes read but not yet used), so it reads the
//! socket itself on whatever task polls it, with no channel between it and
//! the connection. When the body ends, or is dropped before its end (an
//! answer that never needed it), the read side goes back to the connection,
//! which then knows whether the body was read to its end: if not, what is
//! left must be drained before another request can be read.

use std::{
    io,
    pin::Pin,
    task::{Context, Poll, ready},
};

use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use tokio::{io::AsyncRead, sync::oneshot};

use super::head::BodyFraming;
use crate::upstream::h1::{
    GrowingReads,
    wire::{ChunkedDecoder, Decoded, WireError},
};

/// The read side of a client connection.
pub struct Reader<R> {
    pub io: R,
    pub buf: BytesMut,
    reads: GrowingReads,
}

impl<R: AsyncRead + Unpin> Reader<R> {
    pub fn new(io: R, buf: BytesMut) -> Self {
        Self { io, buf, reads: GrowingReads::new() }
    }

    /// Reads what the client sent into the buffer; `Ok(0)` at its end.
    pub fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        self.reads.poll_fill(&mut self.io, &mut self.buf, cx)
    }
}

/// What is left of a body.
#[derive(Debug)]
pub enum Left {
    Length(u64),
    Chunked(ChunkedDecoder),
    Done,
}

impl Left {
    pub fn of(framing: BodyFraming) -> Self {
        match framing {
            BodyFraming::None => Self::Done,
            BodyFraming::Length(n) => Self::Length(n),
            BodyFraming::Chunked => Self::Chunked(ChunkedDecoder::default()),
        }
    }

    /// The next piece of the body from `reader`'s buffer, filling it as needed;
    /// `None` at the body's end.
    pub fn poll_next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut Reader<R>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        loop {
            match self {
                Self::Done => return Poll::Ready(None),
                Self::Length(left) if !reader.buf.is_empty() => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(reader.buf.len());
                    *left -= n as u64;
                    let data = reader.buf.split_to(n).freeze();
                    if *left == 0 {
                        *self = Self::Done;
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Self::Length(_) => {}
                Self::Chunked(decoder) => match decoder.decode(&mut reader.buf) {
                    Ok(Decoded::Data(data)) => return Poll::Ready(Some(Ok(Frame::data(data)))),
                    Ok(Decoded::Trailers(trailers)) => {
                        *self = Self::Done;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Ok(Decoded::End) => {
                        *self = Self::Done;
                        return Poll::Ready(None);
                    }
                    Ok(Decoded::More) => {}
                    Err(e) => return Poll::Ready(Some(Err(BodyError::Framing(e)))),
                },
            }
            match ready!(reader.poll_fill(cx)) {
                Ok(0) => return Poll::Ready(Some(Err(BodyError::Closed))),
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(BodyError::Io(e)))),
            }
        }
    }
}

/// Why a client's body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    #[error("the client closed the connection inside the request body")]
    Closed,
    #[error("reading the request body: {0}")]
    Io(#[from] io::Error),
    #[error(transparent)]
    Framing(WireError),
}

/// The read side handed back by a body, with what was left unread of it.
pub struct Returned<R> {
    pub reader: Reader<R>,
    pub left: Left,
}

/// A request body read from the client connection.
pub struct RequestBody<R> {
    reader: Option<Reader<R>>,
    left: Left,
    back: Option<oneshot::Sender<Returned<R>>>,
}

impl<R> RequestBody<R> {
    /// The body framed by `framing` on `reader`, and where the read side comes back.
    pub fn new(reader: Reader<R>, framing: BodyFraming) -> (Self, oneshot::Receiver<Returned<R>>) {
        let (tx, rx) = oneshot::channel();
        (Self { reader: Some(reader), left: Left::of(framing), back: Some(tx) }, rx)
    }

    fn give_back(&mut self) {
        if let (Some(reader), Some(back)) = (self.reader.take(), self.back.take()) {
            let left = std::mem::replace(&mut self.left, Left::Done);
            let _ = back.send(Returned { reader, left });
        }
    }
}

impl<R: AsyncRead + Unpin> Body for RequestBody<R> {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = self.get_mut();
        let Some(reader) = this.reader.as_mut() else { return Poll::Ready(None) };
        let next = ready!(this.left.poll_next(reader, cx));
        if matches!(this.left, Left::Done) {
            this.give_back();
        }
        Poll::Ready(next)
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.left, Left::Done)
    }

    fn size_hint(&self) -> SizeHint {
        match self.left {
            Left::Length(n) => SizeHint::with_exact(n),
            Left::Done => SizeHint::with_exact(0),
            Left::Chunked(_) => SizeHint::default(),
        }
    }
}

impl<R> Drop for RequestBody<R> {
    fn drop(&mut self) {
        self.give_back();
    }
}
