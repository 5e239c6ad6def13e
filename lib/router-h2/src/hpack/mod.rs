//! HPACK (RFC 7541): the request decoder, complete, and the response
//! encoder, stateless (see the crate docs for why the two differ).

mod decode;
mod encode;
pub mod huffman;
mod table;

pub use self::{
    decode::{DecodeError, Decoder},
    encode::{encode_field, encode_literal, encode_status},
    table::{Entry, Name, Pseudo},
};

/// An integer with an `n`-bit prefix (RFC 7541 §5.1); `flags` fills the
/// prefix octet's other bits.
fn encode_int(value: usize, n: u8, flags: u8, dst: &mut bytes::BytesMut) {
    let max = (1usize << n) - 1;
    if value < max {
        dst.extend_from_slice(&[flags | value as u8]);
        return;
    }
    dst.extend_from_slice(&[flags | max as u8]);
    let mut rest = value - max;
    while rest >= 128 {
        dst.extend_from_slice(&[(rest as u8 & 0x7f) | 0x80]);
        rest >>= 7;
    }
    dst.extend_from_slice(&[rest as u8]);
}
