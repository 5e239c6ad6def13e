//! Ambiguous HTTP/1.1 framing: a request head with both `Content-Length`
//! and `Transfer-Encoding`, the classic request-smuggling shape (RFC 9112
//! §6.3: a server may reject it, a proxy must never forward both). hyper
//! reads such a request as chunked, drops the `Content-Length` before the
//! gateway sees the request and closes the connection after the response, so
//! nothing ambiguous is ever forwarded; but it also leaves no trace of what it
//! dropped, and a careful proxy answers 400 (nginx and Envoy do).
//!
//! So the bytes of an HTTP/1.1 connection pass this scanner on their way to
//! hyper: it follows the message boundaries (heads, `Content-Length` bodies,
//! chunked bodies) the way hyper will, looks only at the names of header
//! lines, and notes the position of the first head that carries both
//! headers. The request stage counts the requests hyper hands it and refuses
//! the one at that position with 400 `ambiguous-framing`. The scanner never
//! changes or holds a byte; whatever it does not follow (an upgrade, CONNECT,
//! a line longer than it keeps, a chunk size it cannot read) switches it off
//! for the rest of the connection, so it can miss a case but never refuse a
//! request hyper would have read differently.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

/// Bytes of a line kept to classify it: enough for the names and values that matter.
const LINE: usize = 128;

/// What the scanner tells the request stage, per connection.
#[derive(Debug, Default)]
pub struct FramingNotes {
    /// 1-based position of the first request head with both Content-Length and Transfer-Encoding; 0: none.
    ambiguous_head: AtomicU64,
    /// Requests the request stage has seen on the connection.
    served: AtomicU64,
}

impl FramingNotes {
    /// The position of the ambiguous head, once one was seen.
    pub fn ambiguous_head(&self) -> Option<u64> {
        Some(self.ambiguous_head.load(Ordering::Acquire)).filter(|&n| n > 0)
    }

    /// Counts one more request on the connection; whether it is the ambiguous one.
    pub fn next_request_is_ambiguous(&self) -> bool {
        let position = self.served.fetch_add(1, Ordering::Relaxed) + 1;
        self.ambiguous_head.load(Ordering::Acquire) == position
    }
}

#[derive(Debug, Default, Clone, Copy)]
struct HeadFacts {
    request_line_seen: bool,
    content_length: Option<u64>,
    transfer_encoding: bool,
    /// An upgrade or CONNECT: what follows may not be HTTP/1.1 at all.
    switches: bool,
}

#[derive(Debug)]
enum State {
    Head(HeadFacts),
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    Off,
}

/// Follows one HTTP/1.1 connection's request bytes.
#[derive(Debug)]
pub struct RequestHeads {
    state: State,
    /// The current line's first bytes, and its full length so far.
    line: [u8; LINE],
    line_len: usize,
    /// Whether the current line can matter (decided by its first byte): only those are kept.
    relevant: bool,
    heads: u64,
    notes: Arc<FramingNotes>,
}

impl RequestHeads {
    pub fn new(notes: Arc<FramingNotes>) -> Self {
        Self { state: State::Head(HeadFacts::default()), line: [0; LINE], line_len: 0, relevant: false, heads: 0, notes }
    }

    pub fn feed(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            match &mut self.state {
                State::Off => return,
                State::Body(left) | State::ChunkData(left) => {
                    let n = (*left).min(bytes.len() as u64);
                    *left -= n;
                    bytes = &bytes[n as usize..];
                    if *left == 0 {
                        self.state = match self.state {
                            State::ChunkData(_) => State::ChunkDataEnd,
                            _ => State::Head(HeadFacts::default()),
                        };
                    }
                }
                State::Head(_) | State::ChunkSize | State::ChunkDataEnd | State::Trailers => {
                    if self.line_len == 0 {
                        self.relevant = match &self.state {
                            // A request line matters only for CONNECT; a header only if it can be one of the three
                            // names; the empty line that ends a head always. Other lines are not copied at all.
                            State::Head(facts) => matches!(
                                (facts.request_line_seen, bytes[0]),
                                (_, b'\r' | b'\n') | (false, b'C') | (true, b'c' | b'C' | b't' | b'T' | b'u' | b'U')
                            ),
                            _ => true,
                        };
                    }
                    let (taken, complete) = match memchr::memchr(b'\n', bytes) {
                        Some(i) => (i + 1, true),
                        None => (bytes.len(), false),
                    };
                    if self.relevant {
                        let start = self.line_len.min(LINE);
                        let keep = taken.min(LINE - start);
                        self.line[start..start + keep].copy_from_slice(&bytes[..keep]);
                    }
                    self.line_len += taken;
                    bytes = &bytes[taken..];
                    if complete {
                        self.line_done();
                        self.line_len = 0;
                    }
                }
            }
        }
    }

    /// Acts on a complete line (its first `LINE` bytes in `self.line`, when relevant).
    fn line_done(&mut self) {
        if !self.relevant {
            // A request line that is not CONNECT, or a header of no interest.
            if let State::Head(facts) = &mut self.state {
                facts.request_line_seen = true;
            }
            return;
        }
        if self.line_len > LINE {
            // A line longer than kept: a long request line or header is fine unless it is one of the two that matter.
            if let State::Head(facts) = &mut self.state
                && !facts.request_line_seen
            {
                facts.request_line_seen = true;
                facts.switches = self.line.starts_with(b"CONNECT ");
                return;
            }
            let name = &self.line[..LINE];
            if matches!(self.state, State::Head(_))
                && !(starts_with_name(name, b"content-length") || starts_with_name(name, b"transfer-encoding"))
            {
                return;
            }
            self.state = State::Off;
            return;
        }
        let line = trim_line_end(&self.line[..self.line_len]);
        self.state = match std::mem::replace(&mut self.state, State::Off) {
            State::Head(mut facts) if !facts.request_line_seen => {
                // Empty lines before a request line are allowed (RFC 9112 §2.2).
                if !line.is_empty() {
                    facts.request_line_seen = true;
                    facts.switches = line.starts_with(b"CONNECT ");
                }
                State::Head(facts)
            }
            State::Head(facts) if line.is_empty() => self.head_done(facts),
            State::Head(mut facts) => {
                if let Some(value) = header_value(line, b"content-length") {
                    match std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok()) {
                        Some(n) => facts.content_length = Some(n),
                        // hyper refuses the request; the connection ends.
                        None => return,
                    }
                } else if header_value(line, b"transfer-encoding").is_some() {
                    facts.transfer_encoding = true;
                } else if header_value(line, b"upgrade").is_some() {
                    facts.switches = true;
                }
                State::Head(facts)
            }
            State::ChunkSize => {
                let size = line.split(|&b| b == b';').next().unwrap_or_default().trim_ascii();
                match std::str::from_utf8(size).ok().and_then(|s| u64::from_str_radix(s, 16).ok()) {
                    Some(0) => State::Trailers,
                    Some(n) => State::ChunkData(n),
                    None => State::Off,
                }
            }
            State::ChunkDataEnd if line.is_empty() => State::ChunkSize,
            State::Trailers if line.is_empty() => State::Head(HeadFacts::default()),
            State::Trailers => State::Trailers,
            _ => State::Off,
        };
    }

    fn head_done(&mut self, facts: HeadFacts) -> State {
        self.heads += 1;
        if facts.transfer_encoding && facts.content_length.is_some() {
            let _ = self.notes.ambiguous_head.compare_exchange(0, self.heads, Ordering::AcqRel, Ordering::Relaxed);
            // hyper closes the connection after this request.
            return State::Off;
        }
        match facts {
            HeadFacts { switches: true, .. } => State::Off,
            HeadFacts { transfer_encoding: true, .. } => State::ChunkSize,
            HeadFacts { content_length: Some(n), .. } if n > 0 => State::Body(n),
            _ => State::Head(HeadFacts::default()),
        }
    }
}

