//! HTTP/1.1 as bytes on the upstream side: the request head the gateway
//! writes, the response head it reads (with `httparse`, header values kept as
//! slices of the bytes read, never copied), how a response body is framed
//! (RFC 9112 §6.3) and whether the connection outlives it, and the chunked
//! coding both ways. No sockets here, so each rule is tested on its own.

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};

use crate::http::{
    field_lines::FieldLines,
    forwarding::AddedFields,
    headers::{self, AT_CONNECTION, AT_KEEP_ALIVE, AT_TRANSFER_ENCODING, KEEP_ALIVE},
};

/// Most header fields a response head (or a trailer section) may carry: hyper's default.
const MAX_HEADERS: usize = 100;
/// Largest response head, and largest trailer section.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// Longest chunk-size line, extensions included.
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// A response that is not HTTP/1.1 the gateway can forward.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    #[error("malformed response head: {0}")]
    Head(#[from] httparse::Error),
    #[error("the response head exceeds {MAX_HEAD_BYTES} bytes")]
    HeadTooLarge,
    #[error("invalid header field in the response")]
    Header,
    #[error("ambiguous response framing: {0}")]
    Framing(&'static str),
    #[error("malformed chunked body: {0}")]
    Chunk(&'static str),
}

/// How the request body goes on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestFraming {
    /// No body.
    Empty,
    /// `content-length`: the body's exact size is known.
    Length(u64),
    /// `transfer-encoding: chunked`: it is not.
    Chunked,
}

/// What the gateway writes of a request's head, borrowed from wherever it is kept.
pub struct RequestHead<'a> {
    pub method: &'a Method,
    /// The origin-form target: path and query.
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    /// Written after the map's fields.
    pub added: Option<&'a AddedFields<'a>>,
}

/// Writes the request line (origin form) and the header fields into `out`:
/// the map's, then the `added` ones not in it. The body's framing header is
/// the gateway's, whatever the client sent; `host` is written after the
/// map's fields when they carry no Host (noticed while they are written: a
/// proxied request always has one, so a lookup first was a hashed search
/// for nothing).
pub fn write_request_head(out: &mut Vec<u8>, head: &RequestHead<'_>, host: &str, framing: RequestFraming) {
    let RequestHead { method, target, headers, added } = *head;
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let (mut had_length, mut had_host) = (false, false);
    for (name, value) in headers {
        if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
            had_length |= name == header::CONTENT_LENGTH;
            continue;
        }
        had_host |= name == header::HOST;
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    if !had_host {
        field(out, b"host", host.as_bytes());
    }
    for (name, value) in added.iter().flat_map(|a| a.pending()) {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        value.write(out);
        out.extend_from_slice(b"\r\n");
    }
    match framing {
        // A body-carrying method says "no body" explicitly, as does a client that did.
        RequestFraming::Empty if had_length || matches!(*method, Method::POST | Method::PUT | Method::PATCH) => {
            field(out, b"content-length", b"0");
        }
        RequestFraming::Empty => {}
        RequestFraming::Length(n) => field(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
        RequestFraming::Chunked => field(out, b"transfer-encoding", b"chunked"),
    }
    out.extend_from_slice(b"\r\n");
}

/// One header field line (the client side's response heads are written with this too).
pub(crate) fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// The line that starts a chunk of `len` bytes.
pub fn write_chunk_size(out: &mut Vec<u8>, len: usize) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1);
    for i in (0..digits).rev() {
        out.push(HEX[(len >> (i * 4)) & 0xf]);
    }
    out.extend_from_slice(b"\r\n");
}

