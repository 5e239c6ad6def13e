//! HTTP/2 frames (RFC 9113 §4, §6): the 9-octet head, the checks every
//! frame type's layout must pass, and the frames a server writes.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{ProtocolError, Reason};

/// Length of a frame's head.
pub const HEAD_LEN: usize = 9;
/// SETTINGS_MAX_FRAME_SIZE's initial value and floor.
pub const MIN_MAX_FRAME_SIZE: u32 = 16_384;
/// SETTINGS_MAX_FRAME_SIZE's ceiling.
pub const MAX_MAX_FRAME_SIZE: u32 = (1 << 24) - 1;

pub mod kind {
    pub const DATA: u8 = 0x0;
    pub const HEADERS: u8 = 0x1;
    pub const PRIORITY: u8 = 0x2;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const PUSH_PROMISE: u8 = 0x5;
    pub const PING: u8 = 0x6;
    pub const GOAWAY: u8 = 0x7;
    pub const WINDOW_UPDATE: u8 = 0x8;
    pub const CONTINUATION: u8 = 0x9;
}

mod flag {
    pub const END_STREAM: u8 = 0x1;
    pub const ACK: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const PADDED: u8 = 0x8;
    pub const PRIORITY: u8 = 0x20;
}

/// A frame's head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
}

impl Head {
    pub fn parse(b: &[u8; HEAD_LEN]) -> Self {
        Self {
            len: usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]),
            kind: b[3],
            flags: b[4],
            // The reserved bit is ignored on receipt (§4.1).
            stream: u32::from_be_bytes([b[5], b[6], b[7], b[8]]) & 0x7fff_ffff,
        }
    }
}

/// A frame a client sent, its layout checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
        /// What it counts against flow control: the whole payload, padding included (§6.1).
        flow_len: usize,
    },
    Headers {
        stream: u32,
        /// The header block fragment, padding and priority removed.
        block: Bytes,
        end_stream: bool,
        end_headers: bool,
    },
    Priority {
        stream: u32,
    },
    RstStream {
        stream: u32,
        reason: Reason,
    },
    Settings {
        ack: bool,
        payload: Bytes,
    },
    Ping {
        ack: bool,
        payload: [u8; 8],
    },
    GoAway {
        last_stream: u32,
        reason: Reason,
    },
    WindowUpdate {
        stream: u32,
        increment: u32,
    },
    Continuation {
        stream: u32,
        block: Bytes,
        end_headers: bool,
    },
    /// A frame type this server does not know: ignored (§4.1, §5.5).
    Unknown,
}

impl Frame {
    /// Checks a frame's layout (§6) and takes it apart. Errors name the
    /// stream when only that stream is at fault.
    pub fn parse(head: Head, mut payload: Bytes) -> Result<Self, ProtocolError> {
        let stream = head.stream;
        let on_stream =
            || if stream == 0 { Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "frame needs a stream")) } else { Ok(()) };
        let on_connection =
            || if stream != 0 { Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "frame must be on stream 0")) } else { Ok(()) };
        let size =
            |ok: bool| if ok { Ok(()) } else { Err(ProtocolError::connection(Reason::FRAME_SIZE_ERROR, "frame has the wrong length")) };
        Ok(match head.kind {
            kind::DATA => {
                on_stream()?;
                let flow_len = payload.len();
                unpad(head.flags, &mut payload)?;
                Self::Data { stream, data: payload, end_stream: head.flags & flag::END_STREAM != 0, flow_len }
            }
            kind::HEADERS => {
                on_stream()?;
                unpad(head.flags, &mut payload)?;
                if head.flags & flag::PRIORITY != 0 {
                    if payload.len() < 5 {
                        return Err(ProtocolError::connection(Reason::FRAME_SIZE_ERROR, "HEADERS too short for its priority"));
                    }
                    check_dependency(stream, &payload[..4])?;
                    let _ = payload.split_to(5);
                }
                Self::Headers {
                    stream,
                    block: payload,
                    end_stream: head.flags & flag::END_STREAM != 0,
                    end_headers: head.flags & flag::END_HEADERS != 0,
                }
            }
            kind::PRIORITY => {
                on_stream()?;
                if payload.len() != 5 {
                    return Err(ProtocolError::stream(stream, Reason::FRAME_SIZE_ERROR));
                }
                check_dependency(stream, &payload[..4])?;
                Self::Priority { stream }
            }
            kind::RST_STREAM => {
                on_stream()?;
                size(payload.len() == 4)?;
                Self::RstStream { stream, reason: Reason(u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])) }
            }
            kind::SETTINGS => {
                on_connection()?;
                let ack = head.flags & flag::ACK != 0;
                size(if ack { payload.is_empty() } else { payload.len().is_multiple_of(6) })?;
                Self::Settings { ack, payload }
            }
            kind::PUSH_PROMISE => return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "a client may not push")),
            kind::PING => {
                on_connection()?;
                size(payload.len() == 8)?;
                let mut p = [0u8; 8];
                p.copy_from_slice(&payload);
                Self::Ping { ack: head.flags & flag::ACK != 0, payload: p }
            }
            kind::GOAWAY => {
                on_connection()?;
                size(payload.len() >= 8)?;
                Self::GoAway {
                    last_stream: u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff,
                    reason: Reason(u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]])),
                }
            }
            kind::WINDOW_UPDATE => {
                size(payload.len() == 4)?;
                let increment = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]) & 0x7fff_ffff;
                if increment == 0 {
                    return Err(match stream {
                        0 => ProtocolError::connection(Reason::PROTOCOL_ERROR, "WINDOW_UPDATE of 0"),
                        s => ProtocolError::stream(s, Reason::PROTOCOL_ERROR),
                    });
                }
                Self::WindowUpdate { stream, increment }
            }
            kind::CONTINUATION => {
                on_stream()?;
                Self::Continuation { stream, block: payload, end_headers: head.flags & flag::END_HEADERS != 0 }
            }
            _ => Self::Unknown,
        })
    }
}

