//! HTTP/2 flood guard: bounds on the frames a client may send that cost the
//! gateway work without asking for any, per connection, closing the
//! connection with GOAWAY(ENHANCE_YOUR_CALM) once a bound is passed.
//!
//! The gateway's HTTP/2 server (`router-h2`, driven by `server::h2`) bounds
//! part of this itself: header blocks (CONTINUATION floods, CVE-2024-27316
//! and kin: no longer than the header list size), empty DATA frames,
//! streams the gateway had to reset, concurrent streams, and the header
//! list size; a stream reset in the same read as its HEADERS is never
//! started. What it does not bound is the rest of the control traffic a peer
//! may send at will, and resets of streams already started (rapid reset,
//! CVE-2023-44487), which is what this guard counts, the way Envoy's flood
//! protections do:
//!
//! | frames | bound | why |
//! |---|---|---|
//! | SETTINGS (not ACK), PING, PRIORITY, unknown types | a bucket of 100, refilled at 10 per second | each asks for an answer or for work, none for a response; a real client sends a handful per minute (gRPC keepalive pings are seconds apart) |
//! | RST_STREAM | once 250 streams were reset by the client, at most half of its streams | rapid reset: each stream reset after it started cost a request's start; Envoy closes at half of 500 streams too |
//! | WINDOW_UPDATE | 100 + 2 per stream + 10 per DATA frame the gateway sent | a window update is only meaningful after data was received; a storm of them is CPU for nothing |
//!
//! The guard reads only the 9-byte frame headers as bytes pass (and the first
//! 8 payload bytes of the gateway's own GOAWAY frames, to count their error
//! codes) and never holds frames back. It wraps HTTP/2 connections only
//! (HTTP/1.x has its own server, `server::h1`); should the first bytes not be
//! the preface after all, they pass uncounted and the server refuses them.
//!
//! When a bound is passed, the GOAWAY is written straight to the socket (only
//! between two of the server's own frames, so it cannot cut one in half),
//! reads and writes fail from then on, and the server drops the connection.
//!
//! The guard also bounds the wait for a connection's first bytes by the header
//! read timeout: a TLS client that chose h2 by ALPN and then sends nothing
//! would otherwise be held until the keep-alive PING found it silent.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    time::Sleep,
};

use super::PREFACE;
use crate::telemetry::Metrics;

const CONTROL_BURST: u32 = 100;
const CONTROL_PER_SECOND: u32 = 10;
const RESET_FLOOR: u64 = 250;
const WINDOW_UPDATE_ALLOWANCE: u64 = 100;
const WINDOW_UPDATES_PER_STREAM: u64 = 2;
const WINDOW_UPDATES_PER_DATA_FRAME: u64 = 10;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PUSH_PROMISE: u8 = 0x5;
const GOAWAY: u8 = 0x7;
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const ACK: u8 = 0x1;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The bound a client passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flood {
    ControlFrames,
    Resets,
    WindowUpdates,
}

impl Flood {
    pub fn label(self) -> &'static str {
        match self {
            Self::ControlFrames => "control-frames",
            Self::Resets => "resets",
            Self::WindowUpdates => "window-updates",
        }
    }
}

/// A frame's 9-byte header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHead {
    len: u32,
    kind: u8,
    flags: u8,
    stream: u32,
}

/// What a frame sequence yielded: a frame header, or the error code of a GOAWAY.
#[derive(Debug, PartialEq, Eq)]
enum Event {
    Frame(FrameHead),
    GoAway(u32),
}

/// Follows frame boundaries in a byte stream cut at arbitrary points.
#[derive(Debug, Default)]
struct Frames {
    head: [u8; 9],
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: u32,
    /// The first 8 payload bytes of a GOAWAY (last stream, error code), while they arrive.
    goaway: Option<([u8; 8], usize)>,
}