/// The last chunk and the trailer section that ends a chunked body.
pub fn write_last_chunk(out: &mut Vec<u8>, trailers: Option<&HeaderMap>) {
    out.extend_from_slice(b"0\r\n");
    for (name, value) in trailers.into_iter().flatten() {
        field(out, name.as_str().as_bytes(), value.as_bytes());
    }
    out.extend_from_slice(b"\r\n");
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub status: StatusCode,
    pub version: Version,
    /// The fields in a map, when one was asked for (see [`parse_response_head`])
    /// or the head is not plain (see `fields`), less a Connection that only
    /// said whether this hop stays open, and Keep-Alive (a 101, or a
    /// Connection that names other fields, keeps them): the gateway drops
    /// hop-by-hop fields from a map anyway.
    pub headers: HeaderMap,
    /// Else the fields as slices of the head's bytes, end to end only: the
    /// hop-by-hop ones a plain head carries (Connection with only `close` or
    /// `keep-alive`, Keep-Alive, Transfer-Encoding) were read and left out.
    /// A 101, whose fields the upgrade needs, and a head with any other
    /// hop-by-hop field or a Connection that names other fields come as a
    /// map, where the gateway's one rule for removing hop-by-hop fields applies.
    pub fields: FieldLines,
    /// Whether the connection can carry another request after this response.
    pub keep_alive: bool,
    /// What the framing fields said, read as the head was parsed.
    framing: FramingFields,
}

/// A response head's Content-Length and Transfer-Encoding, as read from the
/// parser's fields: the body's framing is known without looking them up in
/// the map again.
#[derive(Debug, Default)]
struct FramingFields {
    /// The lengths agreed on so far (`Err` once one is invalid or disagrees).
    length: Option<Result<u64, &'static str>>,
    /// Transfer-Encoding was present; whether its last coding is chunked.
    transfer_encoding: Option<bool>,
}

impl FramingFields {
    fn content_length(&mut self, value: &[u8]) {
        self.length = agreed_length(self.length, value);
    }