fn trim_line_end(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn starts_with_name(line: &[u8], name: &[u8]) -> bool {
    line.len() > name.len() && line[..name.len()].eq_ignore_ascii_case(name) && line[name.len()] == b':'
}

/// The value of `line` when it is the header `name` (case-insensitive), trimmed.
fn header_value<'a>(line: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    starts_with_name(line, name).then(|| line[name.len() + 1..].trim_ascii())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 1-based positions noted for `bytes`, fed whole and cut at every point.
    fn ambiguous_position(bytes: &[u8]) -> u64 {
        let notes = Arc::new(FramingNotes::default());
        RequestHeads::new(notes.clone()).feed(bytes);
        let whole = notes.ambiguous_head().unwrap_or(0);
        for cut in 1..bytes.len() {
            let notes = Arc::new(FramingNotes::default());
            let mut heads = RequestHeads::new(notes.clone());
            heads.feed(&bytes[..cut]);
            heads.feed(&bytes[cut..]);
            assert_eq!(notes.ambiguous_head().unwrap_or(0), whole, "cut at {cut}");
        }
        whole
    }

    #[test]
    fn both_framings_in_one_head_are_noted_at_its_position() {
        let smuggled = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
        assert_eq!(ambiguous_position(smuggled), 1);
        let lower_first = b"POST / HTTP/1.1\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\nhost: x\r\n\r\n0\r\n\r\n";
        assert_eq!(ambiguous_position(lower_first), 1);
    }

    #[test]
    fn message_boundaries_are_followed_through_bodies_of_both_kinds() {
        let mut pipeline = Vec::new();
        pipeline.extend_from_slice(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
        // A body that looks like a head must not be read as one.
        pipeline.extend_from_slice(b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 60\r\n\r\n");
        pipeline.extend_from_slice(b"GET /c HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: x\r\n\r\n");
        pipeline.extend_from_slice(b"POST /d HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
        pipeline.extend_from_slice(b"1c;ext=1\r\nContent-Length: 3\r\nabcdefghi\r\n0\r\nX-Trailer: Content-Length: 9\r\n\r\n");
        pipeline.extend_from_slice(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(ambiguous_position(&pipeline), 4, "the fourth head, after three that are not (the fake one is a body)");
    }

    #[test]
    fn what_it_cannot_follow_switches_it_off_rather_than_guess() {
        let upgrade = b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(ambiguous_position(upgrade), 0, "bytes after an upgrade are not HTTP/1.1");
        let connect =
            b"CONNECT x:443 HTTP/1.1\r\nHost: x:443\r\n\r\nPOST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(ambiguous_position(connect), 0);
        let long_te = format!("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: {}chunked\r\n\r\n", "gzip, ".repeat(40));
        assert_eq!(ambiguous_position(long_te.as_bytes()), 0, "a line longer than kept");
        let long_other =
            format!("POST / HTTP/1.1\r\nX-Long: {}\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "v".repeat(500));
        assert_eq!(ambiguous_position(long_other.as_bytes()), 1, "a long header of another name is skipped");
    }

    #[test]
    fn the_request_stage_refuses_only_the_noted_request() {
        let notes = FramingNotes::default();
        notes.ambiguous_head.store(2, Ordering::Relaxed);
        assert!(!notes.next_request_is_ambiguous());
        assert!(notes.next_request_is_ambiguous());
        assert!(!notes.next_request_is_ambiguous());
    }
}
