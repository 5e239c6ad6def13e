//! A response head as HTTP/2 fields: the upstream's field lines as they
//! were read (names lowered, as HTTP/2 requires), the map's fields, the
//! fields the gateway adds in place of any of the same name, and `Date` when
//! the response has none. Fields HTTP/2 does not carry are left out. No map
//! is built for an upstream's head on the way (the HTTP/1.1 server writes
//! the lines as they are for the same reason).

use bytes::BytesMut;
use http::{header, response::Parts};
use router_h2::{
    head::is_connection_specific,
    hpack::{encode_field, encode_literal},
};

use crate::{request::ResponseFields, server::date};

/// Longest field name lowered on the stack.
const SHORT_NAME: usize = 64;

pub fn encode_head(parts: &Parts, fields: &ResponseFields, dst: &mut BytesMut) {
    let mut dated = false;
    let mut buf = [0u8; SHORT_NAME];
    for (name, value) in fields.upstream().iter() {
        let long;
        let lower: &[u8] = if !name.iter().any(u8::is_ascii_uppercase) {
            name
        } else if name.len() <= SHORT_NAME {
            buf[..name.len()].copy_from_slice(name);
            buf[..name.len()].make_ascii_lowercase();
            &buf[..name.len()]
        } else {
            long = name.to_ascii_lowercase();
            &long
        };
        if is_connection_specific(lower) || fields.replace(lower) {
            continue;
        }
        dated |= lower == b"date";
        encode_literal(lower, value, dst);
    }
    for (name, value) in &parts.headers {
        if is_connection_specific(name.as_str().as_bytes()) || fields.replace(name.as_str().as_bytes()) {
            continue;
        }
        dated |= name == header::DATE;
        encode_field(name, value, dst);
    }
    fields.for_each(|name, value| encode_literal(name.as_str().as_bytes(), value, dst));
    if !dated {
        date::now(|now| encode_literal(b"date", now, dst));
    }
}
