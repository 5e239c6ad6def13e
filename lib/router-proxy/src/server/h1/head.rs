//! A client's HTTP/1.x request head, from bytes: the request line and fields
//! (parsed with `httparse` in place, header values kept as slices of the bytes
//! read), how the body is framed (RFC 9112 §6.3), and what the head says about
//! the connection. No sockets here, so each rule is tested on its own.
//!
//! Refused here, as a parser must (400, the connection closed after): a head
//! that does not parse (bad tokens, NUL or bare CR, obs-fold, a bad request
//! line), a `Content-Length` that is not digits or several that differ, a
//! `Transfer-Encoding` whose last coding is not `chunked`. A head too large or
//! with too many fields is 431. A head with both `Content-Length` and
//! `Transfer-Encoding` parses, marked [`Head::ambiguous`]: the request path
//! answers it 400 `ambiguous-framing` and the connection closes, its body
//! never read.

use bytes::{Buf, BytesMut};
use http::{Method, Request, Uri, Version, header};

use crate::{request::ADDED_FIELDS, upstream::h1::wire};

/// Fields the parser makes room for at first; a head with more is parsed again with room for the limit.
const FEW_HEADERS: usize = 24;

/// How the request body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BodyFraming {
    #[default]
    None,
    Length(u64),
    Chunked,
}

/// What a request head says beyond the request itself. The request is
/// parsed into a place its server owns: moved out in a struct like this one,
/// it was copied at each return on its way to the request path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Head {
    pub body: BodyFraming,
    /// Whether the connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on a request with a body.
    pub expect_continue: bool,
    /// An HTTP/1.1 upgrade request (`Connection: upgrade` with `Upgrade`) or CONNECT.
    pub upgrade: bool,
    /// `TE: trailers`: the client reads trailer fields of a chunked response.
    pub trailers: bool,
    /// Both `Content-Length` and `Transfer-Encoding`.
    pub ambiguous: bool,
}

/// Why a head was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeadError {
    #[error("malformed request head: {0}")]
    Parse(#[from] httparse::Error),
    #[error("malformed request head: {0}")]
    Malformed(&'static str),
    #[error("request head too large")]
    TooLarge,
}

impl HeadError {
    /// The status the client is answered with before the connection closes.
    pub fn status(&self) -> http::StatusCode {
        match self {
            Self::Parse(_) | Self::Malformed(_) => http::StatusCode::BAD_REQUEST,
            Self::TooLarge => http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        }
    }
}

/// Limits of a head.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_headers: usize,
    pub max_bytes: usize,
}

/// Parses one request head from the front of `buf` into `request` (its
/// method, target, version and fields; its body stays) and takes its bytes
/// out; `None` while it is incomplete. Empty lines before a request line are
/// skipped (RFC 9112 §2.2: some clients send a CRLF after a body).
pub fn parse<B>(buf: &mut BytesMut, limits: Limits, request: &mut Request<B>) -> Result<Option<Head>, HeadError> {
    let blank = buf.iter().take_while(|&&b| b == b'\r' || b == b'\n').count();
    buf.advance(blank);
    let Some(len) = wire::head_end(buf) else {
        return if buf.len() > limits.max_bytes { Err(HeadError::TooLarge) } else { Ok(None) };
    };
    if len > limits.max_bytes {
        return Err(HeadError::TooLarge);
    }
    let bytes = buf.split_to(len).freeze();
    let parsed = match parse_with(&bytes, &mut [httparse::EMPTY_HEADER; FEW_HEADERS], request) {
        Err(httparse::Error::TooManyHeaders) if limits.max_headers > FEW_HEADERS => {
            parse_with(&bytes, &mut vec![httparse::EMPTY_HEADER; limits.max_headers], request)
        }
        parsed => parsed,
    };
    match parsed {
        Ok(()) if request.headers().len() <= limits.max_headers => check(request).map(Some),
        Ok(()) | Err(httparse::Error::TooManyHeaders) => Err(HeadError::TooLarge),
        Err(e) => Err(HeadError::Parse(e)),
    }
}

