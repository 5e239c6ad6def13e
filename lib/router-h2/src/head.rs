//! A request's head and trailers from decoded fields, held to the rules of
//! RFC 9113 §8.2 and §8.3: a request that breaks one is malformed and its
//! stream is reset with PROTOCOL_ERROR, never forwarded.

use http::{
    HeaderMap, HeaderValue, Method, Request, Version, header,
    request::Parts,
    uri::{self, Authority, PathAndQuery, Scheme},
};

use crate::hpack::{Entry, Name, Pseudo};

/// Why a head is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Breaks a rule of §8: the stream is reset with PROTOCOL_ERROR.
    Malformed(&'static str),
    /// Larger than SETTINGS_MAX_HEADER_LIST_SIZE: answered 431.
    TooLarge,
}

/// Fields of one header block, collected as the decoder hands them over.
#[derive(Debug)]
pub struct FieldSet {
    method: Option<HeaderValue>,
    scheme: Option<HeaderValue>,
    authority: Option<HeaderValue>,
    path: Option<HeaderValue>,
    headers: HeaderMap,
    /// The header list size so far (§6.5.2), and its bound.
    size: usize,
    limit: usize,
    refusal: Option<Refusal>,
}

impl FieldSet {
    pub fn new(limit: usize) -> Self {
        Self { method: None, scheme: None, authority: None, path: None, headers: HeaderMap::new(), size: 0, limit, refusal: None }
    }

    fn refuse(&mut self, why: &'static str) {
        if self.refusal.is_none() {
            self.refusal = Some(Refusal::Malformed(why));
        }
    }

    /// Takes one field. After a refusal the rest only count toward the size.
    pub fn add(&mut self, entry: &Entry, sensitive: bool) {
        self.size += entry.size();
        if self.size > self.limit {
            self.refusal = Some(Refusal::TooLarge);
        }
        if self.refusal.is_some() {
            return;
        }
        let Some(value) = &entry.value else { return self.refuse("field value with a forbidden character") };
        match &entry.name {
            Name::Malformed => self.refuse("field name that is not lower-case or not a token"),
            Name::Pseudo(p) => {
                if !self.headers.is_empty() {
                    return self.refuse("pseudo-header after a regular field");
                }
                let slot = match p {
                    Pseudo::Method => &mut self.method,
                    Pseudo::Scheme => &mut self.scheme,
                    Pseudo::Authority => &mut self.authority,
                    Pseudo::Path => &mut self.path,
                    // No SETTINGS_ENABLE_CONNECT_PROTOCOL is announced, so no extended CONNECT (RFC 8441).
                    Pseudo::Status | Pseudo::Protocol => return self.refuse("pseudo-header a request may not carry"),
                };
                if slot.replace(value.clone()).is_some() {
                    self.refuse("pseudo-header repeated");
                }
            }
            Name::Field(name) => {
                if is_connection_specific(name.as_str().as_bytes()) || (name == header::TE && value != "trailers") {
                    return self.refuse("connection-specific field");
                }
                let mut value = value.clone();
                value.set_sensitive(sensitive);
                // Cookies may come split (§8.2.3); HTTP/1.1 upstreams need them in one field.
                if name == header::COOKIE
                    && let Some(first) = self.headers.get_mut(header::COOKIE)
                {
                    let mut joined = Vec::with_capacity(first.len() + 2 + value.len());
                    joined.extend_from_slice(first.as_bytes());
                    joined.extend_from_slice(b"; ");
                    joined.extend_from_slice(value.as_bytes());
                    if let Ok(v) = HeaderValue::from_bytes(&joined) {
                        *first = v;
                    }
                    return;
                }
                self.headers.append(name.clone(), value);
            }
        }
    }

    /// The request head (§8.3.1), for an HTTP/2 request.
    pub fn request(self) -> Result<Parts, Refusal> {
        if let Some(r) = self.refusal {
            return Err(r);
        }
        let Some(method) = self.method else { return Err(Refusal::Malformed(":method missing")) };
        let method = Method::from_bytes(method.as_bytes()).map_err(|_| Refusal::Malformed(":method not a token"))?;
        let mut uri = uri::Parts::default();
        if let Some(a) = &self.authority {
            uri.authority = Some(Authority::try_from(a.as_bytes()).map_err(|_| Refusal::Malformed(":authority not an authority"))?);
        }
        if method == Method::CONNECT {
            // §8.5: only :method and :authority.
            if self.scheme.is_some() || self.path.is_some() || uri.authority.is_none() {
                return Err(Refusal::Malformed("CONNECT with :scheme or :path, or without :authority"));
            }
        } else {
            let (Some(scheme), Some(path)) = (self.scheme, self.path) else { return Err(Refusal::Malformed(":scheme or :path missing")) };
            if path.is_empty() {
                return Err(Refusal::Malformed(":path empty"));
            }
            uri.scheme = Some(Scheme::try_from(scheme.as_bytes()).map_err(|_| Refusal::Malformed(":scheme not a scheme"))?);
            uri.path_and_query = Some(PathAndQuery::try_from(path.as_bytes()).map_err(|_| Refusal::Malformed(":path not a path"))?);
        }
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = method;
        parts.uri = http::Uri::from_parts(uri).map_err(|_| Refusal::Malformed("no valid URI"))?;
        parts.version = Version::HTTP_2;
        parts.headers = self.headers;
        Ok(parts)
    }