    fn transfer_encoding(&mut self, value: &[u8]) {
        let last = value.split(|&b| b == b',').next_back().map(<[u8]>::trim_ascii);
        self.transfer_encoding = Some(last.is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")));
    }
}

/// The length agreed so far, with one more Content-Length field's `value`
/// (read on both sides): `Err` once a value is invalid or disagrees. A list
/// of equal values is one length (RFC 9112 §6.3).
pub(crate) fn agreed_length(so_far: Option<Result<u64, &'static str>>, value: &[u8]) -> Option<Result<u64, &'static str>> {
    value.split(|&b| b == b',').fold(so_far, |so_far, part| {
        let n = parse_decimal(part.trim_ascii()).ok_or("invalid Content-Length");
        Some(match (so_far, n) {
            (Some(Err(e)), _) | (_, Err(e)) => Err(e),
            (Some(Ok(m)), Ok(n)) if m != n => Err("conflicting Content-Length values"),
            (_, Ok(n)) => Ok(n),
        })
    })
}

/// What a message's Connection fields said (read on both sides: the client's
/// request heads and the upstream's response heads).
#[derive(Debug, Default)]
pub(crate) struct ConnectionTokens {
    pub close: bool,
    pub keep_alive: bool,
    pub upgrade: bool,
    /// A token that names another field, which is hop-by-hop too.
    pub other: bool,
}

impl ConnectionTokens {
    /// Adds one Connection field's value.
    pub fn read(&mut self, value: &[u8]) {
        for token in value.split(|&b| b == b',').map(<[u8]>::trim_ascii) {
            let close = token.eq_ignore_ascii_case(b"close");
            let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
            let upgrade = token.eq_ignore_ascii_case(b"upgrade");
            self.close |= close;
            self.keep_alive |= keep_alive;
            self.upgrade |= upgrade;
            self.other |= !close && !keep_alive;
        }
    }
}

/// Parses one response head from the front of `buf` and takes its bytes out;
/// `None` while it is incomplete. `map`: whether its fields go into a map,
/// with room for that many more, or stay as lines.
///
/// The head's end is found first, so its bytes can be frozen and parsed in
/// place: the fields are slices of them, and the parser's field array
/// starts small (most responses carry a handful of fields), growing to
/// [`MAX_HEADERS`] only for a head that needs it.
pub fn parse_response_head(buf: &mut BytesMut, map: Option<usize>) -> Result<Option<ResponseHead>, WireError> {
    let Some(len) = head_end(buf) else {
        if buf.len() > MAX_HEAD_BYTES {
            return Err(WireError::HeadTooLarge);
        }
        if !b"HTTP/".starts_with(&buf[..buf.len().min(5)]) {
            return Err(WireError::Head(httparse::Error::Version));
        }
        return Ok(None);
    };
    if len > MAX_HEAD_BYTES {
        return Err(WireError::HeadTooLarge);
    }
    // Split off, not copied: the head's fields share the connection's buffer,
    // which the next read reclaims whole once the response is done with them.
    let head = buf.split_to(len).freeze();
    match parse_response(&head, &mut [httparse::EMPTY_HEADER; FEW_HEADERS], map) {
        Err(WireError::Head(httparse::Error::TooManyHeaders)) => parse_response(&head, &mut [httparse::EMPTY_HEADER; MAX_HEADERS], map),
        parsed => parsed,
    }
    .map(Some)
}

/// Fields the parser makes room for at first.
const FEW_HEADERS: usize = 24;

fn parse_response<'b>(head: &'b Bytes, fields: &mut [httparse::Header<'b>], map: Option<usize>) -> Result<ResponseHead, WireError> {
    let mut response = httparse::Response::new(fields);
    if response.parse(head)?.is_partial() {
        return Err(WireError::Header);
    }
    let status = StatusCode::from_u16(response.code.unwrap_or(0)).map_err(|_| WireError::Header)?;
    let version = if response.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    // A 101 keeps every field, for the upgrade.
    let upgrade = status == StatusCode::SWITCHING_PROTOCOLS;
    let as_lines = if map.is_none() { as_lines(head, response.headers, upgrade) } else { None };
    let read = match as_lines {
        Some(read) => read,
        // A map asked for, or a head that is not plain (rare: its fields are read twice then).
        None => into_map(head, response.headers, upgrade, map.unwrap_or(0))?,
    };
    let Read { headers, lines, framing, connection } = read;
    let keep_alive = !connection.close && (connection.keep_alive || version != Version::HTTP_10);
    Ok(ResponseHead { status, version, headers, fields: lines, keep_alive, framing })
}

/// A head's fields, read.
struct Read {
    headers: HeaderMap,
    lines: FieldLines,
    framing: FramingFields,
    connection: ConnectionTokens,
}

/// One pass over the parsed fields, which go into a map: each name is made
/// once, and the framing and Connection fields are recognised by it. A
/// Connection that only says whether this hop stays open is left out, with
/// Keep-Alive; any other hop-by-hop field is left to the gateway's rule for
/// them (made here from the parser's fields, the map cost a thousand
/// instructions less than made later from lines: callgrind, h2c).
fn into_map(head: &Bytes, fields: &[httparse::Header<'_>], upgrade: bool, room: usize) -> Result<Read, WireError> {
    let mut headers = HeaderMap::with_capacity(fields.len() + room);
    let (mut framing, mut connection) = (FramingFields::default(), ConnectionTokens::default());
    let mut held_back = false;
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| WireError::Header)?;
        let hop_only = name == header::CONNECTION || name == KEEP_ALIVE;
        if name == header::CONNECTION {
            connection.read(f.value);
        } else if name == header::CONTENT_LENGTH {
            framing.content_length(f.value);
        } else if name == header::TRANSFER_ENCODING {
            framing.transfer_encoding(f.value);
        }
        if hop_only && !upgrade {
            held_back = true;
            continue;
        }
        headers.append(name, shared_value(head, f.value)?);
    }
    // A Connection field that names other fields stays, with Keep-Alive, for
    // the gateway to drop those too (rare: appended after the rest).
    if held_back && connection.other {
        for f in fields {
            let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| WireError::Header)?;
            if name == header::CONNECTION || name == KEEP_ALIVE {
                headers.append(name, shared_value(head, f.value)?);
            }
        }
    }
    Ok(Read { headers, lines: FieldLines::default(), framing, connection })
}

