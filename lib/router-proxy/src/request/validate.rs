//! Stage 0, validate: the request-framing and target rules the gateway holds
//! every request to before routing, on every listener, so that what it
//! forwards is unambiguous to any server behind it. The parsers already
//! refuse what cannot be parsed at all (the HTTP/1.1 server's `server::h1::head`:
//! bad tokens in names, NUL, obs-fold, over-long heads, a `Content-Length`
//! that is not digits or several that differ, a `Transfer-Encoding` that does
//! not end in `chunked`; h2 for HTTP/2); these are the rules a proxy must add
//! on top.
//!
//! A head with both `Content-Length` and `Transfer-Encoding` arrives marked
//! [`super::AmbiguousFraming`] by the HTTP/1.1 server, its body unread, and
//! `Gateway::handle` answers it 400 `ambiguous-framing` before these rules.
//!
//! | rule | RFC | answer |
//! |---|---|---|
//! | `Transfer-Encoding` other than exactly `chunked` (the only coding the gateway decodes) | RFC 9112 §6.1 | 501 `unsupported-transfer-encoding` |
//! | more than one `Host` line | RFC 9112 §3.2: a server MUST answer 400 | 400 `duplicate-host` |
//! | an absolute-form target with a scheme other than http or https | RFC 9112 §3.2.2 | 400 `unsupported-scheme` |
//! | userinfo (`user@`) in the authority (absolute-form, HTTP/2 `:authority`) | RFC 9110 §4.2.4: deprecated, a phishing vector | 400 `invalid-authority` |
//! | a path or query byte outside RFC 3986 (`pchar`, `/`, `?`, `%XX`) | RFC 3986 §3.3, §3.4 | 400 `invalid-request-target` |
//!
//! And one rewrite: when an absolute-form target and `Host` disagree, the
//! target's authority wins and `Host` is replaced with it (RFC 9112 §3.2.2),
//! so routing and the upstream see the same host.

use http::{HeaderValue, Method, Request, header};

use crate::error::ProxyError;

/// Checks `req` against the rules above, rewriting `Host` where the target's authority wins.
pub(super) fn check<B>(req: &mut Request<B>) -> Result<(), ProxyError> {
    let headers = req.headers();
    // One pass over the fields (a handful, compared as integers) instead of two hashed lookups.
    let (mut hosts, mut coded) = (0, false);
    for name in headers.iter().map(|(name, _)| name) {
        hosts += usize::from(name == header::HOST);
        coded |= name == header::TRANSFER_ENCODING;
    }
    if hosts > 1 {
        return Err(ProxyError::DuplicateHost);
    }
    if coded {
        let mut codings = headers.get_all(header::TRANSFER_ENCODING).iter().flat_map(|v| v.as_bytes().split(|&b| b == b','));
        if let Some(first) = codings.next()
            && (!first.trim_ascii().eq_ignore_ascii_case(b"chunked") || codings.next().is_some())
        {
            return Err(ProxyError::UnsupportedTransferEncoding);
        }
    }
    if let Some(scheme) = req.uri().scheme_str()
        && !scheme.eq_ignore_ascii_case("http")
        && !scheme.eq_ignore_ascii_case("https")
    {
        return Err(ProxyError::UnsupportedScheme);
    }
    if let Some(authority) = req.uri().authority() {
        if authority.as_str().contains('@') {
            return Err(ProxyError::InvalidAuthority);
        }
        // CONNECT's target is the authority itself; other requests carry it in absolute form (or :authority).
        if req.method() != Method::CONNECT && headers.get(header::HOST).is_some_and(|h| h.as_bytes() != authority.as_str().as_bytes()) {
            let rewritten = HeaderValue::from_str(authority.as_str()).map_err(|_| ProxyError::InvalidAuthority)?;
            req.headers_mut().insert(header::HOST, rewritten);
        }
    }
    if req.method() != Method::CONNECT
        && let Some(pq) = req.uri().path_and_query()
        && !is_rfc3986_target(pq.as_str().as_bytes())
    {
        return Err(ProxyError::InvalidTarget);
    }
    Ok(())
}

