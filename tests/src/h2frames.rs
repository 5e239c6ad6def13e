//! A raw HTTP/2 peer for the tests that must send what no client library
//! would (floods, malformed header blocks): frames written byte by byte, and
//! frames read back with their type, flags, stream and payload.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{
        TcpStream,
        tcp::{OwnedReadHalf, OwnedWriteHalf},
    },
    time::Instant,
};

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const PRIORITY: u8 = 0x2;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame's bytes.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).expect("test frames are small").to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK header block of literal fields (never indexed, no Huffman coding),
/// so any name or value goes on the wire exactly as given.
pub fn header_block(fields: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.push(0x10);
        for s in [name, value] {
            hpack_length(&mut out, s.len());
            out.extend_from_slice(s.as_bytes());
        }
    }
    out
}

/// HPACK's integer with a 7-bit prefix (RFC 7541 §5.1), the string length's form.
fn hpack_length(out: &mut Vec<u8>, len: usize) {
    if len < 127 {
        out.push(len as u8);
        return;
    }
    out.push(0x7f);
    let mut rest = len - 127;
    while rest >= 128 {
        out.push((rest % 128) as u8 | 0x80);
        rest /= 128;
    }
    out.push(rest as u8);
}

/// A GET on `stream` with the pseudo-headers a client sends, then `extra` fields.
pub fn get(stream: u32, path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut fields = vec![(":method", "GET"), (":scheme", "http"), (":path", path), (":authority", "flood.example")];
    fields.extend_from_slice(extra);
    frame(HEADERS, END_STREAM | END_HEADERS, stream, &header_block(&fields))
}

#[derive(Debug, Clone)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// A GOAWAY's error code.
    pub fn goaway_code(&self) -> Option<u32> {
        (self.kind == GOAWAY && self.payload.len() >= 8).then(|| u32::from_be_bytes(self.payload[4..8].try_into().expect("4 bytes")))
    }

    /// An RST_STREAM's error code.
    pub fn reset_code(&self) -> Option<u32> {
        (self.kind == RST_STREAM && self.payload.len() == 4).then(|| u32::from_be_bytes(self.payload[..4].try_into().expect("4 bytes")))
    }

    /// A response HEADERS frame's status, when it is the block's first field:
    /// a static-table index (200, 204, 206, 304, 400, 404, 500) or a literal
    /// named by index 8 (`:status`), not Huffman-coded.
    pub fn status(&self) -> Option<u16> {
        if self.kind != HEADERS {
            return None;
        }
        let first = *self.payload.first()?;
        if first & 0x80 != 0 {
            let statuses = [200, 204, 206, 304, 400, 404, 500];
            return usize::from(first & 0x7f).checked_sub(8).and_then(|i| statuses.get(i).copied());
        }
        // A literal of any kind (with, without or never indexed) naming index 8.
        let named_status = matches!(first, 0x48 | 0x08 | 0x18);
        let digits = self.payload.get(2..5)?;
        (named_status && self.payload.get(1) == Some(&3)).then(|| std::str::from_utf8(digits).ok()?.parse().ok()).flatten()
    }
}

pub async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0; len];
    r.read_exact(&mut payload).await?;
    Ok(Frame { kind: head[3], flags: head[4], stream: u32::from_be_bytes(head[5..9].try_into().expect("4 bytes")) & 0x7fff_ffff, payload })
}

/// An HTTP/2 connection with the preface and an empty SETTINGS sent.
pub struct Peer {
    pub read: OwnedReadHalf,
    pub write: OwnedWriteHalf,
}

impl Peer {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.expect("connect");
        let (read, mut write) = stream.into_split();
        let mut hello = PREFACE.to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        write.write_all(&hello).await.expect("preface");
        Self { read, write }
    }

    /// Frames until the server closes or `within` passes, acknowledging the server's SETTINGS.
    pub async fn frames(&mut self, within: Duration) -> Vec<Frame> {
        let deadline = Instant::now() + within;
        let mut frames = Vec::new();
        while let Ok(Ok(f)) = tokio::time::timeout_at(deadline, read_frame(&mut self.read)).await {
            if f.kind == SETTINGS && f.flags & ACK == 0 {
                let _ = self.write.write_all(&frame(SETTINGS, ACK, 0, &[])).await;
            }
            frames.push(f);
        }
        frames
    }
}

/// What a flood ran into.
#[derive(Debug)]
pub struct FloodResult {
    /// Frames written before the connection closed (or the cap).
    pub sent: usize,
    /// The GOAWAY error code received, if any.
    pub goaway: Option<u32>,
    /// Whether the server closed the connection.
    pub closed: bool,
}

/// Sends `setup`, then `next(i)` for i = 0, 1, … in batches, reading the
/// server's frames meanwhile, until the server closes the connection, `cap`
/// frames were sent, or 20 seconds pass.
pub async fn flood(addr: SocketAddr, setup: &[u8], mut next: impl FnMut(usize) -> Vec<u8>, cap: usize) -> FloodResult {
    let Peer { mut read, mut write } = Peer::connect(addr).await;
    let (goaway_tx, goaway_rx) = tokio::sync::watch::channel(None);
    let mut reader = tokio::spawn(async move {
        // Runs until the server closes the connection.
        while let Ok(f) = read_frame(&mut read).await {
            if let Some(code) = f.goaway_code() {
                goaway_tx.send_if_modified(|g| g.replace(code).is_none());
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    if write.write_all(setup).await.is_ok() {
        while sent < cap && Instant::now() < deadline && !reader.is_finished() {
            let mut batch = Vec::new();
            for _ in 0..100 {
                batch.extend(next(sent));
                sent += 1;
            }
            if write.write_all(&batch).await.is_err() {
                break;
            }
        }
    }
    // A server that is going to close does so promptly once the bound is passed.
    let closed = tokio::time::timeout(Duration::from_secs(3), &mut reader).await.is_ok();
    reader.abort();
    let goaway = *goaway_rx.borrow();
    FloodResult { sent, goaway, closed }
}