/// One pass over the parsed fields of a plain head (see
/// [`ResponseHead::fields`]), kept where they are: the framing and
/// hop-by-hop fields are recognised by their names' bytes, and this hop's
/// own are read and left out. `None` for a head that is not plain.
fn as_lines(head: &Bytes, fields: &[httparse::Header<'_>], upgrade: bool) -> Option<Read> {
    if upgrade {
        return None;
    }
    let mut lines = FieldLines::with_capacity(head.clone(), fields.len());
    let (mut framing, mut connection) = (FramingFields::default(), ConnectionTokens::default());
    for f in fields {
        let name = f.name.as_bytes();
        match headers::hop_by_hop_index(name) {
            Some(AT_CONNECTION) => connection.read(f.value),
            Some(AT_KEEP_ALIVE) => {}
            Some(AT_TRANSFER_ENCODING) => framing.transfer_encoding(f.value),
            Some(_) => return None,
            None => {
                if name.eq_ignore_ascii_case(b"content-length") {
                    framing.content_length(f.value);
                }
                lines.push(name, f.value);
            }
        }
    }
    (!connection.other).then(|| Read { headers: HeaderMap::new(), lines, framing, connection })
}

/// A header value that shares `bytes`, which `value` is a slice of.
fn shared_value(bytes: &Bytes, value: &[u8]) -> Result<HeaderValue, WireError> {
    HeaderValue::from_maybe_shared(bytes.slice_ref(value)).map_err(|_| WireError::Header)
}

/// Where the head at the front of `buf` ends (after its empty line), when it is all there.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    memchr::memchr_iter(b'\n', buf).find_map(|i| match &buf[i + 1..] {
        [b'\n', ..] => Some(i + 2),
        [b'\r', b'\n', ..] => Some(i + 3),
        _ => None,
    })
}

/// The fields of a head parsed from `bytes`, values sharing its bytes, in a
/// map with room for `capacity` fields (the client side's request heads are read with this too).
pub(crate) fn header_map<'a, 'b: 'a>(
    bytes: &Bytes,
    fields: impl Iterator<Item = &'a httparse::Header<'b>>,
    capacity: usize,
) -> Result<HeaderMap, WireError> {
    let mut headers = HeaderMap::with_capacity(capacity);
    for f in fields {
        let name = HeaderName::from_bytes(f.name.as_bytes()).map_err(|_| WireError::Header)?;
        headers.append(name, shared_value(bytes, f.value)?);
    }
    Ok(headers)
}

/// How a response body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `content-length` bytes.
    Length(u64),
    Chunked,
    /// Until the upstream closes the connection.
    Close,
}

/// How the body of a response to `method` is framed (RFC 9112 §6.3). A
/// response with both framing headers, or with disagreeing lengths, is
/// refused: forwarding either reading is how responses get split.
pub fn response_framing(method: &Method, head: &ResponseHead) -> Result<BodyFraming, WireError> {
    let no_body = *method == Method::HEAD
        || head.status.is_informational()
        || head.status == StatusCode::NO_CONTENT
        || head.status == StatusCode::NOT_MODIFIED;
    if no_body {
        return Ok(BodyFraming::Empty);
    }
    match (head.framing.transfer_encoding, head.framing.length) {
        (Some(_), Some(_)) => Err(WireError::Framing("both Transfer-Encoding and Content-Length")),
        (Some(true), None) => Ok(BodyFraming::Chunked),
        (Some(false), None) | (None, None) => Ok(BodyFraming::Close),
        (None, Some(Ok(n))) => Ok(BodyFraming::Length(n)),
        (None, Some(Err(e))) => Err(WireError::Framing(e)),
    }
}

pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().fold(0, |n, d| n * 10 + u64::from(d - b'0')))
}

/// What the chunked decoder found at the front of its buffer.
#[derive(Debug, PartialEq)]
pub enum Decoded {
    Data(Bytes),
    /// The trailer section, when it has fields; the body is over.
    Trailers(HeaderMap),
    /// The body is over.
    End,
    /// More bytes are needed.
    More,
}

/// A chunked body decoder (RFC 9112 §7.1), fed from the connection's buffer.
#[derive(Debug, Default)]
pub struct ChunkedDecoder {
    state: Chunk,
}

