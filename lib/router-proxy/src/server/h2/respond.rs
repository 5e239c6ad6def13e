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

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use http::{HeaderValue, Response};
    use router_h2::hpack::{Decoder, Name};

    use super::*;
    use crate::upstream::h1::wire;

    /// The head's fields as a client decodes them.
    fn decoded(parts: &Parts, lines: &str, attempts: u32) -> Vec<(String, String)> {
        let upstream = wire::parse_response_head(&mut BytesMut::from(lines), None).unwrap().unwrap().fields;
        let fields = ResponseFields::new(upstream, HeaderValue::from_static("rid"), attempts);
        let mut block = BytesMut::new();
        encode_head(parts, &fields, &mut block);
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(&block, |e, _| {
                let Name::Field(name) = &e.name else { panic!("only fields: {e:?}") };
                out.push((name.to_string(), e.value.as_ref().unwrap().to_str().unwrap().to_owned()));
            })
            .unwrap();
        out
    }

    #[test]
    fn upstream_lines_go_out_lowered_without_this_hops_fields_and_before_the_added_ones() {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        parts.headers.insert("keep-alive", HeaderValue::from_static("5"));
        let lines = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Request-Id: upstream's\r\nDate: then\r\nContent-Length: 2\r\n\r\n";
        let got = decoded(&parts, lines, 2);
        let want = [
            ("content-type", "text/plain"),
            ("date", "then"),
            ("content-length", "2"),
            ("access-control-allow-origin", "*"),
            ("x-request-id", "rid"),
            ("x-datum-router-attempts", "2"),
        ];
        assert_eq!(got, want.map(|(n, v)| (n.to_string(), v.to_string())));
    }

    #[test]
    fn a_head_without_date_gets_one() {
        let (parts, ()) = Response::new(()).into_parts();
        let got = decoded(&parts, "HTTP/1.1 204 No Content\r\n\r\n", 0);
        assert_eq!(got[0], ("x-request-id".into(), "rid".into()));
        assert_eq!(got[1].0, "date");
        assert!(got[1].1.ends_with(" GMT"), "{got:?}");
    }
}
