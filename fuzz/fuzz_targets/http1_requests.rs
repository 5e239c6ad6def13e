//! The HTTP/1.1 server's reading of a connection, on any bytes a client can
//! send, cut into reads at any points: request heads
//! (`server::h1::head::parse`) and the bodies they frame (skipped by length,
//! or through the chunked decoder). It must never panic, and what it reads —
//! each head's method, target and framing, each body's end, the first error —
//! must not depend on how the bytes were cut. Input: one byte saying where to
//! cut, then the connection's bytes.
#![no_main]

use bytes::{Buf, BytesMut};
use libfuzzer_sys::fuzz_target;
use router_proxy::{
    server::h1::head::{BodyFraming, Limits, parse},
    upstream::h1::wire::{ChunkedDecoder, Decoded},
};

const LIMITS: Limits = Limits { max_headers: 100, max_bytes: 64 * 1024 };

enum State {
    Head,
    Length(u64),
    Chunked(ChunkedDecoder),
}

/// What the server reads of the connection, fed in `pieces`.
fn read(pieces: &mut dyn Iterator<Item = &[u8]>) -> Vec<String> {
    let (mut buf, mut state, mut seen) = (BytesMut::new(), State::Head, Vec::new());
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match &mut state {
                State::Head => match parse(&mut buf, LIMITS) {
                    Ok(Some(head)) => {
                        let r = &head.request;
                        seen.push(format!("{} {} {:?} ambiguous={}", r.method(), r.uri(), head.body, head.ambiguous));
                        state = match head.body {
                            BodyFraming::None => State::Head,
                            BodyFraming::Length(n) => State::Length(n),
                            BodyFraming::Chunked => State::Chunked(ChunkedDecoder::default()),
                        };
                    }
                    Ok(None) => break,
                    Err(e) => {
                        seen.push(format!("refused: {e}"));
                        return seen;
                    }
                },
                State::Length(left) => {
                    let n = usize::try_from(*left).unwrap_or(usize::MAX).min(buf.len());
                    buf.advance(n);
                    *left -= n as u64;
                    if *left > 0 {
                        break;
                    }
                    seen.push("body end".to_owned());
                    state = State::Head;
                }
                State::Chunked(decoder) => match decoder.decode(&mut buf) {
                    Ok(Decoded::Data(_)) => {}
                    Ok(Decoded::Trailers(_) | Decoded::End) => {
                        seen.push("body end".to_owned());
                        state = State::Head;
                    }
                    Ok(Decoded::More) => break,
                    Err(e) => {
                        seen.push(format!("body refused: {e}"));
                        return seen;
                    }
                },
            }
        }
    }
    seen
}

fuzz_target!(|data: &[u8]| {
    let Some((&cut, bytes)) = data.split_first() else { return };
    let whole = read(&mut std::iter::once(bytes));
    let step = usize::from(cut).max(1);
    assert_eq!(read(&mut bytes.chunks(step)), whole, "cut every {step} bytes");
});