#[derive(Debug, Default, Clone, Copy)]
enum Chunk {
    #[default]
    Size,
    Data(u64),
    DataEnd,
    Trailers,
    Done,
}

impl ChunkedDecoder {
    /// Takes what it can from the front of `buf`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Decoded, WireError> {
        loop {
            match self.state {
                Chunk::Size => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(WireError::Chunk("chunk-size line too long"))
                        } else {
                            Ok(Decoded::More)
                        };
                    };
                    let size = chunk_size(&buf[..=end]).ok_or(WireError::Chunk("invalid chunk size"))?;
                    buf.advance(end + 1);
                    self.state = if size == 0 { Chunk::Trailers } else { Chunk::Data(size) };
                }
                Chunk::Data(left) => {
                    if buf.is_empty() {
                        return Ok(Decoded::More);
                    }
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let left = left - n as u64;
                    self.state = if left == 0 { Chunk::DataEnd } else { Chunk::Data(left) };
                    return Ok(Decoded::Data(buf.split_to(n).freeze()));
                }
                Chunk::DataEnd => match buf.first() {
                    None => return Ok(Decoded::More),
                    Some(b'\n') => {
                        buf.advance(1);
                        self.state = Chunk::Size;
                    }
                    Some(b'\r') if buf.len() < 2 => return Ok(Decoded::More),
                    Some(b'\r') if buf[1] == b'\n' => {
                        buf.advance(2);
                        self.state = Chunk::Size;
                    }
                    Some(_) => return Err(WireError::Chunk("chunk data not followed by CRLF")),
                },
                Chunk::Trailers => {
                    let len = match &buf[..] {
                        [] | [b'\r'] => return Ok(Decoded::More),
                        [b'\n', ..] => 1,
                        [b'\r', b'\n', ..] => 2,
                        _ => match head_end(buf) {
                            Some(len) if len <= MAX_HEAD_BYTES => len,
                            None if buf.len() <= MAX_HEAD_BYTES => return Ok(Decoded::More),
                            _ => return Err(WireError::Chunk("trailer section too large")),
                        },
                    };
                    let section = buf.split_to(len).freeze();
                    self.state = Chunk::Done;
                    if len <= 2 {
                        return Ok(Decoded::End);
                    }
                    let mut fields = [httparse::EMPTY_HEADER; MAX_HEADERS];
                    let parsed = match httparse::parse_headers(&section, &mut fields) {
                        Ok(httparse::Status::Complete((_, parsed))) => parsed,
                        _ => return Err(WireError::Chunk("malformed trailer section")),
                    };
                    return Ok(Decoded::Trailers(
                        header_map(&section, parsed.iter(), parsed.len()).map_err(|_| WireError::Chunk("invalid trailer field"))?,
                    ));
                }
                Chunk::Done => return Ok(Decoded::End),
            }
        }
    }
}

