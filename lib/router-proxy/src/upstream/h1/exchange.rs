//! One request on one connection, up to the response head.
//!
//! A request body is written while the connection is watched for an answer:
//! an upstream may answer before it has read the whole body (413, 401, a
//! redirect) and stop reading, and a client that waited for the body to be
//! written would wait forever. Interim answers (100 Continue, 103) are read
//! past; a final one ends the writing, and the connection is not reused.

use std::{
    io,
    pin::{Pin, pin},
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use tokio::{
    io::AsyncWriteExt,
    net::tcp::{ReadHalf, WriteHalf},
};

use super::{
    Connection, H1Error,
    wire::{self, RequestFraming, ResponseHead},
};
use crate::upstream::BoxError;

/// Body data at most this long is copied next to what is pending, so small
/// bodies leave with their head in one write; longer data is written as it is.
const COPY_BELOW: usize = 16 * 1024;
/// Pending bytes written out once they reach this.
const FLUSH_AT: usize = 64 * 1024;

/// How the request left.
pub enum Written {
    /// Head and body were written in full.
    Complete,
    /// The upstream answered (a final status) before the body was all written.
    AnsweredEarly(ResponseHead),
}

impl Connection {
    /// Writes `head` (a request head from [`wire::write_request_head`]) and
    /// then `body` (None: the request has none) framed as `framing`. An early
    pub async fn write_request<B>(
        &mut self,
        head: &[u8],
        body: Option<B>,
        framing: RequestFraming,
        map: Option<usize>,
    ) -> Result<Written, H1Error>
    where
        B: Body<Data = Bytes>,
        B::Error: Into<BoxError>,
    {
        let Some(body) = body else {
            self.io.write_all(head).await?;
            return Ok(Written::Complete);
        };
        let (read, mut write) = self.io.split();
        let mut sending = pin!(send_body(&mut write, head.to_vec(), body, framing == RequestFraming::Chunked));
        loop {
            tokio::select! {
                biased;
                sent = &mut sending => return match sent {
                    Ok(()) => Ok(Written::Complete),
                    // The upstream may have answered and closed before the body was all written (a 413):
                    // that answer, if it is there to read, is the response.
                    Err(H1Error::Io(e)) => answered_before(&read, &mut self.buf, map).map(Written::AnsweredEarly).ok_or(H1Error::Io(e)),
                    Err(e) => Err(e),
                },
                ready = read.readable() => {
                    ready?;
                    self.buf.reserve(super::MIN_READ);
                    match read.try_read_buf(&mut self.buf) {
                        Ok(0) => return Err(H1Error::ClosedBeforeResponse),
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                        Err(e) => return Err(e.into()),
                    }
                    while let Some(head) = wire::parse_response_head(&mut self.buf, map)? {
                        if !is_interim(head.status) {
                            return Ok(Written::AnsweredEarly(head));
                        }
                    }
                }
            }
        }
    }

    /// Reads the final response head (interim 1xx answers other than 101 are
    /// dropped); `map` as for [`wire::parse_response_head`].
    pub async fn read_head(&mut self, map: Option<usize>) -> Result<ResponseHead, H1Error> {
        loop {
            while let Some(head) = wire::parse_response_head(&mut self.buf, map)? {
                if !is_interim(head.status) {
                    return Ok(head);
                }
            }
            if self.fill().await? == 0 {
                return Err(if self.buf.is_empty() { H1Error::ClosedBeforeResponse } else { H1Error::ClosedInHead });
            }
        }
    }
}

/// A final answer already received on a connection whose writing failed.
fn answered_before(read: &ReadHalf<'_>, buf: &mut BytesMut, map: Option<usize>) -> Option<ResponseHead> {
    loop {
        buf.reserve(super::MIN_READ);
        match read.try_read_buf(buf) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    while let Some(head) = wire::parse_response_head(buf, map).ok()? {
        if !is_interim(head.status) {
            return Some(head);
        }
    }
    None
}

fn is_interim(status: StatusCode) -> bool {
    status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS
}

/// Writes `out` (the head) and the body after it, chunked or as it is.
async fn send_body<B>(write: &mut WriteHalf<'_>, mut out: Vec<u8>, body: B, chunked: bool) -> Result<(), H1Error>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    let mut body = pin!(body);
    let mut trailers = None;
    loop {
        // What the body has ready goes out with what is pending; waiting for more writes the pending bytes first.
        let frame = match poll_now(body.as_mut()) {
            Some(frame) => frame,
            None => {
                write.write_all(&out).await?;
                out.clear();
                body.frame().await
            }
        };
        let Some(frame) = frame else { break };
        let data = match frame.map_err(|e| H1Error::Body(e.into()))?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if data.is_empty() {
            continue;
        }
        if chunked {
            wire::write_chunk_size(&mut out, data.len());
        }
        if data.len() < COPY_BELOW {
            out.extend_from_slice(&data);
        } else {
            write.write_all(&out).await?;
            out.clear();
            write.write_all(&data).await?;
        }
        if chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= FLUSH_AT {
            write.write_all(&out).await?;
            out.clear();
        }
    }
    if chunked {
        wire::write_last_chunk(&mut out, trailers.as_ref());
    }
    write.write_all(&out).await?;
    Ok(())
}

/// A body's next frame, as `poll_frame` gives it.
type NextFrame<B> = Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>;

/// The body's next frame if it is ready now. Polling with a waker that does
/// nothing is sound: a body that is not ready is polled again, with the
/// task's waker, before anything waits on it.
fn poll_now<B: Body>(body: Pin<&mut B>) -> Option<NextFrame<B>> {
    match body.poll_frame(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(frame) => Some(frame),
        Poll::Pending => None,
    }
}
