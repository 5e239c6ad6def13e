//! The fields the gateway adds to every upstream request: X-Forwarded-For
//! (the client appended), X-Forwarded-Proto, X-Forwarded-Host, Forwarded
//! (RFC 7239, this hop appended), then X-Request-Id and the child
//! `traceparent`. The gateway is the edge: an incoming X-Forwarded-Proto or
//! -Host is not trusted, and the client's own copies of all six go.
//!
//! They are computed once per request and kept beside the request's header
//! map, not in it: the gateway's HTTP/1.1 client writes them straight after
//! the map's fields, so the usual request does not hash six names into a map
//! only for the writer to read them out again (about 1,900 of a request's
//! 35,000 instructions, by callgrind), and the map the server parsed keeps a
//! size its allocator serves from the thread cache. Where a map must hold
//! them they are moved into it: for hyper's clients (HTTP/2, TLS), and before
//! a route's request header modifier or mirror, which see every field.

use http::{HeaderMap, HeaderName, HeaderValue, header};

use super::headers::ClientInfo;

/// The four forwarding fields, then the two identifying the request, in the
/// order they are written (and inserted: a modifier sees the first four).
static NAMES: [HeaderName; 6] = [
    HeaderName::from_static("x-forwarded-for"),
    HeaderName::from_static("x-forwarded-proto"),
    HeaderName::from_static("x-forwarded-host"),
    header::FORWARDED,
    HeaderName::from_static("x-request-id"),
    HeaderName::from_static("traceparent"),
];
/// How many of [`NAMES`] a route's header modifier sees.
const FORWARDING: usize = 4;

pub static X_REQUEST_ID: &HeaderName = &NAMES[4];
pub static TRACEPARENT: &HeaderName = &NAMES[5];

/// The added fields not yet moved into a header map.
#[derive(Debug, Default)]
pub struct AddedFields {
    values: [Option<HeaderValue>; 6],
}

impl AddedFields {
    /// The fields for a request from `client` to `host`, taking the client's
    /// copies out of `headers` (its X-Forwarded-For and Forwarded are appended to).
    pub fn new(headers: &mut HeaderMap, client: &ClientInfo, host: &str, request_id: &HeaderValue, traceparent: &[u8; 55]) -> Self {
        // One pass over the names (a handful, standard ones compared as integers)
        // is cheaper than six hashed lookups of what is usually not there.
        let sent = headers.keys().any(|k| NAMES.iter().any(|n| n.as_str() == k.as_str()));
        let mut sent_values: [Option<HeaderValue>; 6] = Default::default();
        if sent {
            for (name, value) in NAMES.iter().zip(&mut sent_values) {
                *value = headers.remove(name).filter(|v| !v.is_empty());
            }
        }
        let [prev_for, _, _, prev_forwarded, _, _] = sent_values;
        let x_forwarded_for = match prev_for {
            Some(prev) => joined(prev.as_bytes(), client.ip.as_bytes()),
            None => Some(client.ip.clone()),
        };
        let forwarded = forwarded_element(client, host);
        let forwarded = match prev_forwarded {
            Some(prev) => joined(prev.as_bytes(), forwarded.as_bytes()),
            None => HeaderValue::from_maybe_shared(bytes::Bytes::from(forwarded)).ok(),
        };
        // Usually the Host field says exactly the host: its value is shared, not copied.
        let same = headers.get(header::HOST).filter(|v| v.as_bytes() == host.as_bytes()).cloned();
        let x_forwarded_host = same.or_else(|| HeaderValue::from_str(host).ok());
        Self {
            values: [
                x_forwarded_for,
                Some(HeaderValue::from_static(client.scheme)),
                x_forwarded_host,
                forwarded,
                Some(request_id.clone()),
                HeaderValue::from_bytes(traceparent).ok(),
            ],
        }
    }

    /// Moves the four forwarding fields into `headers`, replacing any there.
    pub fn move_forwarding_into(&mut self, headers: &mut HeaderMap) {
        self.move_into(headers, FORWARDING);
    }

    /// Moves every field not yet moved into `headers`, replacing any there.
    pub fn move_all_into(&mut self, headers: &mut HeaderMap) {
        self.move_into(headers, NAMES.len());
    }

    fn move_into(&mut self, headers: &mut HeaderMap, upto: usize) {
        for (name, value) in NAMES.iter().zip(&mut self.values).take(upto) {
            if let Some(value) = value.take() {
                headers.insert(name.clone(), value);
            }
        }
    }