/// The size of a chunk-size line (`1a;ext=v\r\n`), extensions ignored.
fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = line.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let digits = line.split(|&b| b == b';').next()?.trim_ascii_end();
    if digits.is_empty() || digits.len() > 15 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, &d| Some(n * 16 + u64::from(char::from(d).to_digit(16)?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> ResponseHead {
        parse_response_head(&mut BytesMut::from(bytes), None).unwrap().unwrap()
    }

    #[test]
    fn a_read_buffer_is_reused_once_the_pieces_split_off_it_are_dropped() {
        let mut buf = BytesMut::with_capacity(8192);
        let start = buf.as_ptr();
        buf.extend_from_slice(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
        let parsed = parse_response_head(&mut buf, None).unwrap().unwrap();
        let body = buf.split_to(2).freeze();
        assert_eq!((parsed.fields.get(b"content-length"), &body[..]), (Some(&b"2"[..]), &b"ok"[..]));
        assert_eq!(body.as_ptr(), start.wrapping_add(38), "the body shares the buffer, uncopied");
        // The response is done with: the next read reserves room in the same allocation.
        drop((parsed, body));
        buf.reserve(8192);
        assert_eq!(buf.as_ptr(), start);
    }

    fn written(head: &RequestHead<'_>, host: &str, framing: RequestFraming) -> Vec<u8> {
        let mut out = Vec::new();
        write_request_head(&mut out, head, host, framing);
        out
    }

    #[test]
    fn the_request_head_is_origin_form_with_the_gateways_framing() {
        let mut headers = HeaderMap::new();
        headers.insert("x-a", HeaderValue::from_static("1"));
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("999"));
        headers.insert(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        let out = written(
            &RequestHead { method: &Method::POST, target: "/a?b=c", headers: &headers, added: None },
            "10.0.0.1:80",
            RequestFraming::Length(12),
        );
        assert_eq!(out, b"POST /a?b=c HTTP/1.1\r\nx-a: 1\r\nhost: 10.0.0.1:80\r\ncontent-length: 12\r\n\r\n");

        // The added fields follow the map's, before the framing.
        let client = crate::http::headers::ClientInfo::new("10.0.0.9:4000".parse().unwrap());
        let id = HeaderValue::from_static("id");
        let added = AddedFields::new(&mut HeaderMap::new(), &client, "a.example", &id, &[b'0'; 55]);
        let out = written(
            &RequestHead { method: &Method::POST, target: "/", headers: &headers, added: Some(&added) },
            "10.0.0.1:80",
            RequestFraming::Length(12),
        );
        let head = String::from_utf8(out).unwrap();
        assert!(head.starts_with("POST / HTTP/1.1\r\nx-a: 1\r\nhost: 10.0.0.1:80\r\nx-forwarded-for: 10.0.0.9\r\n"), "{head}");
        assert!(
            head.ends_with(
                "x-request-id: id\r\ntraceparent: 0000000000000000000000000000000000000000000000000000000\r\ncontent-length: 12\r\n\r\n"
            ),
            "{head}"
        );

        headers.insert(header::HOST, HeaderValue::from_static("example.com"));
        let out = written(
            &RequestHead { method: &Method::GET, target: "/", headers: &HeaderMap::new(), added: None },
            "h",
            RequestFraming::Chunked,
        );
        assert_eq!(out, b"GET / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n");
        let out = written(&RequestHead { method: &Method::GET, target: "/", headers: &headers, added: None }, "h", RequestFraming::Empty);
        assert_eq!(out, b"GET / HTTP/1.1\r\nx-a: 1\r\nhost: example.com\r\ncontent-length: 0\r\n\r\n", "the client said Content-Length");
        let out = written(
            &RequestHead { method: &Method::PUT, target: "/", headers: &HeaderMap::new(), added: None },
            "h",
            RequestFraming::Empty,
        );
        assert_eq!(out, b"PUT / HTTP/1.1\r\nhost: h\r\ncontent-length: 0\r\n\r\n");
    }

    #[test]
    fn chunk_sizes_are_lower_hex() {
        for (len, line) in [(0, "0\r\n"), (1, "1\r\n"), (255, "ff\r\n"), (4096, "1000\r\n"), (65_535, "ffff\r\n")] {
            let mut out = Vec::new();
            write_chunk_size(&mut out, len);
            assert_eq!(out, line.as_bytes());
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("grpc-status", HeaderValue::from_static("0"));
        let mut out = Vec::new();
        write_last_chunk(&mut out, Some(&trailers));
        assert_eq!(out, b"0\r\ngrpc-status: 0\r\n\r\n");
    }

    #[test]
    fn a_response_head_is_parsed_once_complete_and_leaves_the_body() {
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-A: 1\r\nx-a: 2\r\n"[..]);
        assert!(parse_response_head(&mut buf, None).unwrap().is_none());
        buf.extend_from_slice(b"\r\nokHTTP/1.1");
        let parsed = parse_response_head(&mut buf, None).unwrap().unwrap();
        assert_eq!((parsed.status, parsed.version), (StatusCode::OK, Version::HTTP_11));
        let x_a: Vec<_> = parsed.fields.iter().filter(|(n, _)| n.eq_ignore_ascii_case(b"x-a")).map(|(_, v)| v).collect();
        assert_eq!(x_a, [b"1", b"2"]);
        assert_eq!(&buf[..], b"okHTTP/1.1");
        assert_eq!(head(b"HTTP/1.0 404 Not Found\r\n\r\n").version, Version::HTTP_10);
    }

    #[test]
    fn malformed_or_oversized_heads_are_errors() {
        assert!(parse_response_head(&mut BytesMut::from(&b"HTTP/1.1 2x0 OK\r\n\r\n"[..]), None).is_err());
        assert!(parse_response_head(&mut BytesMut::from(&b"SSH-2.0-OpenSSH\r\n\r\n"[..]), None).is_err());
        assert!(parse_response_head(&mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n"[..]), None).is_err());
        let mut big = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        while big.len() <= MAX_HEAD_BYTES {
            big.extend_from_slice(b"x-filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert!(matches!(parse_response_head(&mut big, None), Err(WireError::HeadTooLarge | WireError::Head(_))));
        let mut many = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("x-{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert!(matches!(parse_response_head(&mut many, None), Err(WireError::Head(httparse::Error::TooManyHeaders))));
    }

    #[test]
    fn framing_follows_rfc_9112() {
        let get = Method::GET;
        let framing = |m: &Method, bytes: &[u8]| response_framing(m, &head(bytes));
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(), BodyFraming::Length(5));
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\ncontent-length: 5, 5\r\n\r\n").unwrap(), BodyFraming::Length(5));
        assert_eq!(framing(&Method::HEAD, b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\n").unwrap(), BodyFraming::Empty);
        assert_eq!(framing(&get, b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(), BodyFraming::Empty);
        assert_eq!(framing(&get, b"HTTP/1.1 304 Not Modified\r\ncontent-length: 5\r\n\r\n").unwrap(), BodyFraming::Empty);
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n").unwrap(), BodyFraming::Chunked);
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked, gzip\r\n\r\n").unwrap(), BodyFraming::Close);
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\n\r\n").unwrap(), BodyFraming::Close);
        // Field names are case-insensitive: the framing fields are known by name, whatever the case.
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\nContent-LENGTH: 5\r\n\r\n").unwrap(), BodyFraming::Length(5));
        assert_eq!(framing(&get, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: CHUNKED\r\n\r\n").unwrap(), BodyFraming::Chunked);
        for refused in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTRANSFER-ENCODING: chunked\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999\r\n\r\n",
        ] {
            assert!(framing(&get, refused).is_err(), "{}", String::from_utf8_lossy(refused));
        }
    }

    #[test]
    fn keep_alive_by_version_and_connection_tokens() {
        assert!(head(b"HTTP/1.1 200 OK\r\n\r\n").keep_alive);
        assert!(!head(b"HTTP/1.1 200 OK\r\nConnection: Close\r\n\r\n").keep_alive);
        assert!(!head(b"HTTP/1.1 200 OK\r\nconnection: x, close\r\n\r\n").keep_alive);
        assert!(!head(b"HTTP/1.0 200 OK\r\n\r\n").keep_alive);
        assert!(head(b"HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n").keep_alive);
    }

    #[test]
    fn a_plain_head_keeps_its_fields_as_read_and_any_other_goes_through_a_map() {
        let h = head(b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n");
        assert!(h.headers.is_empty(), "plain: no map");
        assert_eq!(
            h.fields.iter().collect::<Vec<_>>(),
            [(&b"X-A"[..], &b"1"[..])],
            "Connection, Keep-Alive and Transfer-Encoding were read and left out"
        );
        assert_eq!(response_framing(&Method::GET, &h).unwrap(), BodyFraming::Chunked);
        assert!(h.keep_alive);
        for other in [
            &b"HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nUpgrade: h2c\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTrailer: grpc-status\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nProxy-Connection: keep-alive\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTE: trailers\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
        ] {
            let h = head(other);
            assert!(h.fields.is_empty(), "{}", String::from_utf8_lossy(other));
            assert_eq!(h.headers.len(), other.split(|&b| b == b'\n').count() - 3, "every field is kept for the map");
        }
        assert!(!head(b"HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n").keep_alive);
    }

    #[test]
    fn asked_for_a_map_the_fields_go_into_one_with_the_room_asked_for() {
        let plain = b"HTTP/1.1 200 OK\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\nx-a: 2\r\n\r\n";
        let h = parse_response_head(&mut BytesMut::from(&plain[..]), Some(3)).unwrap().unwrap();
        assert!(h.fields.is_empty());
        assert_eq!(h.headers.keys().collect::<Vec<_>>(), ["transfer-encoding", "x-a"], "Connection was read and left out");
        assert_eq!(response_framing(&Method::GET, &h).unwrap(), BodyFraming::Chunked);
        assert_eq!(h.headers.get_all("x-a").iter().collect::<Vec<_>>(), ["1", "2"]);
        assert!(h.headers.capacity() >= 2 + 3, "capacity {}", h.headers.capacity());
        let other = b"HTTP/1.1 200 OK\r\nConnection: close, x-a\r\nx-a: 1\r\n\r\n";
        let h = parse_response_head(&mut BytesMut::from(&other[..]), Some(0)).unwrap().unwrap();
        assert_eq!(h.headers.len(), 2, "every field, for the gateway's rule on hop-by-hop fields");
    }

    /// Feeds `wire` to a decoder `step` bytes at a time; returns the data and trailers.
    fn decode_in_steps(wire: &[u8], step: usize) -> Result<(Vec<u8>, Option<HeaderMap>), WireError> {
        let (mut decoder, mut buf, mut data) = (ChunkedDecoder::default(), BytesMut::new(), Vec::new());
        let mut fed = 0;
        loop {
            match decoder.decode(&mut buf)? {
                Decoded::Data(d) => data.extend_from_slice(&d),
                Decoded::Trailers(t) => return Ok((data, Some(t))),
                Decoded::End => return Ok((data, None)),
                Decoded::More if fed == wire.len() => return Err(WireError::Chunk("truncated")),
                Decoded::More => {
                    let n = step.min(wire.len() - fed);
                    buf.extend_from_slice(&wire[fed..fed + n]);
                    fed += n;
                }
            }
        }
    }

    #[test]
    fn chunked_bodies_decode_whatever_the_read_boundaries() {
        let wire = b"5\r\nhello\r\n1;ext=\"v\"\r\n \r\n10\r\n0123456789abcdef\r\n0\r\ngrpc-status: 0\r\nx-b: 1\r\n\r\n";
        for step in [1, 2, 3, 7, wire.len()] {
            let (data, trailers) = decode_in_steps(wire, step).unwrap();
            assert_eq!(data, b"hello 0123456789abcdef", "step {step}");
            let trailers = trailers.unwrap();
            assert_eq!((trailers["grpc-status"].as_bytes(), trailers["x-b"].as_bytes()), (&b"0"[..], &b"1"[..]));
        }
        assert_eq!(decode_in_steps(b"3\nabc\n0\n\n", 1).unwrap(), (b"abc".to_vec(), None), "bare LF line ends");
        let mut decoder = ChunkedDecoder::default();
        let mut rest = BytesMut::from(&b"0\r\n\r\nHTTP/1.1 200"[..]);
        assert_eq!(decoder.decode(&mut rest).unwrap(), Decoded::End);
        assert_eq!(decoder.decode(&mut rest).unwrap(), Decoded::End, "and stays over");
        assert_eq!(&rest[..], b"HTTP/1.1 200", "the next response's bytes stay");
    }

    #[test]
    fn broken_chunked_bodies_are_errors() {
        for wire in [&b"zz\r\n"[..], b"5\r\nhelloX\r\n", b"ffffffffffffffff\r\n", b"\r\n", b"5\r\nhel"] {
            assert!(decode_in_steps(wire, 1).is_err(), "{}", String::from_utf8_lossy(wire));
        }
        let long = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(decode_in_steps(&long, long.len()).is_err());
    }
}
