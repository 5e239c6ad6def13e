//! One HTTP/2 connection's state (RFC 9113 §5): the preface, the streams
//! and their states, both directions of flow control, header blocks across
//! CONTINUATION frames, SETTINGS, PING, GOAWAY, and the bounds that keep a
//! client from making a connection hold unbounded memory or work.
//!
//! It is driven from outside: [`Connection::recv`] takes the bytes read,
//! [`Connection::poll_event`] hands over what the client asked for, the
//! `send_*` calls take the gateway's answers, and [`Connection::output`]
//! gives the bytes to write. Nothing here blocks or knows about a socket.
//!
//! A stream's response data waits in the stream (at most `max_send_buffer`
//! bytes, so a client that opens windows but never reads holds the gateway
//! to that much per stream) until both windows allow it; DATA frames are
//! written round-robin across streams, and only while less than
//! [`OUTPUT_HIGH_WATER`] is waiting to be written.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, Bytes, BytesMut};
use foldhash::fast::FixedState;
use http::{HeaderMap, StatusCode, header, request::Parts};

use crate::{
    error::{ProtocolError, Reason},
    frame::{self, Frame, HEAD_LEN, Head, MIN_MAX_FRAME_SIZE, kind},
    head::{FieldSet, Refusal, is_connection_specific},
    hpack::{self, Decoder},
    output::Output,
    settings::{self, PeerSettings},
    window::{RecvWindow, SendWindow},
};

/// What every HTTP/2 connection starts with (§3.4).
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The window every stream and the connection start with (§6.9.2).
const DEFAULT_WINDOW: u32 = 65_535;

/// DATA frames are produced while less than this waits to be written.
pub const OUTPUT_HIGH_WATER: usize = 64 * 1024;

/// Empty DATA frames that do not end their stream, in a row, before the
/// connection is closed: they cost work and no window, so nothing else
/// bounds them (Envoy allows one; a client that sends several has no use for them).
const EMPTY_DATA_IN_A_ROW: u32 = 10;

/// The gateway's side of the connection's settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub max_concurrent_streams: u32,
    /// SETTINGS_MAX_HEADER_LIST_SIZE: larger request heads are answered 431,
    /// and a header block (HEADERS and CONTINUATIONs) longer than this
    /// closes the connection (CONTINUATION floods).
    pub max_header_list_size: u32,
    /// Each stream's receive window.
    pub stream_window: u32,
    /// The connection's receive window.
    pub connection_window: u32,
    /// Response bytes a stream may hold waiting for the client's window.
    pub max_send_buffer: usize,
    /// Streams the gateway may reset for faults of the client before it
    /// closes the connection with ENHANCE_YOUR_CALM.
    pub max_local_resets: u32,
}

/// What the client asked for.
#[derive(Debug)]
pub enum Event {
    /// A request's head; `end_stream` when it has no body.
    Request {
        stream: u32,
        head: Parts,
        end_stream: bool,
    },
    /// Request body bytes; give them back with [`Connection::release`] once consumed.
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    Trailers {
        stream: u32,
        trailers: HeaderMap,
    },
    /// The stream ended before its exchange did: reset by the client, or
    /// by the gateway for a fault of the client. Its work should stop.
    Reset {
        stream: u32,
        reason: Reason,
    },
}

/// The stream no longer exists: it was reset or has finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HTTP/2 stream is gone")]
pub struct StreamGone;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Preface,
    FirstSettings,
    Frames,
    /// After a connection error: nothing more is read.
    Failed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockFor {
    NewStream,
    Trailers,
    /// A stream the client already ended or one already gone: decoded for
    /// the HPACK context's sake, then answered or dropped.
    HalfClosed,
    Gone,
}