impl Frames {
    fn feed(&mut self, mut bytes: &[u8], mut on: impl FnMut(Event)) {
        while !bytes.is_empty() {
            if self.left > 0 {
                let n = bytes.len().min(self.left as usize);
                if let Some((code, have)) = &mut self.goaway {
                    let take = n.min(8 - *have);
                    code[*have..*have + take].copy_from_slice(&bytes[..take]);
                    *have += take;
                    if *have == 8 {
                        on(Event::GoAway(u32::from_be_bytes([code[4], code[5], code[6], code[7]])));
                        self.goaway = None;
                    }
                }
                self.left -= n as u32;
                bytes = &bytes[n..];
                continue;
            }
            let n = bytes.len().min(9 - self.have);
            self.head[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == 9 {
                self.have = 0;
                let h = &self.head;
                let head = FrameHead {
                    len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
                    kind: h[3],
                    flags: h[4],
                    stream: u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff,
                };
                self.left = head.len;
                self.goaway = (head.kind == GOAWAY && head.len >= 8).then_some(([0; 8], 0));
                on(Event::Frame(head));
            }
        }
    }

    fn at_boundary(&self) -> bool {
        self.have == 0 && self.left == 0
    }
}

/// The counts the bounds are checked against.
#[derive(Debug)]
struct Budget {
    control_tokens: u32,
    refilled: Instant,
    streams: u64,
    last_stream: u32,
    resets: u64,
    window_updates: u64,
    data_sent: u64,
}

impl Budget {
    fn new(now: Instant) -> Self {
        Self { control_tokens: CONTROL_BURST, refilled: now, streams: 0, last_stream: 0, resets: 0, window_updates: 0, data_sent: 0 }
    }

    /// Accounts for one frame from the client; the bound it passed, if any.
    fn inbound(&mut self, head: FrameHead, now: impl FnOnce() -> Instant) -> Option<Flood> {
        match head.kind {
            HEADERS => {
                if head.stream > self.last_stream {
                    self.last_stream = head.stream;
                    self.streams += 1;
                }
                None
            }
            DATA | CONTINUATION | GOAWAY | PUSH_PROMISE => None,
            SETTINGS if head.flags & ACK != 0 => None,
            RST_STREAM => {
                self.resets += 1;
                (self.resets >= RESET_FLOOR && self.resets * 2 > self.streams).then_some(Flood::Resets)
            }
            WINDOW_UPDATE => {
                self.window_updates += 1;
                let allowed =
                    WINDOW_UPDATE_ALLOWANCE + WINDOW_UPDATES_PER_STREAM * self.streams + WINDOW_UPDATES_PER_DATA_FRAME * self.data_sent;
                (self.window_updates > allowed).then_some(Flood::WindowUpdates)
            }
            // SETTINGS, PING (either way: an unsolicited ACK is work too), PRIORITY, and frame types h2 ignores.
            _ => {
                let now = now();
                let earned = now.duration_since(self.refilled).as_millis() as u64 * u64::from(CONTROL_PER_SECOND) / 1000;
                if earned > 0 {
                    self.control_tokens = (u64::from(self.control_tokens) + earned).min(u64::from(CONTROL_BURST)) as u32;
                    self.refilled = now;
                }
                match self.control_tokens.checked_sub(1) {
                    Some(left) => {
                        self.control_tokens = left;
                        None
                    }
                    None => Some(Flood::ControlFrames),
                }
            }
        }
    }
}

enum Mode {
    /// The first bytes were not the preface: they pass uncounted, and the server refuses them.
    NotHttp2,
    Http2 {
        inbound: Frames,
        outbound: Frames,
        budget: Box<Budget>,
    },
    /// A bound was passed: every read and write fails.
    Closed(Flood),
}

/// A client connection with the flood guard on its bytes.
pub struct Guarded<S> {
    io: S,
    mode: Mode,
    /// Bytes of the client's preface read so far; frames follow once all 24 are.
    preface: usize,
    metrics: Arc<Metrics>,
    /// How long the first bytes may take, and the timer for them once armed.
    first_bytes: (Duration, Option<Pin<Box<Sleep>>>),
}

impl<S> Guarded<S> {
    /// `first_bytes`: how long the client may take to send anything at all.
    pub fn new(io: S, metrics: Arc<Metrics>, first_bytes: Duration) -> Self {
        // The server sends no preface of its own (its first frame is SETTINGS): its side is counted from the start.
        let mode = Mode::Http2 { inbound: Frames::default(), outbound: Frames::default(), budget: Box::new(Budget::new(Instant::now())) };
        Self { io, mode, preface: 0, metrics, first_bytes: (first_bytes, None) }
    }

    /// Follows the bytes read; the bound passed, if any.
    fn read(&mut self, mut bytes: &[u8]) -> Option<Flood> {
        if self.preface < PREFACE.len() {
            let matched = self.preface;
            let n = bytes.len().min(PREFACE.len() - matched);
            if bytes[..n] != PREFACE[matched..matched + n] {
                self.mode = Mode::NotHttp2;
                return None;
            }
            self.preface += n;
            bytes = &bytes[n..];
        }
        let Mode::Http2 { inbound, budget, .. } = &mut self.mode else { return None };
        let mut flood = None;
        inbound.feed(bytes, |event| {
            if let Event::Frame(head) = event
                && flood.is_none()
            {
                flood = budget.inbound(head, Instant::now);
            }
        });
        flood
    }

