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

/// One field as a literal (§6.2.2, §6.2.3); never-indexed when its value is sensitive.
pub fn encode_field(name: &HeaderName, value: &HeaderValue, dst: &mut BytesMut) {
    literal(name.as_str().as_bytes(), value.as_bytes(), value.is_sensitive(), dst);
}

/// One field as a literal without indexing, its name already lower-case
/// (an HTTP/1.1 upstream's field line, say, once lowered).
pub fn encode_literal(name: &[u8], value: &[u8], dst: &mut BytesMut) {
    literal(name, value, false, dst);
}

fn literal(name: &[u8], value: &[u8], sensitive: bool, dst: &mut BytesMut) {
    let flags = if sensitive { 0x10 } else { 0x00 };
    match static_name(name) {
        Some(index) => encode_int(index, 4, flags, dst),
        None => {
            dst.extend_from_slice(&[flags]);
            encode_int(name.len(), 7, 0, dst);
            dst.extend_from_slice(name);
        }
    }
    encode_int(value.len(), 7, 0, dst);
    dst.extend_from_slice(value);
}

/// The static table's index of a field name (RFC 7541 Appendix A).
fn static_name(name: &[u8]) -> Option<usize> {
    Some(match name {
        b"accept-charset" => 15,
        b"accept-encoding" => 16,
        b"accept-language" => 17,
        b"accept-ranges" => 18,
        b"accept" => 19,
        b"access-control-allow-origin" => 20,
        b"age" => 21,
        b"allow" => 22,
        b"authorization" => 23,
        b"cache-control" => 24,
        b"content-disposition" => 25,
        b"content-encoding" => 26,
        b"content-language" => 27,
        b"content-length" => 28,
        b"content-location" => 29,
        b"content-range" => 30,
        b"content-type" => 31,
        b"cookie" => 32,
        b"date" => 33,
        b"etag" => 34,
        b"expect" => 35,
        b"expires" => 36,
        b"from" => 37,
        b"host" => 38,
        b"if-match" => 39,
        b"if-modified-since" => 40,
        b"if-none-match" => 41,
        b"if-range" => 42,
        b"if-unmodified-since" => 43,
        b"last-modified" => 44,
        b"link" => 45,
        b"location" => 46,
        b"max-forwards" => 47,
        b"proxy-authenticate" => 48,
        b"proxy-authorization" => 49,
        b"range" => 50,
        b"referer" => 51,
        b"refresh" => 52,
        b"retry-after" => 53,
        b"server" => 54,
        b"set-cookie" => 55,
        b"strict-transport-security" => 56,
        b"transfer-encoding" => 57,
        b"user-agent" => 58,
        b"vary" => 59,
        b"via" => 60,
        b"www-authenticate" => 61,
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