/// A header block waiting for its CONTINUATION frames.
#[derive(Debug)]
struct PendingBlock {
    stream: u32,
    of: BlockFor,
    block: BytesMut,
    end_stream: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendState {
    /// No HEADERS yet.
    Idle,
    Open,
    /// END_STREAM is written.
    Done,
}

#[derive(Debug)]
struct Stream {
    /// The client may still send (not half-closed remote).
    recv_open: bool,
    send: SendState,
    recv_window: RecvWindow,
    send_window: SendWindow,
    /// Response data waiting for the windows, and its length.
    queue: VecDeque<Bytes>,
    queued: usize,
    /// The response ends after the queue: with these trailers (an encoded
    /// block) or with an empty END_STREAM DATA frame.
    end_queued: bool,
    trailers: Option<Bytes>,
    /// What is left of the request's Content-Length (§8.1.1).
    remaining: Option<u64>,
    /// On the ready list.
    scheduled: bool,
}

impl Stream {
    /// Off the ready list with data or an end to write.
    fn unscheduled_with_work(&self) -> bool {
        !self.scheduled && (self.queued > 0 || self.end_queued)
    }
}

/// The state of one connection.
#[derive(Debug)]
pub struct Connection {
    config: Config,
    phase: Phase,
    decoder: Decoder,
    peer: PeerSettings,
    streams: HashMap<u32, Stream, FixedState>,
    /// The highest stream the client opened.
    last_stream: u32,
    recv_window: RecvWindow,
    send_window: SendWindow,
    pending: Option<PendingBlock>,
    events: VecDeque<Event>,
    out: Output,
    /// Streams with response data or an end to write, round-robin.
    ready: VecDeque<u32>,
    /// The last stream a GOAWAY of the gateway's let through.
    goaway: Option<u32>,
    client_goaway: bool,
    local_resets: u32,
    empty_data: u32,
    /// PING ACKs received (keep-alive).
    pongs: u64,
    block: BytesMut,
}

impl Connection {
    /// A server connection; its SETTINGS (and the connection window's
    /// increase) are the first bytes of [`Self::output`].
    pub fn new(config: Config) -> Self {
        let mut out = Output::default();
        frame::settings(
            &mut out.open,
            &[
                (settings::ENABLE_PUSH, 0),
                (settings::MAX_CONCURRENT_STREAMS, config.max_concurrent_streams),
                (settings::INITIAL_WINDOW_SIZE, config.stream_window),
                (settings::MAX_HEADER_LIST_SIZE, config.max_header_list_size),
            ],
        );
        if config.connection_window > DEFAULT_WINDOW {
            frame::window_update(&mut out.open, 0, config.connection_window - DEFAULT_WINDOW);
        }
        Self {
            phase: Phase::Preface,
            decoder: Decoder::new(4096),
            peer: PeerSettings::default(),
            streams: HashMap::with_hasher(FixedState::default()),
            last_stream: 0,
            recv_window: RecvWindow::new(config.connection_window.max(DEFAULT_WINDOW), config.connection_window.max(DEFAULT_WINDOW)),
            send_window: SendWindow::new(DEFAULT_WINDOW),
            pending: None,
            events: VecDeque::new(),
            out,
            ready: VecDeque::new(),
            goaway: None,
            client_goaway: false,
            local_resets: 0,
            empty_data: 0,
            pongs: 0,
            block: BytesMut::new(),
            config,
        }
    }