    /// Follows the bytes written.
    fn wrote(&mut self, bytes: &[u8]) {
        match &mut self.mode {
            Mode::Http2 { outbound, budget, .. } => {
                let metrics = &self.metrics;
                outbound.feed(bytes, |event| match event {
                    Event::Frame(head) if head.kind == DATA => budget.data_sent += 1,
                    Event::Frame(_) => {}
                    Event::GoAway(code) => metrics.http2_goaways.with_label_values(&[error_code_name(code)]).inc(),
                });
            }
            Mode::NotHttp2 | Mode::Closed(_) => {}
        }
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Closes the connection for `flood`: GOAWAY when it fits between the server's frames, then errors.
    fn close(&mut self, cx: &mut Context<'_>, flood: Flood) -> io::Error {
        if let Mode::Http2 { outbound, budget, .. } = &self.mode
            && outbound.at_boundary()
        {
            let mut frame = [0u8; 17];
            frame[..9].copy_from_slice(&[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0]);
            frame[9..13].copy_from_slice(&budget.last_stream.to_be_bytes());
            frame[13..].copy_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
            // Best effort: a socket too full to take 17 bytes is closed without it.
            if let Poll::Ready(Ok(17)) = Pin::new(&mut self.io).poll_write(cx, &frame) {
                self.metrics.http2_goaways.with_label_values(&[error_code_name(ENHANCE_YOUR_CALM)]).inc();
            }
        }
        self.metrics.http2_floods.with_label_values(&[flood.label()]).inc();
        tracing::info!(bound = flood.label(), "HTTP/2 client passed a flood bound; connection closed");
        self.mode = Mode::Closed(flood);
        closed(flood)
    }
}

fn closed(flood: Flood) -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, format!("HTTP/2 flood guard: too many {}", flood.label()))
}