/// Removes the padding of a PADDED frame (§6.1, §6.2).
fn unpad(flags: u8, payload: &mut Bytes) -> Result<(), ProtocolError> {
    if flags & flag::PADDED == 0 {
        return Ok(());
    }
    let Some(&pad) = payload.first() else {
        return Err(ProtocolError::connection(Reason::FRAME_SIZE_ERROR, "padded frame without its pad length"));
    };
    let pad = usize::from(pad);
    if pad >= payload.len() {
        return Err(ProtocolError::connection(Reason::PROTOCOL_ERROR, "padding as long as the frame"));
    }
    let _ = payload.split_to(1);
    payload.truncate(payload.len() - pad);
    Ok(())
}

/// A stream may not depend on itself (§5.3.1).
fn check_dependency(stream: u32, dep: &[u8]) -> Result<(), ProtocolError> {
    let on = u32::from_be_bytes([dep[0], dep[1], dep[2], dep[3]]) & 0x7fff_ffff;
    if on == stream { Err(ProtocolError::stream(stream, Reason::PROTOCOL_ERROR)) } else { Ok(()) }
}

/// Writes a frame head.
pub fn head(dst: &mut BytesMut, len: usize, kind: u8, flags: u8, stream: u32) {
    debug_assert!(len <= MAX_MAX_FRAME_SIZE as usize);
    dst.reserve(HEAD_LEN + len);
    dst.put_uint(len as u64, 3);
    dst.put_u8(kind);
    dst.put_u8(flags);
    dst.put_u32(stream);
}

/// A header block as HEADERS and as many CONTINUATIONs as `max_frame` needs.
pub fn headers(dst: &mut BytesMut, stream: u32, block: &[u8], end_stream: bool, max_frame: usize) {
    let mut chunks = block.chunks(max_frame);
    let first = chunks.next().unwrap_or_default();
    let last = first.len() == block.len();
    let flags = if end_stream { flag::END_STREAM } else { 0 } | if last { flag::END_HEADERS } else { 0 };
    head(dst, first.len(), kind::HEADERS, flags, stream);
    dst.extend_from_slice(first);
    let mut sent = first.len();
    for chunk in chunks {
        sent += chunk.len();
        head(dst, chunk.len(), kind::CONTINUATION, if sent == block.len() { flag::END_HEADERS } else { 0 }, stream);
        dst.extend_from_slice(chunk);
    }
}

/// The head of a DATA frame; its payload follows.
pub fn data_head(dst: &mut BytesMut, stream: u32, len: usize, end_stream: bool) {
    head(dst, len, kind::DATA, if end_stream { flag::END_STREAM } else { 0 }, stream);
}

pub fn settings(dst: &mut BytesMut, values: &[(u16, u32)]) {
    head(dst, values.len() * 6, kind::SETTINGS, 0, 0);
    for &(id, value) in values {
        dst.put_u16(id);
        dst.put_u32(value);
    }
}

pub fn settings_ack(dst: &mut BytesMut) {
    head(dst, 0, kind::SETTINGS, flag::ACK, 0);
}

pub fn ping(dst: &mut BytesMut, payload: [u8; 8], ack: bool) {
    head(dst, 8, kind::PING, if ack { flag::ACK } else { 0 }, 0);
    dst.extend_from_slice(&payload);
}

pub fn goaway(dst: &mut BytesMut, last_stream: u32, reason: Reason) {
    head(dst, 8, kind::GOAWAY, 0, 0);
    dst.put_u32(last_stream);
    dst.put_u32(reason.0);
}

pub fn rst_stream(dst: &mut BytesMut, stream: u32, reason: Reason) {
    head(dst, 4, kind::RST_STREAM, 0, stream);
    dst.put_u32(reason.0);
}