    /// Takes the bytes read from the client: every complete frame in `buf`
    /// is consumed, a partial one is left for the next read. A connection
    /// error has its GOAWAY written into the output and ends the reading.
    pub fn recv(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        match self.recv_frames(buf) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.fail(e.reason);
                Err(e)
            }
        }
    }

    fn recv_frames(&mut self, buf: &mut BytesMut) -> Result<(), ProtocolError> {
        loop {
            match self.phase {
                Phase::Failed => return Ok(()),
                Phase::Preface => {
                    let seen = buf.len().min(PREFACE.len());
                    if buf[..seen] != PREFACE[..seen] {
                        return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "not the HTTP/2 connection preface"));
                    }
                    if seen < PREFACE.len() {
                        return Ok(());
                    }
                    buf.advance(PREFACE.len());
                    self.phase = Phase::FirstSettings;
                }
                Phase::FirstSettings | Phase::Frames => {
                    let Some(head) = buf.get(..HEAD_LEN).map(|h| Head::parse(h.try_into().expect("nine octets"))) else { return Ok(()) };
                    // The gateway never raises SETTINGS_MAX_FRAME_SIZE (§4.2).
                    if head.len > MIN_MAX_FRAME_SIZE as usize {
                        return Err(ProtocolError::connection(Reason::FRAME_SIZE_ERROR, "frame larger than SETTINGS_MAX_FRAME_SIZE"));
                    }
                    if buf.len() < HEAD_LEN + head.len {
                        buf.reserve(HEAD_LEN + head.len - buf.len());
                        return Ok(());
                    }
                    if self.phase == Phase::FirstSettings {
                        if head.kind != kind::SETTINGS || head.flags & 0x1 != 0 {
                            return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "first frame is not SETTINGS"));
                        }
                        self.phase = Phase::Frames;
                    }
                    buf.advance(HEAD_LEN);
                    let payload = buf.split_to(head.len).freeze();
                    match Frame::parse(head, payload).and_then(|f| self.frame(f)) {
                        Ok(()) => {}
                        Err(ProtocolError { stream: Some(stream), reason, .. }) => self.local_reset(stream, reason)?,
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    fn frame(&mut self, frame: Frame) -> Result<(), ProtocolError> {
        if let Some(p) = &self.pending
            && !matches!(frame, Frame::Continuation { stream, .. } if stream == p.stream)
        {
            return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "header block interrupted before its END_HEADERS"));
        }
        match frame {
            Frame::Data { stream, data, end_stream, flow_len } => self.data(stream, data, end_stream, flow_len),
            Frame::Headers { stream, block, end_stream, end_headers } => self.headers(stream, block, end_stream, end_headers),
            Frame::Continuation { stream, block, end_headers } => {
                let Some(mut p) = self.pending.take() else {
                    return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "CONTINUATION without a header block"));
                };
                debug_assert_eq!(p.stream, stream);
                if p.block.len() + block.len() > self.config.max_header_list_size as usize {
                    return Err(ProtocolError::connection(Reason::ENHANCE_YOUR_CALM, "header block longer than the header list size"));
                }
                p.block.extend_from_slice(&block);
                if end_headers {
                    return self.finish_block(p.stream, p.of, &p.block.freeze(), p.end_stream);
                }
                self.pending = Some(p);
                Ok(())
            }
            Frame::RstStream { stream, reason } => {
                if stream > self.last_stream {
                    return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "RST_STREAM on an idle stream"));
                }
                if self.streams.remove(&stream).is_some() {
                    self.events.push_back(Event::Reset { stream, reason });
                }
                Ok(())
            }
            Frame::Settings { ack: true, .. } | Frame::Priority { .. } | Frame::Unknown => Ok(()),
            Frame::Settings { ack: false, payload } => {
                let before = self.peer.initial_window_size;
                self.peer.apply(&payload)?;
                let delta = i64::from(self.peer.initial_window_size) - i64::from(before);
                if delta != 0 {
                    for s in self.streams.values_mut() {
                        s.send_window
                            .grow(delta)
                            .map_err(|r| ProtocolError::connection(r, "INITIAL_WINDOW_SIZE takes a stream's window past 2^31-1"))?;
                    }
                    self.schedule_all();
                }
                frame::settings_ack(&mut self.out.open);
                Ok(())
            }
            Frame::Ping { ack: false, payload } => {
                frame::ping(&mut self.out.open, payload, true);
                Ok(())
            }
            Frame::Ping { ack: true, .. } => {
                self.pongs += 1;
                Ok(())
            }
            Frame::GoAway { .. } => {
                self.client_goaway = true;
                Ok(())
            }
            Frame::WindowUpdate { stream: 0, increment } => {
                self.send_window.grow(i64::from(increment)).map_err(|r| ProtocolError::connection(r, "connection window past 2^31-1"))?;
                self.schedule_all();
                Ok(())
            }
            Frame::WindowUpdate { stream, increment } => {
                if let Some(s) = self.streams.get_mut(&stream) {
                    s.send_window.grow(i64::from(increment)).map_err(|r| ProtocolError::stream(stream, r))?;
                    self.schedule(stream);
                } else if stream > self.last_stream {
                    return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE on an idle stream"));
                }
                Ok(())
            }
        }
    }

    fn data(&mut self, stream: u32, data: Bytes, end_stream: bool, flow_len: usize) -> Result<(), ProtocolError> {
        if flow_len == 0 && !end_stream {
            self.empty_data += 1;
            if self.empty_data > EMPTY_DATA_IN_A_ROW {
                return Err(ProtocolError::connection(Reason::ENHANCE_YOUR_CALM, "empty DATA frames in a row"));
            }
        } else {
            self.empty_data = 0;
        }
        self.recv_window.receive(flow_len).map_err(|r| ProtocolError::connection(r, "DATA beyond the connection's window"))?;
        let Some(s) = self.streams.get_mut(&stream) else {
            if stream > self.last_stream {
                return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "DATA on an idle stream"));
            }
            // A stream that ended or was reset: its bytes still count for the connection (§6.9).
            self.give_back(0, flow_len);
            return Ok(());
        };
        if !s.recv_open {
            self.give_back(0, flow_len);
            return Err(ProtocolError::stream(stream, Reason::STREAM_CLOSED));
        }
        if s.recv_window.receive(flow_len).is_err() {
            self.give_back(0, flow_len);
            return Err(ProtocolError::stream(stream, Reason::FLOW_CONTROL_ERROR));
        }
        let len = data.len() as u64;
        let overrun = match &mut s.remaining {
            Some(rest) if len > *rest || (end_stream && len != *rest) => true,
            Some(rest) => {
                *rest -= len;
                false
            }
            None => false,
        };
        if end_stream {
            s.recv_open = false;
        }
        // Padding is consumed as it arrives.
        let padding = flow_len - data.len();
        if overrun {
            self.give_back(0, flow_len);
            return Err(ProtocolError::stream(stream, Reason::PROTOCOL_ERROR));
        }
        if padding > 0 {
            self.give_back(stream, padding);
        }
        if !data.is_empty() || end_stream {
            self.events.push_back(Event::Data { stream, data, end_stream });
        }
        if end_stream {
            self.close_if_done(stream);
        }
        Ok(())
    }

    fn headers(&mut self, stream: u32, block: Bytes, end_stream: bool, end_headers: bool) -> Result<(), ProtocolError> {
        let of = if stream > self.last_stream {
            if stream.is_multiple_of(2) {
                return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "client stream with an even identifier"));
            }
            self.last_stream = stream;
            BlockFor::NewStream
        } else {
            match self.streams.get(&stream) {
                Some(s) if s.recv_open => BlockFor::Trailers,
                Some(_) => BlockFor::HalfClosed,
                None => BlockFor::Gone,
            }
        };
        if end_headers {
            return self.finish_block(stream, of, &block, end_stream);
        }
        self.pending = Some(PendingBlock { stream, of, block: BytesMut::from(&block[..]), end_stream });
        Ok(())
    }

    fn finish_block(&mut self, stream: u32, of: BlockFor, block: &[u8], end_stream: bool) -> Result<(), ProtocolError> {
        let mut fields = FieldSet::new(self.config.max_header_list_size as usize);
        self.decoder
            .decode(block, |entry, sensitive| fields.add(entry, sensitive))
            .map_err(|_| ProtocolError::connection(Reason::COMPRESSION_ERROR, "header block cannot be decoded"))?;
        match of {
            BlockFor::Gone => Ok(()),
            BlockFor::HalfClosed => Err(ProtocolError::stream(stream, Reason::STREAM_CLOSED)),
            BlockFor::Trailers if !end_stream => Err(ProtocolError::stream(stream, Reason::PROTOCOL_ERROR)),
            BlockFor::Trailers => {
                let s = self.streams.get_mut(&stream).expect("trailers are for a known stream");
                s.recv_open = false;
                if s.remaining.is_some_and(|r| r > 0) {
                    return Err(ProtocolError::stream(stream, Reason::PROTOCOL_ERROR));
                }
                let trailers = fields.trailers().map_err(|_| ProtocolError::stream(stream, Reason::PROTOCOL_ERROR))?;
                self.events.push_back(Event::Trailers { stream, trailers });
                self.close_if_done(stream);
                Ok(())
            }
            BlockFor::NewStream => {
                if self.goaway.is_some() || self.streams.len() >= self.config.max_concurrent_streams as usize {
                    // Never started: the client may send it again (§8.7).
                    frame::rst_stream(&mut self.out.open, stream, Reason::REFUSED_STREAM);
                    return Ok(());
                }
                let head = match fields.request() {
                    Ok(head) => head,
                    Err(Refusal::TooLarge) => {
                        self.refuse_too_large(stream, end_stream);
                        return self.count_local_reset();
                    }
                    Err(Refusal::Malformed(_)) => {
                        frame::rst_stream(&mut self.out.open, stream, Reason::PROTOCOL_ERROR);
                        return self.count_local_reset();
                    }
                };
                let remaining = match head.headers.get(header::CONTENT_LENGTH).map(|v| v.to_str().ok().and_then(|s| s.parse::<u64>().ok()))
                {
                    None => None,
                    Some(Some(n)) if !end_stream || n == 0 => Some(n),
                    Some(_) => {
                        frame::rst_stream(&mut self.out.open, stream, Reason::PROTOCOL_ERROR);
                        return self.count_local_reset();
                    }
                };
                self.streams.insert(
                    stream,
                    Stream {
                        recv_open: !end_stream,
                        send: SendState::Idle,
                        recv_window: RecvWindow::new(self.config.stream_window, self.config.stream_window),
                        send_window: SendWindow::new(self.peer.initial_window_size),
                        queue: VecDeque::new(),
                        queued: 0,
                        end_queued: false,
                        trailers: None,
                        remaining,
                        scheduled: false,
                    },
                );
                self.events.push_back(Event::Request { stream, head, end_stream });
                Ok(())
            }
        }
    }

    /// 431 for a request head over SETTINGS_MAX_HEADER_LIST_SIZE.
    fn refuse_too_large(&mut self, stream: u32, end_stream: bool) {
        self.block.clear();
        hpack::encode_status(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, &mut self.block);
        frame::headers(&mut self.out.open, stream, &self.block, true, self.peer.max_frame_size as usize);
        if !end_stream {
            frame::rst_stream(&mut self.out.open, stream, Reason::NO_ERROR);
        }
    }

    /// Resets a stream for a fault of the client's (§5.4.2).
    fn local_reset(&mut self, stream: u32, reason: Reason) -> Result<(), ProtocolError> {
        frame::rst_stream(&mut self.out.open, stream, reason);
        if self.streams.remove(&stream).is_some() {
            self.events.push_back(Event::Reset { stream, reason });
        }
        self.count_local_reset()
    }

    fn count_local_reset(&mut self) -> Result<(), ProtocolError> {
        self.local_resets += 1;
        if self.local_resets > self.config.max_local_resets {
            return Err(ProtocolError::connection(Reason::ENHANCE_YOUR_CALM, "too many streams reset for faults of the client"));
        }
        Ok(())
    }

    /// Gives `n` received bytes of `stream` (0: the connection only) back to the client's windows.
    fn give_back(&mut self, stream: u32, n: usize) {
        if let Some(inc) = self.recv_window.release(n) {
            frame::window_update(&mut self.out.open, 0, inc);
        }
        if let Some(s) = self.streams.get_mut(&stream)
            && s.recv_open
            && let Some(inc) = s.recv_window.release(n)
        {
            frame::window_update(&mut self.out.open, stream, inc);
        }
    }

    fn fail(&mut self, reason: Reason) {
        if self.phase != Phase::Failed {
            frame::goaway(&mut self.out.open, self.last_stream, reason);
            self.phase = Phase::Failed;
            self.pending = None;
            for (stream, _) in self.streams.drain() {
                self.events.push_back(Event::Reset { stream, reason });
            }
        }
    }

    /// The next thing the client asked for.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The application consumed `n` bytes of `stream`'s request body.
    pub fn release(&mut self, stream: u32, n: usize) {
        self.give_back(stream, n);
    }

    /// The response head: the status, then the fields `encode` writes (see
    /// [`hpack::encode_field`], and [`encode_map`] for a map).
    pub fn send_headers(
        &mut self,
        stream: u32,
        status: StatusCode,
        encode: impl FnOnce(&mut BytesMut),
        end_stream: bool,
    ) -> Result<(), StreamGone> {
        let s = self.streams.get_mut(&stream).ok_or(StreamGone)?;
        debug_assert_eq!(s.send, SendState::Idle, "one response head per stream");
        s.send = if end_stream { SendState::Done } else { SendState::Open };
        self.block.clear();
        hpack::encode_status(status, &mut self.block);
        encode(&mut self.block);
        frame::headers(&mut self.out.open, stream, &self.block, end_stream, self.peer.max_frame_size as usize);
        if end_stream {
            self.close_if_done(stream);
        }
        Ok(())
    }

    /// An interim response (1xx, RFC 9110 §15.2), `100 Continue` say; once
    /// the final head is out it has nothing left to say and is not sent.
    pub fn send_interim(&mut self, stream: u32, status: StatusCode) -> Result<(), StreamGone> {
        let s = self.streams.get(&stream).ok_or(StreamGone)?;
        debug_assert!(status.is_informational());
        if s.send != SendState::Idle {
            return Ok(());
        }
        self.block.clear();
        hpack::encode_status(status, &mut self.block);
        frame::headers(&mut self.out.open, stream, &self.block, false, self.peer.max_frame_size as usize);
        Ok(())
    }

    /// Response body bytes; they wait in the stream until the windows allow them.
    pub fn send_data(&mut self, stream: u32, data: Bytes, end_stream: bool) -> Result<(), StreamGone> {
        let s = self.streams.get_mut(&stream).ok_or(StreamGone)?;
        debug_assert_eq!(s.send, SendState::Open, "data after the head, before the end");
        if !data.is_empty() {
            s.queued += data.len();
            s.queue.push_back(data);
        }
        s.end_queued |= end_stream;
        self.schedule(stream);
        self.flush();
        Ok(())
    }

    /// Trailers, which end the response once its data is out.
    pub fn send_trailers(&mut self, stream: u32, trailers: &HeaderMap) -> Result<(), StreamGone> {
        let s = self.streams.get_mut(&stream).ok_or(StreamGone)?;
        self.block.clear();
        encode_map(trailers, &mut self.block);
        s.trailers = Some(self.block.split().freeze());
        s.end_queued = true;
        self.schedule(stream);
        self.flush();
        Ok(())
    }

    /// Ends a stream the gateway cannot finish (its response failed midway, or its work was dropped).
    pub fn reset(&mut self, stream: u32, reason: Reason) {
        if self.streams.remove(&stream).is_some() {
            frame::rst_stream(&mut self.out.open, stream, reason);
        }
    }

    /// How many more response bytes `stream` may be given now.
    pub fn send_room(&self, stream: u32) -> Result<usize, StreamGone> {
        let s = self.streams.get(&stream).ok_or(StreamGone)?;
        Ok(self.config.max_send_buffer.saturating_sub(s.queued))
    }

    /// Stops taking new streams (graceful shutdown, §6.8): the ones open go on.
    pub fn go_away(&mut self) {
        if self.goaway.is_none() && self.phase != Phase::Failed {
            frame::goaway(&mut self.out.open, self.last_stream, Reason::NO_ERROR);
            self.goaway = Some(self.last_stream);
        }
    }

    /// Sends a PING for keep-alive; [`Self::pongs`] counts the answers.
    pub fn ping(&mut self) {
        frame::ping(&mut self.out.open, *b"datumkap", false);
    }

    pub fn pongs(&self) -> u64 {
        self.pongs
    }

    /// Whether the connection has nothing left to do once its output is written.
    pub fn is_finished(&self) -> bool {
        self.phase == Phase::Failed || ((self.goaway.is_some() || self.client_goaway) && self.streams.is_empty())
    }

    /// Streams open now.
    #[cfg(test)]
    fn open_streams(&self) -> usize {
        self.streams.len()
    }

    /// Moves the bytes to write onto the end of `into`, producing DATA
    /// frames as the windows allow first.
    pub fn output(&mut self, into: &mut VecDeque<Bytes>) {
        self.flush();
        self.out.take(into);
    }

    pub fn has_output(&self) -> bool {
        !self.out.is_empty()
    }

    fn schedule(&mut self, stream: u32) {
        if let Some(s) = self.streams.get_mut(&stream)
            && s.unscheduled_with_work()
        {
            s.scheduled = true;
            self.ready.push_back(stream);
        }
    }

    /// After a window grew: every stream with something to write goes on the ready list.
    fn schedule_all(&mut self) {
        for (&id, s) in &mut self.streams {
            if s.unscheduled_with_work() {
                s.scheduled = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Writes DATA frames (and the ends of streams) round-robin while the
    /// windows allow and the output is below its high-water mark.
    fn flush(&mut self) {
        let max_frame = self.peer.max_frame_size as usize;
        while self.out.len() < OUTPUT_HIGH_WATER
            && let Some(id) = self.ready.pop_front()
        {
            let Some(s) = self.streams.get_mut(&id) else { continue };
            s.scheduled = false;
            if let Some(front) = s.queue.front_mut() {
                let n = front.len().min(s.send_window.available()).min(self.send_window.available()).min(max_frame);
                if n == 0 {
                    // Waits for a WINDOW_UPDATE, which schedules it again.
                    continue;
                }
                let chunk = if n == front.len() { s.queue.pop_front().expect("front exists") } else { front.split_to(n) };
                s.queued -= n;
                s.send_window.spend(n);
                self.send_window.spend(n);
                let last = s.queue.is_empty() && s.end_queued && s.trailers.is_none();
                frame::data_head(&mut self.out.open, id, n, last);
                self.out.payload(chunk);
                if last {
                    s.send = SendState::Done;
                }
            } else if s.end_queued {
                match s.trailers.take() {
                    Some(block) => frame::headers(&mut self.out.open, id, &block, true, max_frame),
                    None => frame::data_head(&mut self.out.open, id, 0, true),
                }
                s.send = SendState::Done;
            }
            if s.send == SendState::Done {
                self.close_if_done(id);
            } else if s.queued > 0 || s.end_queued {
                s.scheduled = true;
                self.ready.push_back(id);
            }
        }
    }

    /// Forgets a stream both sides have ended. A response that ended
    /// before its request did asks the client to stop sending (§8.1).
    fn close_if_done(&mut self, stream: u32) {
        let Some(s) = self.streams.get(&stream) else { return };
        if s.send != SendState::Done {
            return;
        }
        if s.recv_open {
            frame::rst_stream(&mut self.out.open, stream, Reason::NO_ERROR);
            self.events.push_back(Event::Reset { stream, reason: Reason::NO_ERROR });
        }
        self.streams.remove(&stream);
    }
}

/// A map's fields, less those HTTP/2 does not carry.
pub fn encode_map(headers: &HeaderMap, dst: &mut BytesMut) {
    for (name, value) in headers {
        if !is_connection_specific(name.as_str().as_bytes()) {
            hpack::encode_field(name, value, dst);
        }
    }
}

#[cfg(test)]
mod tests;
