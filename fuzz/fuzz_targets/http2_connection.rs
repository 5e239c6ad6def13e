//! The HTTP/2 server's connection state (`router_h2::conn`) on any bytes a
//! client can send after the preface and its SETTINGS, cut into reads at any
//! points, with every request answered (a head, a few bytes of body, the end)
//! as it arrives. It must never panic, never write a torn or oversized
//! frame, and never hand over a stream's data before its request or after
//! its reset. (What it hands over may depend on where reads were cut: a
//! response sent between two reads can free a stream slot a later HEADERS
//! would otherwise have been refused for.) Input: one byte saying where to
//! cut, then the frames' bytes.
#![no_main]

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use http::StatusCode;
use libfuzzer_sys::fuzz_target;
use router_h2::conn::{Config, Connection, Event, PREFACE};

const CONFIG: Config = Config {
    max_concurrent_streams: 8,
    max_header_list_size: 4096,
    stream_window: 4096,
    connection_window: 16_384,
    max_send_buffer: 1024,
    max_local_resets: 16,
};

/// What the connection does with the client's bytes, fed in `pieces`.
fn run(pieces: &mut dyn Iterator<Item = &[u8]>) -> (Vec<String>, Vec<u8>) {
    let mut conn = Connection::new(CONFIG);
    let (mut buf, mut seen, mut out) = (BytesMut::new(), Vec::new(), VecDeque::new());
    // The preface and an empty SETTINGS go ahead of the first read.
    buf.extend_from_slice(PREFACE);
    buf.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    for piece in pieces {
        buf.extend_from_slice(piece);
        let result = conn.recv(&mut buf);
        while let Some(event) = conn.poll_event() {
            match event {
                Event::Request { stream, head, end_stream } => {
                    seen.push(format!("{stream} request {} {} {end_stream}", head.method, head.uri));
                    let _ = conn.send_headers(stream, StatusCode::OK, |_| {}, false);
                    let _ = conn.send_data(stream, Bytes::from_static(&[b'x'; 300]), true);
                }
                Event::Data { stream, data, end_stream } => {
                    seen.push(format!("{stream} data {} {end_stream}", data.len()));
                    conn.release(stream, data.len());
                }
                Event::Trailers { stream, trailers } => seen.push(format!("{stream} trailers {}", trailers.len())),
                Event::Reset { stream, reason } => seen.push(format!("{stream} reset {reason:?}")),
            }
        }
        conn.output(&mut out);
        if let Err(e) = result {
            seen.push(format!("closed: {e}"));
            break;
        }
    }
    (seen, out.iter().flat_map(|b| b.iter().copied()).collect())
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let (seen, out) = run(&mut bytes.chunks(usize::from(cut).max(1)));
    // What the server writes is whole frames, none above the default maximum size.
    let mut rest = &out[..];
    while !rest.is_empty() {
        assert!(rest.len() >= 9, "a torn frame head at the end of the output");
        let len = usize::from(rest[0]) << 16 | usize::from(rest[1]) << 8 | usize::from(rest[2]);
        assert!(len <= 16_384, "a frame above SETTINGS_MAX_FRAME_SIZE's default");
        assert!(rest.len() >= 9 + len, "a torn frame at the end of the output");
        rest = &rest[9 + len..];
    }
    // A stream's data and trailers come after its request, and nothing after its reset.
    let mut open = std::collections::HashSet::new();
    for line in &seen {
        let mut words = line.split(' ');
        let Ok(stream) = words.next().unwrap_or_default().parse::<u32>() else { continue };
        match words.next() {
            Some("data" | "trailers") => assert!(open.contains(&stream), "{line} outside its request: {seen:?}"),
            Some("reset") => {
                open.remove(&stream);
            }
            Some("request") => assert!(open.insert(stream), "stream {stream} opened twice: {seen:?}"),
            _ => {}
        }
    }
});