/// RFC 9113 §7 error code names, for the GOAWAY metric's label.
fn error_code_name(code: u32) -> &'static str {
    match code {
        0x0 => "NO_ERROR",
        0x1 => "PROTOCOL_ERROR",
        0x2 => "INTERNAL_ERROR",
        0x3 => "FLOW_CONTROL_ERROR",
        0x4 => "SETTINGS_TIMEOUT",
        0x5 => "STREAM_CLOSED",
        0x6 => "FRAME_SIZE_ERROR",
        0x7 => "REFUSED_STREAM",
        0x8 => "CANCEL",
        0x9 => "COMPRESSION_ERROR",
        0xa => "CONNECT_ERROR",
        0xb => "ENHANCE_YOUR_CALM",
        0xc => "INADEQUATE_SECURITY",
        0xd => "HTTP_1_1_REQUIRED",
        _ => "unknown",
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match &mut this.mode {
            Mode::Closed(flood) => return Poll::Ready(Err(closed(*flood))),
            Mode::NotHttp2 => return Pin::new(&mut this.io).poll_read(cx, buf),
            Mode::Http2 { .. } => {}
        }
        let before = buf.filled().len();
        let read = Pin::new(&mut this.io).poll_read(cx, buf);
        if let (Poll::Pending, 0) = (&read, this.preface) {
            let (timeout, timer) = &mut this.first_bytes;
            let timer = timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(*timeout)));
            ready!(timer.as_mut().poll(cx));
            return Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "no request within the header read timeout")));
        }
        ready!(read)?;
        this.first_bytes.1 = None;
        match this.read(&buf.filled()[before..]) {
            Some(flood) => Poll::Ready(Err(this.close(cx, flood))),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Mode::Closed(flood) = this.mode {
            return Poll::Ready(Err(closed(flood)));
        }
        let n = ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Mode::Closed(flood) = this.mode {
            return Poll::Ready(Err(closed(flood)));
        }
        let written = ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = written;
        for buf in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(buf.len());
            this.wrote(&buf[..take]);
            left -= take;
        }
        Poll::Ready(Ok(written))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const PRIORITY: u8 = 0x2;
    const PING: u8 = 0x6;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = (payload.len() as u32).to_be_bytes();
        let mut out = vec![len[1], len[2], len[3], kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn head(kind: u8, flags: u8, stream: u32) -> FrameHead {
        FrameHead { len: 0, kind, flags, stream }
    }

    #[test]
    fn frame_boundaries_survive_any_split_of_the_bytes() {
        let mut bytes = frame(HEADERS, 0x4, 1, &[0x82, 0x86]);
        bytes.extend(frame(DATA, 0x1, 1, b"hello"));
        bytes.extend(frame(GOAWAY, 0, 0, &[0, 0, 0, 1, 0, 0, 0, 0xb, b'x']));
        bytes.extend(frame(PING, 0, 0, &[0; 8]));
        let whole = {
            let mut events = Vec::new();
            Frames::default().feed(&bytes, |e| events.push(e));
            events
        };
        assert_eq!(whole.len(), 5, "four frames and the GOAWAY's code: {whole:?}");
        assert_eq!(whole[3], Event::GoAway(ENHANCE_YOUR_CALM));
        for cut in 1..bytes.len() {
            let (mut frames, mut events) = (Frames::default(), Vec::new());
            frames.feed(&bytes[..cut], |e| events.push(e));
            frames.feed(&bytes[cut..], |e| events.push(e));
            assert_eq!(events, whole, "cut at {cut}");
            assert!(frames.at_boundary());
        }
        let mut frames = Frames::default();
        frames.feed(&bytes[..3], |_| {});
        assert!(!frames.at_boundary(), "inside a frame header");
    }

    #[test]
    fn control_frames_have_a_burst_and_a_sustained_rate() {
        let start = Instant::now();
        let mut budget = Budget::new(start);
        for _ in 0..CONTROL_BURST {
            assert_eq!(budget.inbound(head(PING, 0, 0), || start), None);
        }
        assert_eq!(budget.inbound(head(SETTINGS, 0, 0), || start), Some(Flood::ControlFrames));
        // One second later, ten more.
        let later = start + Duration::from_secs(1);
        for _ in 0..CONTROL_PER_SECOND {
            assert_eq!(budget.inbound(head(PRIORITY, 0, 1), || later), None);
        }
        assert_eq!(budget.inbound(head(0xfa, 0, 0), || later), Some(Flood::ControlFrames), "unknown frame types count too");
        assert_eq!(budget.inbound(head(SETTINGS, ACK, 0), || later), None, "a SETTINGS ACK answers the gateway's own");
    }

    #[test]
    fn resets_are_bounded_once_they_are_half_of_many_streams() {
        let now = Instant::now();
        let mut legit = Budget::new(now);
        // A client that cancels a quarter of 2,000 streams is never cut off.
        for id in 0..2000u32 {
            legit.inbound(head(HEADERS, 0x4, 2 * id + 1), || now);
            if id % 4 == 0 {
                assert_eq!(legit.inbound(head(RST_STREAM, 0, 2 * id + 1), || now), None, "stream {id}");
            }
        }
        let mut flood = Budget::new(now);
        let mut closed_at = None;
        for id in 0..1000u32 {
            flood.inbound(head(HEADERS, 0x4, 2 * id + 1), || now);
            if flood.inbound(head(RST_STREAM, 0, 2 * id + 1), || now) == Some(Flood::Resets) {
                closed_at = Some(id + 1);
                break;
            }
        }
        assert_eq!(closed_at, Some(RESET_FLOOR as u32), "HEADERS+RST_STREAM in a loop is closed at the floor");
        // Trailers (HEADERS on a stream already open) are not new streams.
        let mut trailers = Budget::new(now);
        trailers.inbound(head(HEADERS, 0, 1), || now);
        trailers.inbound(head(HEADERS, 0x5, 1), || now);
        assert_eq!(trailers.streams, 1);
    }

    #[test]
    fn window_updates_follow_the_data_sent() {
        let now = Instant::now();
        let mut budget = Budget::new(now);
        for _ in 0..WINDOW_UPDATE_ALLOWANCE {
            assert_eq!(budget.inbound(head(WINDOW_UPDATE, 0, 0), || now), None);
        }
        assert_eq!(budget.inbound(head(WINDOW_UPDATE, 0, 0), || now), Some(Flood::WindowUpdates));
        let mut downloading = Budget::new(now);
        downloading.data_sent = 1000;
        for _ in 0..2 * 1000 {
            assert_eq!(downloading.inbound(head(WINDOW_UPDATE, 0, 1), || now), None, "two per DATA frame received is normal");
        }
    }
}
