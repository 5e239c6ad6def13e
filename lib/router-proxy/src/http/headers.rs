//! Hop-by-hop headers, the client's verified identity and the route's header
//! modifiers (the forwarding fields are [`super::forwarding`]'s).

use std::{net::SocketAddr, sync::Arc};

use http::{HeaderMap, HeaderName, HeaderValue, header};
use router_api::v1alpha1::HeaderModifier;

use router_tls::ClientIdentity;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// plus the de-facto ones proxies also drop.
/// Keep-Alive: HTTP/1.0's parameters for a persistent connection, a hop-by-hop field.
pub const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    KEEP_ALIVE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// Where the hop-by-hop fields any message may carry are in [`HOP_BY_HOP`].
pub(crate) const AT_CONNECTION: usize = 0;
pub(crate) const AT_KEEP_ALIVE: usize = 1;
pub(crate) const AT_TRANSFER_ENCODING: usize = 6;

pub static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// A gRPC call's status code, in trailers or a trailers-only response's head.
pub static GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// Removes hop-by-hop headers, including those the Connection header names.
/// `TE: trailers` survives: gRPC needs it end to end.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // One pass over the names finds which are present (most messages carry at most
    // Connection); only those are removed, each removal being a hashed lookup.
    let mut present = [false; 8];
    let mut proxy_connection = false;
    for name in headers.keys() {
        match hop_by_hop_index(name.as_str().as_bytes()) {
            Some(i) if i < HOP_BY_HOP.len() => present[i] = true,
            Some(_) => proxy_connection = true,
            None => {}
        }
    }
    if !proxy_connection && !present.contains(&true) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .filter(|n| !HOP_BY_HOP.contains(n))
        .collect();
    for name in named {
        headers.remove(name);
    }
    let te_trailers = headers
        .get(header::TE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers")));
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    if proxy_connection {
        headers.remove(&PROXY_CONNECTION);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Where the field named `name` (in any case) is in [`HOP_BY_HOP`] (its
/// length for Proxy-Connection): one match on the name's length, then one
/// comparison, where comparing it with each of nine names cost 700
/// instructions a request (callgrind). Takes bytes, so the upstream's
/// response fields are sorted without making names of them.
pub(crate) fn hop_by_hop_index(name: &[u8]) -> Option<usize> {
    // Exactly first: a map's names are lower case already.
    let is = |s: &str| name == s.as_bytes() || name.eq_ignore_ascii_case(s.as_bytes());
    Some(match name.len() {
        10 if is("connection") => 0,
        10 if is("keep-alive") => 1,
        18 if is("proxy-authenticate") => 2,
        19 if is("proxy-authorization") => 3,
        2 if is("te") => 4,
        7 if is("trailer") => 5,
        17 if is("transfer-encoding") => 6,
        7 if is("upgrade") => 7,
        16 if is("proxy-connection") => 8,
        _ => return None,
    })
}

pub static X_CLIENT_CERT_SUBJECT: HeaderName = HeaderName::from_static("x-datum-client-cert-subject");
pub static X_CLIENT_CERT_SANS: HeaderName = HeaderName::from_static("x-datum-client-cert-sans");

/// Which listener a connection came in on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// The internal listener (cleartext or HTTPS): routes without ingressRefs.
    Internal,
    /// A VPCIngress port; over TLS, the listener its SNI chose.
    Ingress { port: u16, tls_listener: Option<Arc<str>> },
}

/// What one client connection tells every request on it, computed once per connection.
#[derive(Debug, Clone)]
pub struct ClientInfo {
    pub addr: SocketAddr,
    pub(super) ip: HeaderValue,
    /// The RFC 7239 node: the IP, quoted and bracketed for IPv6.
    pub(super) node: HeaderValue,
    /// `http` or `https`: what X-Forwarded-Proto says.
    pub scheme: &'static str,
    pub entry: Entry,
    /// The TLS server name the client asked for.
    pub sni: Option<String>,
    /// The verified client certificate's subject and SANs, as header values.
    identity: Option<(HeaderValue, Option<HeaderValue>)>,
}

impl ClientInfo {
    /// A cleartext connection on the internal listener.
    pub fn new(addr: SocketAddr) -> Self {
        let ip = addr.ip().to_string();
        let node = match addr.ip() {
            std::net::IpAddr::V4(_) => ip.clone(),
            std::net::IpAddr::V6(_) => format!("\"[{ip}]\""),
        };
        Self {
            addr,
            ip: HeaderValue::from_str(&ip).expect("an IP is a valid header value"),
            node: HeaderValue::from_str(&node).expect("a node is a valid header value"),
            scheme: "http",
            entry: Entry::Internal,
            sni: None,
            identity: None,
        }
    }

    pub fn with_entry(mut self, entry: Entry) -> Self {
        self.entry = entry;
        self
    }

    /// Marks the connection as TLS, with its server name and the client's verified identity if it presented a certificate.
    pub fn with_tls(mut self, sni: Option<String>, identity: Option<&ClientIdentity>) -> Self {
        self.scheme = "https";
        self.sni = sni;
        self.identity = identity.and_then(|id| {
            let subject = HeaderValue::from_str(&id.subject).ok()?;
            let sans = (!id.sans.is_empty()).then(|| HeaderValue::from_str(&id.sans.join(",")).ok()).flatten();
            Some((subject, sans))
        });
        self
    }
}

/// Replaces whatever the client sent as its certificate identity with what the
/// TLS handshake verified (nothing, on connections without a client certificate):
/// routes and upstreams can trust these headers.
pub fn set_client_identity(headers: &mut HeaderMap, client: &ClientInfo) {
    // A scan of the few names is cheaper than two hashed removals of what is almost never there.
    if headers.keys().any(|k| k == X_CLIENT_CERT_SUBJECT || k == X_CLIENT_CERT_SANS) {
        headers.remove(&X_CLIENT_CERT_SUBJECT);
        headers.remove(&X_CLIENT_CERT_SANS);
    }
    if let Some((subject, sans)) = &client.identity {
        headers.insert(X_CLIENT_CERT_SUBJECT.clone(), subject.clone());
        if let Some(sans) = sans {
            headers.insert(X_CLIENT_CERT_SANS.clone(), sans.clone());
        }
    }
}

/// Applies a modifier in the order remove, set, add. Invalid names or values
/// (rejected by the schema, but files can be edited by hand) are skipped.
pub fn apply_modifier(headers: &mut HeaderMap, m: &HeaderModifier) {
    for name in &m.remove {
        if let Ok(n) = HeaderName::from_bytes(name.as_bytes()) {
            headers.remove(n);
        }
    }
    for (name, value) in &m.set {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.insert(n, v);
        }
    }
    for (name, value) in &m.add {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(value)) {
            headers.append(n, v);
        }
    }
}

