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

/// The added fields not yet moved into a header map. Kept small (it moves
/// with the upstream request from stage to stage): what is new on every
/// request (this hop's Forwarded element, the request ids) is borrowed as
/// its parts and only made into header values when a map needs them, so the
/// HTTP/1.1 writer copies the parts straight into the head, without an
/// allocation or a validation pass each.
#[derive(Debug)]
pub struct AddedFields<'a> {
    /// X-Forwarded-For, -Proto, -Host, and Forwarded when the client sent
    /// one to append to; None once moved into a map.
    made: [Option<HeaderValue>; FORWARDING],
    /// This hop's Forwarded element, still to be written from its parts.
    forwarded_element: bool,
    /// X-Request-Id and traceparent, still to be written.
    ids: bool,
    client: &'a ClientInfo,
    host: &'a str,
    request_id: &'a HeaderValue,
    traceparent: &'a [u8; 55],
}

/// An added field's value as the writer sees it.
#[derive(Debug, Clone, Copy)]
pub enum FieldValue<'a> {
    Made(&'a HeaderValue),
    Bytes(&'a [u8]),
    /// `for=<node>;proto=<scheme>;host=<host>`, the host quoted unless it is a plain token.
    Forwarded {
        node: &'a HeaderValue,
        scheme: &'static str,
        host: &'a str,
    },
}

impl FieldValue<'_> {
    /// Appends the value's bytes to `out`.
    pub fn write(self, out: &mut Vec<u8>) {
        match self {
            Self::Made(value) => out.extend_from_slice(value.as_bytes()),
            Self::Bytes(bytes) => out.extend_from_slice(bytes),
            Self::Forwarded { node, scheme, host } => {
                let quoted = !is_token(host);
                for piece in [b"for=", node.as_bytes(), b";proto=", scheme.as_bytes(), b";host="] {
                    out.extend_from_slice(piece);
                }
                if quoted {
                    out.push(b'"');
                }
                out.extend_from_slice(host.as_bytes());
                if quoted {
                    out.push(b'"');
                }
            }
        }
    }

    fn len(self) -> usize {
        match self {
            Self::Made(value) => value.len(),
            Self::Bytes(bytes) => bytes.len(),
            Self::Forwarded { node, scheme, host } => {
                "for=;proto=;host=".len() + node.len() + scheme.len() + host.len() + if is_token(host) { 0 } else { 2 }
            }
        }
    }

    /// The value as a header value, for a map.
    fn to_value(self) -> Option<HeaderValue> {
        match self {
            Self::Made(value) => Some(value.clone()),
            // Sized exactly: a vector with spare room costs a second allocation on its way into `Bytes`.
            parts => {
                let mut bytes = Vec::with_capacity(parts.len());
                parts.write(&mut bytes);
                HeaderValue::from_maybe_shared(bytes::Bytes::from(bytes)).ok()
            }
        }
    }
}

impl<'a> AddedFields<'a> {
    /// The fields for a request from `client` to `host`, taking the client's
    /// copies out of `headers` (its X-Forwarded-For and Forwarded are appended to).
    pub fn new(
        headers: &mut HeaderMap,
        client: &'a ClientInfo,
        host: &'a str,
        request_id: &'a HeaderValue,
        traceparent: &'a [u8; 55],
    ) -> Self {
        // One pass over the names (a handful) is cheaper than six hashed lookups
        // of what is usually not there. Compared as names: a standard name is an
        // integer, and differs from these custom ones without a byte compared.
        let sent = headers.keys().any(|k| NAMES.contains(k));
        let mut sent_values: [Option<HeaderValue>; 6] = Default::default();
        if sent {
            for (name, value) in NAMES.iter().zip(&mut sent_values) {
                *value = headers.remove(name).filter(|v| !v.is_empty());
            }
        }
        let [prev_for, _, _, prev_forwarded, _, _] = sent_values;
        let x_forwarded_for = match prev_for {
            Some(prev) => joined(&prev, FieldValue::Made(&client.ip)),
            None => Some(client.ip.clone()),
        };
        // Usually the Host field says exactly the host: its value is shared, not copied.
        let same = headers.get(header::HOST).filter(|v| v.as_bytes() == host.as_bytes()).cloned();
        let x_forwarded_host = same.or_else(|| HeaderValue::from_str(host).ok());
        let mut fields = Self {
            made: [x_forwarded_for, Some(HeaderValue::from_static(client.scheme)), x_forwarded_host, None],
            forwarded_element: false,
            ids: true,
            client,
            host,
            request_id,
            traceparent,
        };
        match prev_forwarded {
            Some(prev) => fields.made[3] = joined(&prev, fields.element()),
            None => fields.forwarded_element = true,
        }
        fields
    }