/// The head of `bytes` (one complete head) into `request`, its fields parsed
/// in `fields`; `request` is written only once the whole head has parsed.
fn parse_with<'b, B>(
    bytes: &'b bytes::Bytes,
    fields: &mut [httparse::Header<'b>],
    request: &mut Request<B>,
) -> Result<(), httparse::Error> {
    let mut req = httparse::Request::new(fields);
    if req.parse(bytes)?.is_partial() {
        return Err(httparse::Error::Token);
    }
    let method = Method::from_bytes(req.method.unwrap_or_default().as_bytes()).map_err(|_| httparse::Error::Token)?;
    let version = if req.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let target = req.path.unwrap_or_default();
    let uri = Uri::from_maybe_shared(bytes.slice_ref(target.as_bytes())).map_err(|_| httparse::Error::Token)?;
    let headers =
        wire::header_map(bytes, req.headers.iter(), req.headers.len() + ADDED_FIELDS).map_err(|_| httparse::Error::HeaderValue)?;
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = headers;
    Ok(())
}

/// Settles the body's framing and what the head says about the connection.
fn check<B>(request: &Request<B>) -> Result<Head, HeadError> {
    let mut head = Head::default();
    let headers = request.headers();
    let version = request.version();
    // Most heads carry none of the fields below (a GET's often has Host and a few
    // others): one pass over the names spares a request five hashed lookups.
    let framing_or_connection =
        |name: &http::HeaderName| matches!(name.as_str(), "connection" | "te" | "transfer-encoding" | "content-length");
    if !headers.keys().any(framing_or_connection) {
        head.keep_alive = version == Version::HTTP_11;
        head.upgrade = *request.method() == Method::CONNECT;
        return Ok(head);
    }
    let tokens = |name| headers.get_all(name).iter().flat_map(|v| v.as_bytes().split(|&b| b == b',').map(<[u8]>::trim_ascii));
    let mut connection = wire::ConnectionTokens::default();
    headers.get_all(header::CONNECTION).iter().for_each(|v| connection.read(v.as_bytes()));
    head.keep_alive = !connection.close && (connection.keep_alive || version == Version::HTTP_11);
    head.upgrade = *request.method() == Method::CONNECT
        || (connection.upgrade && version == Version::HTTP_11 && headers.contains_key(header::UPGRADE));
    head.trailers = tokens(header::TE).any(|t| t.eq_ignore_ascii_case(b"trailers"));
    let has_length = headers.contains_key(header::CONTENT_LENGTH);
    head.body = if headers.contains_key(header::TRANSFER_ENCODING) {
        if !tokens(header::TRANSFER_ENCODING).last().is_some_and(|c| c.eq_ignore_ascii_case(b"chunked")) {
            return Err(HeadError::Malformed("the last transfer coding is not chunked"));
        }
        head.ambiguous = has_length;
        BodyFraming::Chunked
    } else if has_length {
        match headers.get_all(header::CONTENT_LENGTH).iter().fold(None, |so_far, v| wire::agreed_length(so_far, v.as_bytes())) {
            Some(Err(e)) => return Err(HeadError::Malformed(e)),
            Some(Ok(0)) | None => BodyFraming::None,
            Some(Ok(n)) => BodyFraming::Length(n),
        }
    } else {
        BodyFraming::None
    };
    head.expect_continue = version == Version::HTTP_11 && head.body != BodyFraming::None && crate::http::headers::expects_continue(headers);
    Ok(head)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits { max_headers: 100, max_bytes: 64 * 1024 };

    /// A parsed head and the request it was parsed into.
    struct Parsed {
        request: Request<()>,
        head: Head,
    }

    fn head(raw: &str) -> Result<Option<Head>, HeadError> {
        parse(&mut BytesMut::from(raw), LIMITS, &mut Request::new(()))
    }

    fn ok(raw: &str) -> Parsed {
        let mut request = Request::new(());
        let head = parse(&mut BytesMut::from(raw), LIMITS, &mut request).expect("parses").expect("complete");
        Parsed { request, head }
    }

    #[test]
    fn a_head_parses_into_a_request_and_leaves_what_follows() {
        let mut buf = BytesMut::from("\r\nGET /a?b=1 HTTP/1.1\r\nHost: x\r\nX-One: 1\r\n\r\nGET /next");
        let mut request = Request::new(());
        let h = parse(&mut buf, LIMITS, &mut request).unwrap().unwrap();
        assert_eq!(request.method(), Method::GET);
        assert_eq!(request.uri(), "/a?b=1");
        assert_eq!(request.version(), Version::HTTP_11);
        assert_eq!(request.headers()["host"], "x");
        assert_eq!(request.headers()["x-one"], "1");
        assert_eq!(h.body, BodyFraming::None);
        assert!(h.keep_alive && !h.upgrade && !h.ambiguous);
        assert_eq!(&buf[..], b"GET /next", "the next request's bytes stay");
        let mut next = Request::new(());
        assert!(parse(&mut buf, LIMITS, &mut next).unwrap().is_none(), "an incomplete head waits");
        assert_eq!(next.uri(), "/", "and leaves the request as it was");
    }

    #[test]
    fn absolute_form_authority_form_and_asterisk_targets_parse() {
        assert_eq!(ok("GET http://h.example/p HTTP/1.1\r\n\r\n").request.uri().host(), Some("h.example"));
        let connect = ok("CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n");
        assert_eq!(connect.request.uri().authority().unwrap(), "h.example:443");
        assert!(connect.head.upgrade, "CONNECT turns the connection into a tunnel");
        assert_eq!(ok("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n").request.uri(), "*");
    }

    #[test]
    fn keep_alive_follows_version_and_connection() {
        assert!(ok("GET / HTTP/1.1\r\n\r\n").head.keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").head.keep_alive);
        assert!(!ok("GET / HTTP/1.0\r\n\r\n").head.keep_alive);
        assert!(ok("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").head.keep_alive);
        assert!(!ok("GET / HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n").head.keep_alive);
    }

    #[test]
    fn body_framing_follows_rfc_9112() {
        assert_eq!(ok("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n").head.body, BodyFraming::Length(5));
        assert_eq!(ok("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n").head.body, BodyFraming::None);
        assert_eq!(ok("POST / HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\n").head.body, BodyFraming::Length(5));
        assert_eq!(ok("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").head.body, BodyFraming::Chunked);
        // The last coding is chunked: framed, and the request path answers the gzip 501.
        assert_eq!(ok("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n").head.body, BodyFraming::Chunked);
        for bad in [
            "POST / HTTP/1.1\r\nContent-Length: +5\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
            "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
        ] {
            assert!(matches!(head(bad), Err(HeadError::Malformed(_))), "{bad:?}");
        }
        let smuggled = ok("POST / HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n");
        assert!(smuggled.head.ambiguous, "both framing headers are marked, for a 400");
    }

    #[test]
    fn expect_upgrade_and_te_are_noted() {
        assert!(ok("POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n").head.expect_continue);
        assert!(!ok("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").head.expect_continue, "nothing to continue without a body");
        assert!(ok("GET / HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n").head.upgrade);
        assert!(!ok("GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n").head.upgrade, "Upgrade without Connection: upgrade");
        assert!(!ok("GET / HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n").head.upgrade);
        assert!(ok("GET / HTTP/1.1\r\nTE: trailers\r\n\r\n").head.trailers);
    }

    #[test]
    fn malformed_and_oversized_heads_are_refused() {
        for bad in
            ["GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", "GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n", "GET\r\n\r\n", "G@T / HTTP/1.1\r\n\r\n"]
        {
            assert!(matches!(head(bad), Err(HeadError::Parse(_) | HeadError::Malformed(_))), "{bad:?}");
        }
        let many: String = (0..101).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(head(&format!("GET / HTTP/1.1\r\n{many}\r\n")).unwrap_err(), HeadError::TooLarge);
        let some: String = (0..60).map(|i| format!("X-{i}: v\r\n")).collect();
        assert_eq!(ok(&format!("GET / HTTP/1.1\r\n{some}\r\n")).request.headers().len(), 60, "past the first guess, up to the limit");
        let small = Limits { max_headers: 100, max_bytes: 64 };
        let long = format!("GET /{} HTTP/1.1\r\n", "a".repeat(100));
        assert_eq!(
            parse(&mut BytesMut::from(long.as_str()), small, &mut Request::new(())).unwrap_err(),
            HeadError::TooLarge,
            "an unfinished head past the limit"
        );
    }
}