    /// The fields not moved into a map, in order: what an HTTP/1.1 writer writes after the map's.
    pub fn pending(&self) -> impl Iterator<Item = (&'static HeaderName, &HeaderValue)> {
        NAMES.iter().zip(&self.values).filter_map(|(name, value)| Some((name, value.as_ref()?)))
    }

    /// Copies of the fields not moved into a map, inserted into `headers`
    /// (for a client that writes the map only).
    pub fn insert_copies(&self, headers: &mut HeaderMap) {
        for (name, value) in self.pending() {
            headers.insert(name.clone(), value.clone());
        }
    }
}

/// This hop's Forwarded element: `for=<node>;proto=<scheme>;host=<host>`,
/// the host quoted unless it is a plain token.
fn forwarded_element(client: &ClientInfo, host: &str) -> String {
    let token = host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    // Sized exactly: a string with spare room costs a second allocation on its way into `Bytes`.
    let len = "for=;proto=;host=".len() + client.node.len() + client.scheme.len() + host.len() + if token { 0 } else { 2 };
    let mut element = String::with_capacity(len);
    element.push_str("for=");
    element.push_str(&client.node);
    element.push_str(";proto=");
    element.push_str(client.scheme);
    element.push_str(";host=");
    if token {
        element.push_str(host);
    } else {
        element.push('"');
        element.push_str(host);
        element.push('"');
    }
    element
}

/// `prev, next` as one header value (a list header gaining an element).
fn joined(prev: &[u8], next: &[u8]) -> Option<HeaderValue> {
    let mut v = Vec::with_capacity(prev.len() + 2 + next.len());
    v.extend_from_slice(prev);
    v.extend_from_slice(b", ");
    v.extend_from_slice(next);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT_VALUE: &[u8; 55] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    fn added(headers: &mut HeaderMap, client: &str) -> AddedFields {
        let client = ClientInfo::new(client.parse().unwrap());
        AddedFields::new(headers, &client, "api.example.com", &HeaderValue::from_static("req-1"), TRACEPARENT_VALUE)
    }

    fn written(fields: &AddedFields) -> String {
        fields.pending().map(|(name, value)| format!("{name}: {}\r\n", value.to_str().unwrap())).collect()
    }

    #[test]
    fn forwarded_fields_append_the_client_and_replace_what_the_client_may_not_say() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "api.example.com".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert(X_REQUEST_ID.clone(), "forged".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        let fields = added(&mut h, "10.0.0.1:5555");
        let mut names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["host", "x-keep"], "the client's copies are out of the map");
        assert_eq!(
            written(&fields),
            "x-forwarded-for: 203.0.113.9, 10.0.0.1\r\n\
             x-forwarded-proto: http\r\n\
             x-forwarded-host: api.example.com\r\n\
             forwarded: for=10.0.0.1;proto=http;host=api.example.com\r\n\
             x-request-id: req-1\r\n\
             traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\n"
        );
    }

    #[test]
    fn forwarded_appends_this_hop_with_ipv6_nodes_quoted() {
        let mut h = HeaderMap::new();
        h.insert(header::FORWARDED, "for=10.0.0.1;proto=http;host=api.example.com".parse().unwrap());
        let mut fields = added(&mut h, "[2001:db8::1]:5555");
        fields.move_all_into(&mut h);
        assert_eq!(
            h[header::FORWARDED],
            "for=10.0.0.1;proto=http;host=api.example.com, for=\"[2001:db8::1]\";proto=http;host=api.example.com"
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert_eq!(written(&fields), "", "moved fields are not written again");
    }

    #[test]
    fn a_modifier_sees_the_forwarding_fields_but_not_the_request_ids() {
        let mut h = HeaderMap::new();
        let mut fields = added(&mut h, "10.0.0.1:5555");
        fields.move_forwarding_into(&mut h);
        assert_eq!(h.len(), 4);
        assert_eq!(h["x-forwarded-host"], "api.example.com");
        assert_eq!(
            written(&fields),
            format!("x-request-id: req-1\r\ntraceparent: {}\r\n", std::str::from_utf8(TRACEPARENT_VALUE).unwrap())
        );
        let mut copy = HeaderMap::new();
        fields.insert_copies(&mut copy);
        assert_eq!(copy[X_REQUEST_ID], "req-1");
        assert_eq!(written(&fields).lines().count(), 2, "copies leave the fields to write");
    }
}