/// Path and query made only of RFC 3986 characters: unreserved, sub-delims,
/// `:` `@` `/` `?`, and `%` followed by two hex digits. `*` alone (OPTIONS) passes.
fn is_rfc3986_target(target: &[u8]) -> bool {
    let mut i = 0;
    while i < target.len() {
        match target[i] {
            b'%' => {
                if !(target.get(i + 1).is_some_and(u8::is_ascii_hexdigit) && target.get(i + 2).is_some_and(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
                continue;
            }
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {}
            b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
            b':' | b'@' | b'/' | b'?' => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(target: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().uri(target);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    fn verdict(target: &str, headers: &[(&str, &str)]) -> Result<(), ProxyError> {
        check(&mut req(target, headers))
    }

    #[test]
    fn framing_rules() {
        use ProxyError::*;
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<(), ProxyError>);
        let cases: &[Case] = &[
            (&[("content-length", "5")], Ok(())),
            (&[("transfer-encoding", "chunked")], Ok(())),
            (&[("transfer-encoding", "Chunked")], Ok(())),
            (&[("transfer-encoding", "gzip, chunked")], Err(UnsupportedTransferEncoding)),
            (&[("transfer-encoding", "chunked, gzip")], Err(UnsupportedTransferEncoding)),
            (&[("transfer-encoding", "identity")], Err(UnsupportedTransferEncoding)),
            (&[("transfer-encoding", "chunked"), ("transfer-encoding", "chunked")], Err(UnsupportedTransferEncoding)),
            (&[("host", "a"), ("host", "a")], Err(DuplicateHost)),
            (&[("host", "a"), ("host", "b")], Err(DuplicateHost)),
        ];
        for (headers, want) in cases {
            assert_eq!(verdict("/", headers), *want, "{headers:?}");
        }
    }

    #[test]
    fn target_rules() {
        use ProxyError::*;
        let cases: &[(&str, Result<(), ProxyError>)] = &[
            ("/", Ok(())),
            ("/a/b;c=d?e=f&g=h%20i:j@k!$'()*+,~", Ok(())),
            ("*", Ok(())),
            ("http://example.com/", Ok(())),
            ("HTTPS://example.com/", Ok(())),
            ("ftp://example.com/", Err(UnsupportedScheme)),
            ("http://user:pw@example.com/", Err(InvalidAuthority)),
            ("/a%2", Err(InvalidTarget)),
            ("/a%zz", Err(InvalidTarget)),
            ("/a\"b", Err(InvalidTarget)),
            ("/a{b}", Err(InvalidTarget)),
            ("/a|b", Err(InvalidTarget)),
            ("/a^b", Err(InvalidTarget)),
            ("/a`b", Err(InvalidTarget)),
        ];
        for (target, want) in cases {
            // Some of these the http crate's parser refuses already (the servers then refuse the request themselves);
            // the rest must be refused here.
            if target.parse::<http::Uri>().is_err() {
                assert_eq!(*want, Err(InvalidTarget), "{target} is refused by the parser");
                continue;
            }
            assert_eq!(verdict(target, &[]), *want, "{target}");
        }
    }

    #[test]
    fn the_absolute_form_authority_replaces_a_disagreeing_host() {
        let mut r = req("http://api.example.com/x", &[("host", "evil.example.com")]);
        check(&mut r).unwrap();
        assert_eq!(r.headers()[header::HOST], "api.example.com");
        let mut same = req("http://api.example.com:8080/x", &[("host", "api.example.com:8080")]);
        check(&mut same).unwrap();
        assert_eq!(same.headers()[header::HOST], "api.example.com:8080");
        let mut connect = Request::builder().method(Method::CONNECT).uri("db.internal:5432").header("host", "other").body(()).unwrap();
        check(&mut connect).unwrap();
        assert_eq!(connect.headers()[header::HOST], "other", "CONNECT names its tunnel's target, Host is left alone");
    }
}