    fn element(&self) -> FieldValue<'a> {
        FieldValue::Forwarded { node: &self.client.node, scheme: self.client.scheme, host: self.host }
    }

    /// Moves the four forwarding fields into `headers`, replacing any there.
    pub fn move_forwarding_into(&mut self, headers: &mut HeaderMap) {
        if self.forwarded_element {
            self.made[3] = self.element().to_value();
            self.forwarded_element = false;
        }
        for (name, value) in NAMES.iter().zip(&mut self.made) {
            if let Some(value) = value.take() {
                headers.insert(name.clone(), value);
            }
        }
    }

    /// Moves every field not yet moved into `headers`, replacing any there.
    pub fn move_all_into(&mut self, headers: &mut HeaderMap) {
        self.insert_copies(headers);
        self.made = Default::default();
        self.forwarded_element = false;
        self.ids = false;
    }

    /// The fields not moved into a map, in order: what an HTTP/1.1 writer writes after the map's.
    pub fn pending(&self) -> impl Iterator<Item = (&'static HeaderName, FieldValue<'_>)> {
        let made = NAMES.iter().zip(&self.made).filter_map(|(name, value)| Some((name, FieldValue::Made(value.as_ref()?))));
        // Forwarded is either made (appended to the client's) or still its parts, never both.
        let element = self.forwarded_element.then(|| (&NAMES[3], self.element()));
        let ids =
            self.ids.then_some([(X_REQUEST_ID, FieldValue::Made(self.request_id)), (TRACEPARENT, FieldValue::Bytes(self.traceparent))]);
        made.chain(element).chain(ids.into_iter().flatten())
    }

    /// Copies of the fields not moved into a map, inserted into `headers`
    /// (for a client that writes the map only).
    pub fn insert_copies(&self, headers: &mut HeaderMap) {
        for (name, value) in self.pending() {
            // The request ids are new on every request: not for HPACK to index.
            let unique = name == X_REQUEST_ID || name == TRACEPARENT;
            if let Some(value) = value.to_value().map(|v| if unique { unindexed(v) } else { v }) {
                headers.insert(name.clone(), value);
            }
        }
    }
}

/// A value new on every request, marked so that HPACK does not index it
/// (RFC 7541 §7.1.3): in an HTTP/2 connection's table it would only push out
/// entries that repeat, and hyper's encoder skips the table's search and
/// insertion for it. HTTP/1.1 writers ignore the mark.
pub fn unindexed(mut value: HeaderValue) -> HeaderValue {
    value.set_sensitive(true);
    value
}

/// Whether a host can stand unquoted in a Forwarded element.
fn is_token(host: &str) -> bool {
    host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// `prev, next` as one header value (a list header gaining an element).
fn joined(prev: &HeaderValue, next: FieldValue<'_>) -> Option<HeaderValue> {
    let mut v = Vec::with_capacity(prev.len() + 2 + next.len());
    v.extend_from_slice(prev.as_bytes());
    v.extend_from_slice(b", ");
    next.write(&mut v);
    HeaderValue::from_maybe_shared(bytes::Bytes::from(v)).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACEPARENT_VALUE: &[u8; 55] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    static REQUEST_ID: HeaderValue = HeaderValue::from_static("req-1");

    fn client(addr: &str) -> ClientInfo {
        ClientInfo::new(addr.parse().unwrap())
    }

    fn added<'a>(headers: &mut HeaderMap, client: &'a ClientInfo) -> AddedFields<'a> {
        AddedFields::new(headers, client, "api.example.com", &REQUEST_ID, TRACEPARENT_VALUE)
    }

    fn written(fields: &AddedFields) -> String {
        let mut lines = String::new();
        for (name, value) in fields.pending() {
            let mut written = Vec::new();
            value.write(&mut written);
            let made = value.to_value().unwrap();
            assert_eq!(written, made.as_bytes(), "{name}: the writer and the map see the same value");
            lines.push_str(&format!("{name}: {}\r\n", made.to_str().unwrap()));
        }
        lines
    }

    #[test]
    fn forwarded_fields_append_the_client_and_replace_what_the_client_may_not_say() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, "api.example.com".parse().unwrap());
        h.insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
        h.insert("x-forwarded-proto", "https".parse().unwrap());
        h.insert(X_REQUEST_ID.clone(), "forged".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        let client = client("10.0.0.1:5555");
        let fields = added(&mut h, &client);
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
        let client = client("[2001:db8::1]:5555");
        let mut fields = added(&mut h, &client);
        fields.move_all_into(&mut h);
        assert_eq!(
            h[header::FORWARDED],
            "for=10.0.0.1;proto=http;host=api.example.com, for=\"[2001:db8::1]\";proto=http;host=api.example.com"
        );
        assert_eq!(h["x-forwarded-for"], "2001:db8::1");
        assert!(h[X_REQUEST_ID].is_sensitive() && !h["x-forwarded-for"].is_sensitive());
        assert_eq!(written(&fields), "", "moved fields are not written again");
    }

    #[test]
    fn a_modifier_sees_the_forwarding_fields_but_not_the_request_ids() {
        let mut h = HeaderMap::new();
        let client = client("10.0.0.1:5555");
        let mut fields = added(&mut h, &client);
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
        assert!(copy[X_REQUEST_ID].is_sensitive() && copy[TRACEPARENT].is_sensitive(), "new on every request: not for HPACK to index");
        assert_eq!(written(&fields).lines().count(), 2, "copies leave the fields to write");
    }

    #[test]
    fn a_host_that_is_not_a_plain_token_is_quoted_in_forwarded() {
        let client = ClientInfo::new("10.0.0.1:5555".parse().unwrap());
        let fields = AddedFields::new(&mut HeaderMap::new(), &client, "api.example.com:8443", &REQUEST_ID, TRACEPARENT_VALUE);
        assert!(
            written(&fields).contains("\r\nforwarded: for=10.0.0.1;proto=http;host=\"api.example.com:8443\"\r\n"),
            "{}",
            written(&fields)
        );
    }
}