    /// Trailers (§8.1): fields only, no pseudo-header.
    pub fn trailers(self) -> Result<HeaderMap, Refusal> {
        if let Some(r) = self.refusal {
            return Err(r);
        }
        if self.method.is_some() || self.scheme.is_some() || self.authority.is_some() || self.path.is_some() {
            return Err(Refusal::Malformed("pseudo-header in trailers"));
        }
        Ok(self.headers)
    }
}

/// Fields HTTP/2 does not carry (§8.2.2), by lower-case name: a response must not send them either.
pub fn is_connection_specific(name: &[u8]) -> bool {
    matches!(name, b"connection" | b"transfer-encoding" | b"upgrade" | b"keep-alive" | b"proxy-connection")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(fields: &[(&str, &str)]) -> FieldSet {
        let mut s = FieldSet::new(16 * 1024);
        for (n, v) in fields {
            s.add(&Entry::new(n.as_bytes(), v.as_bytes()), false);
        }
        s
    }

    const GET: [(&str, &str); 4] = [(":method", "GET"), (":scheme", "https"), (":path", "/a?b=c"), (":authority", "x.example:8443")];

    #[test]
    fn a_well_formed_request_becomes_its_head() {
        let mut fields = GET.to_vec();
        fields.extend([("cookie", "a=1"), ("accept", "*/*"), ("cookie", "b=2"), ("te", "trailers")]);
        let parts = set(&fields).request().unwrap();
        assert_eq!(parts.method, Method::GET);
        assert_eq!(parts.uri, "https://x.example:8443/a?b=c");
        assert_eq!(parts.version, Version::HTTP_2);
        assert_eq!(parts.headers["cookie"], "a=1; b=2", "split cookies joined for HTTP/1.1 upstreams");
        assert_eq!(parts.headers.len(), 3);
        let connect = set(&[(":method", "CONNECT"), (":authority", "db.internal:5432")]).request().unwrap();
        assert_eq!((connect.method, connect.uri.authority().unwrap().as_str()), (Method::CONNECT, "db.internal:5432"));
    }

    #[test]
    fn malformed_requests_are_refused() {
        let with = |extra: (&'static str, &'static str)| {
            let mut f = GET.to_vec();
            f.push(extra);
            set(&f).request().unwrap_err()
        };
        for extra in
            [("connection", "keep-alive"), ("te", "gzip"), ("transfer-encoding", "chunked"), ("upgrade", "h2c"), ("keep-alive", "5")]
        {
            assert!(matches!(with(extra), Refusal::Malformed(_)), "{extra:?}");
        }
        assert!(matches!(with((":path", "/again")), Refusal::Malformed(_)), "late and repeated pseudo-header");
        assert!(matches!(with(("x-bad", " padded")), Refusal::Malformed(_)));
        assert!(matches!(with(("X-Upper", "v")), Refusal::Malformed(_)));
        for fields in [
            &[(":scheme", "http"), (":path", "/")][..],
            &[(":method", "GET"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "")],
            &[(":method", "CONNECT"), (":authority", "a:1"), (":path", "/")],
            &[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":status", "200")],
            &[(":method", "CONNECT"), (":protocol", "websocket"), (":scheme", "http"), (":path", "/"), (":authority", "a")],
        ] {
            assert!(matches!(set(fields).request(), Err(Refusal::Malformed(_))), "{fields:?}");
        }
    }

    #[test]
    fn a_header_list_over_the_limit_is_too_large_whatever_else_is_wrong() {
        let mut s = FieldSet::new(100);
        s.add(&Entry::new(b"X-Upper", b"v"), false);
        s.add(&Entry::new(b"x-big", &[b'v'; 80]), false);
        assert_eq!(s.request().unwrap_err(), Refusal::TooLarge);
    }

    #[test]
    fn trailers_carry_fields_only_and_keep_never_indexed_marks() {
        let mut s = FieldSet::new(1024);
        s.add(&Entry::new(b"grpc-status", b"0"), true);
        let t = s.trailers().unwrap();
        assert!(t["grpc-status"].is_sensitive());
        assert!(matches!(set(&[(":path", "/")]).trailers(), Err(Refusal::Malformed(_))));
    }
}
