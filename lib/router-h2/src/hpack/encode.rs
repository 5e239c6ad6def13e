//! Encoding a response's header block: every field a literal without
//! indexing (never-indexed when the value is marked sensitive), its name
//! from the static table when the table has it, no Huffman coding. RFC 7541
//! lets an encoder choose so (§6.2.2, §5.2); it keeps no state, so it cannot
//! fall out of step with the client, and costs little more than a copy.

use bytes::BytesMut;
use http::{HeaderName, HeaderValue, StatusCode};

use super::encode_int;

/// `:status`, indexed when the static table has the code (§6.1).
pub fn encode_status(status: StatusCode, dst: &mut BytesMut) {
    let index = match status.as_u16() {
        200 => 8,
        204 => 9,
        206 => 10,
        304 => 11,
        400 => 12,
        404 => 13,
        500 => 14,
        _ => {
            // Literal without indexing, name `:status` (index 8).
            dst.extend_from_slice(&[0x08, 3]);
            dst.extend_from_slice(status.as_str().as_bytes());
            return;
        }
    };
    dst.extend_from_slice(&[0x80 | index]);
}

/// One field as a literal (§6.2.2, §6.2.3).
pub fn encode_field(name: &HeaderName, value: &HeaderValue, dst: &mut BytesMut) {
    let flags = if value.is_sensitive() { 0x10 } else { 0x00 };
    match static_name(name) {
        Some(index) => encode_int(index, 4, flags, dst),
        None => {
            dst.extend_from_slice(&[flags]);
            encode_int(name.as_str().len(), 7, 0, dst);
            dst.extend_from_slice(name.as_str().as_bytes());
        }
    }
    encode_int(value.len(), 7, 0, dst);
    dst.extend_from_slice(value.as_bytes());
}

/// The static table's index of a field name (RFC 7541 Appendix A).
fn static_name(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "accept-charset" => 15,
        "accept-encoding" => 16,
        "accept-language" => 17,
        "accept-ranges" => 18,
        "accept" => 19,
        "access-control-allow-origin" => 20,
        "age" => 21,
        "allow" => 22,
        "authorization" => 23,
        "cache-control" => 24,
        "content-disposition" => 25,
        "content-encoding" => 26,
        "content-language" => 27,
        "content-length" => 28,
        "content-location" => 29,
        "content-range" => 30,
        "content-type" => 31,
        "cookie" => 32,
        "date" => 33,
        "etag" => 34,
        "expect" => 35,
        "expires" => 36,
        "from" => 37,
        "host" => 38,
        "if-match" => 39,
        "if-modified-since" => 40,
        "if-none-match" => 41,
        "if-range" => 42,
        "if-unmodified-since" => 43,
        "last-modified" => 44,
        "link" => 45,
        "location" => 46,
        "max-forwards" => 47,
        "proxy-authenticate" => 48,
        "proxy-authorization" => 49,
        "range" => 50,
        "referer" => 51,
        "refresh" => 52,
        "retry-after" => 53,
        "server" => 54,
        "set-cookie" => 55,
        "strict-transport-security" => 56,
        "transfer-encoding" => 57,
        "user-agent" => 58,
        "vary" => 59,
        "via" => 60,
        "www-authenticate" => 61,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use http::header;

    use super::*;
    use crate::hpack::{Decoder, Name};

    fn decoded(block: &[u8]) -> Vec<(String, Vec<u8>, bool)> {
        let mut out = Vec::new();
        Decoder::new(4096)
            .decode(block, |e, sensitive| {
                let name = match &e.name {
                    Name::Field(n) => n.to_string(),
                    other => format!("{other:?}"),
                };
                out.push((name, e.value.as_ref().unwrap().as_bytes().to_vec(), sensitive));
            })
            .unwrap();
        out
    }

    #[test]
    fn statuses_in_the_static_table_are_one_octet_others_a_literal() {
        let mut b = BytesMut::new();
        encode_status(StatusCode::OK, &mut b);
        assert_eq!(&b[..], [0x88]);
        b.clear();
        encode_status(StatusCode::FOUND, &mut b);
        assert_eq!(&b[..], b"\x08\x03302");
        assert_eq!(decoded(&b), vec![("Pseudo(Status)".into(), b"302".to_vec(), false)]);
    }

    #[test]
    fn fields_are_literals_named_from_the_static_table_when_it_has_them() {
        let mut b = BytesMut::new();
        encode_field(&header::CONTENT_TYPE, &HeaderValue::from_static("text/plain"), &mut b);
        assert_eq!(&b[..], b"\x0f\x10\x0atext/plain", "content-type is index 31: 15 + 16");
        let mut id = HeaderValue::from_static("abc");
        id.set_sensitive(true);
        encode_field(&HeaderName::from_static("x-request-id"), &id, &mut b);
        let long = "v".repeat(300);
        encode_field(&header::SERVER, &HeaderValue::from_str(&long).unwrap(), &mut b);
        assert_eq!(
            decoded(&b),
            vec![
                ("content-type".into(), b"text/plain".to_vec(), false),
                ("x-request-id".into(), b"abc".to_vec(), true),
                ("server".into(), long.into_bytes(), false),
            ]
        );
    }
}