/// Whether a message is gRPC (content-type application/grpc, +proto and the like).
/// Whether the client waits for `100 Continue` before it sends its body (RFC 9110 §10.1.1).
pub fn expects_continue(headers: &HeaderMap) -> bool {
    headers.get(header::EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"))
}

pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(is_grpc_content_type)
}

/// Whether a Content-Type value is gRPC's (application/grpc, +proto and the like).
pub fn is_grpc_content_type(value: &HeaderValue) -> bool {
    value.as_bytes().starts_with(b"application/grpc")
}

/// A gRPC status code, from trailers or a trailers-only response's head.
pub fn grpc_status(headers: &HeaderMap) -> Option<u8> {
    headers.get(&GRPC_STATUS).and_then(grpc_code)
}

/// A `grpc-status` value's code.
pub fn grpc_code(value: &HeaderValue) -> Option<u8> {
    value.to_str().ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn hop_by_hop_and_connection_named_headers_go_te_trailers_stays() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert(header::TE, "trailers".parse().unwrap());
        h.insert(header::TRANSFER_ENCODING, "chunked".parse().unwrap());
        h.insert("x-keep", "1".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(names, ["te", "x-keep"]);
        assert_eq!(h[header::TE], "trailers");
    }

    #[test]
    fn the_hop_by_hop_index_follows_the_list() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert_eq!(hop_by_hop_index(name.as_str().as_bytes()), Some(i), "{name}");
            assert_eq!(hop_by_hop_index(name.as_str().to_uppercase().as_bytes()), Some(i), "{name}, any case");
        }
        assert_eq!(hop_by_hop_index(b"Proxy-Connection"), Some(HOP_BY_HOP.len()));
        assert_eq!(
            [&HOP_BY_HOP[AT_CONNECTION], &HOP_BY_HOP[AT_KEEP_ALIVE], &HOP_BY_HOP[AT_TRANSFER_ENCODING]],
            [&header::CONNECTION, &KEEP_ALIVE, &header::TRANSFER_ENCODING]
        );
        assert_eq!(hop_by_hop_index(b"host"), None);
        assert_eq!(hop_by_hop_index(b"connectio\xc3"), None);
    }

    #[test]
    fn client_identity_headers_are_the_handshakes_never_the_clients() {
        let mut h = HeaderMap::new();
        h.insert(X_CLIENT_CERT_SUBJECT.clone(), "CN=admin".parse().unwrap());
        h.insert(X_CLIENT_CERT_SANS.clone(), "DNS:forged".parse().unwrap());
        let plain = ClientInfo::new("10.0.0.1:5555".parse().unwrap());
        set_client_identity(&mut h, &plain);
        assert!(h.get(&X_CLIENT_CERT_SUBJECT).is_none() && h.get(&X_CLIENT_CERT_SANS).is_none());
        let id =
            ClientIdentity { subject: "CN=billing".into(), sans: vec!["DNS:billing.internal".into(), "URI:spiffe://x/billing".into()] };
        let verified = plain.with_tls(None, Some(&id));
        h.insert(X_CLIENT_CERT_SUBJECT.clone(), "CN=admin".parse().unwrap());
        set_client_identity(&mut h, &verified);
        assert_eq!(h[&X_CLIENT_CERT_SUBJECT], "CN=billing");
        assert_eq!(h[&X_CLIENT_CERT_SANS], "DNS:billing.internal,URI:spiffe://x/billing");
        assert_eq!(verified.scheme, "https");
    }

    #[test]
    fn modifier_removes_then_sets_then_adds() {
        let mut h = HeaderMap::new();
        h.insert("server", "x".parse().unwrap());
        h.insert("x-a", "old".parse().unwrap());
        apply_modifier(
            &mut h,
            &HeaderModifier {
                set: BTreeMap::from([("x-a".into(), "new".into())]),
                add: BTreeMap::from([("x-a".into(), "more".into())]),
                remove: vec!["server".into()],
            },
        );
        assert!(h.get("server").is_none());
        let vals: Vec<_> = h.get_all("x-a").iter().collect();
        assert_eq!(vals, ["new", "more"]);
    }
}