pub fn window_update(dst: &mut BytesMut, stream: u32, increment: u32) {
    head(dst, 4, kind::WINDOW_UPDATE, 0, stream);
    dst.put_u32(increment);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Result<Frame, ProtocolError> {
        let mut b = BytesMut::new();
        head(&mut b, payload.len(), kind, flags, stream);
        let h = Head::parse(b[..HEAD_LEN].try_into().unwrap());
        assert_eq!(h, Head { len: payload.len(), kind, flags, stream });
        Frame::parse(h, Bytes::copy_from_slice(payload))
    }

    #[test]
    fn padding_is_removed_but_counts_for_flow_control() {
        let f = frame(kind::DATA, flag::PADDED | flag::END_STREAM, 1, b"\x03abc\0\0\0").unwrap();
        assert_eq!(f, Frame::Data { stream: 1, data: Bytes::from_static(b"abc"), end_stream: true, flow_len: 7 });
        let f = frame(kind::HEADERS, flag::PADDED | flag::PRIORITY | flag::END_HEADERS, 3, b"\x01\0\0\0\x01\x10\x82\0").unwrap();
        assert_eq!(f, Frame::Headers { stream: 3, block: Bytes::from_static(b"\x82"), end_stream: false, end_headers: true });
        assert_eq!(frame(kind::DATA, flag::PADDED, 1, b"\x03ab").unwrap_err().reason, Reason::PROTOCOL_ERROR);
        assert_eq!(frame(kind::DATA, flag::PADDED, 1, b"").unwrap_err().reason, Reason::FRAME_SIZE_ERROR);
    }

    #[test]
    fn frames_on_the_wrong_stream_or_of_the_wrong_length_are_connection_errors() {
        for (kind, stream, payload) in [
            (kind::DATA, 0, &b"x"[..]),
            (kind::HEADERS, 0, b"\x82"),
            (kind::SETTINGS, 1, b""),
            (kind::PING, 1, b"12345678"),
            (kind::GOAWAY, 1, b"12345678"),
            (kind::CONTINUATION, 0, b""),
            (kind::PUSH_PROMISE, 1, b"\0\0\0\x02"),
        ] {
            let e = frame(kind, 0, stream, payload).unwrap_err();
            assert_eq!((e.reason, e.stream), (Reason::PROTOCOL_ERROR, None), "type {kind}");
        }
        for (kind, flags, payload) in [
            (kind::PING, 0, &b"1234567"[..]),
            (kind::SETTINGS, 0, b"12345"),
            (kind::SETTINGS, flag::ACK, b"123456"),
            (kind::RST_STREAM, 0, b"123"),
        ] {
            let stream = u32::from(kind == kind::RST_STREAM);
            assert_eq!(frame(kind, flags, stream, payload).unwrap_err().reason, Reason::FRAME_SIZE_ERROR, "type {kind}");
        }
    }

    #[test]
    fn stream_level_faults_name_their_stream() {
        let e = frame(kind::PRIORITY, 0, 5, b"\0\0\0\x05\x10").unwrap_err();
        assert_eq!((e.stream, e.reason), (Some(5), Reason::PROTOCOL_ERROR), "depends on itself");
        let e = frame(kind::PRIORITY, 0, 5, b"\0\0\0\x01").unwrap_err();
        assert_eq!((e.stream, e.reason), (Some(5), Reason::FRAME_SIZE_ERROR));
        let e = frame(kind::WINDOW_UPDATE, 0, 5, b"\0\0\0\0").unwrap_err();
        assert_eq!((e.stream, e.reason), (Some(5), Reason::PROTOCOL_ERROR));
        let e = frame(kind::WINDOW_UPDATE, 0, 0, b"\0\0\0\0").unwrap_err();
        assert_eq!((e.stream, e.reason), (None, Reason::PROTOCOL_ERROR));
    }

    #[test]
    fn unknown_types_are_ignored_and_reserved_bits_dropped() {
        assert_eq!(frame(0xfa, 0xff, 7, b"whatever").unwrap(), Frame::Unknown);
        let h = Head::parse(&[0, 0, 4, kind::WINDOW_UPDATE, 0, 0x80, 0, 0, 1]);
        assert_eq!(h.stream, 1);
        assert_eq!(Frame::parse(h, Bytes::from_static(&[0x80, 0, 0, 9])).unwrap(), Frame::WindowUpdate { stream: 1, increment: 9 });
    }

    #[test]
    fn a_long_header_block_is_split_into_continuations() {
        let mut b = BytesMut::new();
        let block: Vec<u8> = (0..40).collect();
        headers(&mut b, 1, &block, true, 16);
        let heads: Vec<Head> = [0, 25, 50].iter().map(|&at| Head::parse(b[at..at + HEAD_LEN].try_into().unwrap())).collect();
        assert_eq!(heads[0], Head { len: 16, kind: kind::HEADERS, flags: flag::END_STREAM, stream: 1 });
        assert_eq!(heads[1], Head { len: 16, kind: kind::CONTINUATION, flags: 0, stream: 1 });
        assert_eq!(heads[2], Head { len: 8, kind: kind::CONTINUATION, flags: flag::END_HEADERS, stream: 1 });
        assert_eq!(b.len(), 40 + 3 * HEAD_LEN);
        b.clear();
        headers(&mut b, 3, &[0x88], false, 16_384);
        assert_eq!(&b[..], [0, 0, 1, kind::HEADERS, flag::END_HEADERS, 0, 0, 0, 3, 0x88]);
    }
}
