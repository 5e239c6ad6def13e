//! A response as HTTP/1.1 bytes for the client: how its body is framed, the
//! status line and fields, and the body's pieces (chunked where its length is
//! not known). The head and the first pieces of the body are gathered into
//! one buffer, so a small response is one write; a large piece is written
//! from where it is, beside the buffer, not copied into it.

use std::{
    io::{self, IoSlice},
    pin::Pin,
};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header, response::Parts};
use http_body::{Body, Frame};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::{
    local::ProxyBody,
    request::ResponseFields,
    server::date,
    upstream::h1::wire::{self, field},
};

/// Pieces up to this size are copied into the write buffer; larger ones are written beside it.
const COPY_BELOW: usize = 16 * 1024;
/// Gathered bytes past this are written before more is gathered.
const FLUSH_AT: usize = 64 * 1024;

/// How a response body is delimited on the client's connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body: HEAD, 1xx, 204, 304, or a CONNECT tunnel's 2xx. Fields are written as they are.
    None,
    Length(u64),
    Chunked,
    /// An HTTP/1.0 client and no known length: the body ends when the connection does.
    Close,
}

/// What the request said that shapes its response.
#[derive(Debug, Clone, Copy)]
pub struct Asked<'a> {
    pub method: &'a Method,
    pub version: Version,
}

/// The framing of a response with `parts` (and the `fields` beside its map)
/// and a body whose exact length is `length`, if known.
pub fn framing(asked: Asked<'_>, parts: &Parts, fields: &ResponseFields, length: Option<u64>) -> Framing {
    let status = parts.status;
    if *asked.method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || (*asked.method == Method::CONNECT && status.is_success())
    {
        return Framing::None;
    }
    let declared = || {
        let value =
            parts.headers.get(header::CONTENT_LENGTH).map(HeaderValue::as_bytes).or_else(|| fields.upstream().get(b"content-length"))?;
        wire::parse_decimal(value.trim_ascii())
    };
    match length.or_else(declared) {
        Some(n) => Framing::Length(n),
        None if asked.version == Version::HTTP_11 => Framing::Chunked,
        None => Framing::Close,
    }
}

/// Writes the status line, the upstream's field lines, the map's fields, then
/// the added ones (in place of any of the same names before them). The
/// framing fields are the gateway's (whatever the response carried),
/// `Connection` says whether the connection stays open (`keep_alive` is
/// false for [`Framing::Close`]), and `Date` is added when the response has
/// none.
pub fn write_head(out: &mut Vec<u8>, parts: &Parts, fields: &ResponseFields, framing: Framing, asked: Asked<'_>, keep_alive: bool) {
    // An HTTP/1.0 client is answered in its own version, as hyper's server did.
    out.extend_from_slice(if asked.version == Version::HTTP_10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    // Names are compared as bytes, in any case: the lines keep the upstream's spelling.
    let passes = |name: &[u8]| {
        !name.eq_ignore_ascii_case(b"connection")
            && (framing == Framing::None
                || !(name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"transfer-encoding")))
            && !fields.replace(name)
    };
    let mut dated = false;
    for (name, value) in fields.upstream().iter() {
        dated |= name.eq_ignore_ascii_case(b"date");
        if passes(name) {
            field(out, name, value);
        }
    }
    for (name, value) in &parts.headers {
        let name = name.as_str().as_bytes();
        dated |= name == b"date";
        if passes(name) {
            field(out, name, value.as_bytes());
        }
    }
    fields.for_each(|name, value| field(out, name.as_str().as_bytes(), value));
    match framing {
        Framing::Length(n) => field(out, b"content-length", itoa::Buffer::new().format(n).as_bytes()),
        Framing::Chunked => field(out, b"transfer-encoding", b"chunked"),
        Framing::None | Framing::Close => {}
    }
    if parts.status == StatusCode::SWITCHING_PROTOCOLS {
        // The upgrade's own Connection: upgrade was dropped above with every other Connection.
        field(out, b"connection", b"upgrade");
    } else if !keep_alive {
        field(out, b"connection", b"close");
    } else if asked.version == Version::HTTP_10 {
        field(out, b"connection", b"keep-alive");
    }
    if !dated {
        date::now(|date| field(out, b"date", date));
    }
    out.extend_from_slice(b"\r\n");
}

/// How a body's writing ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Written {
    /// Every byte the framing promised is out: the connection may carry another request.
    Complete,
    /// The body failed or ended short of its length; the connection must close.
    Cut,
}

/// Writes what is gathered in `out` (the head, say) and `body` framed by
/// `framing`; trailers only when the client asked for them (`TE: trailers`).
pub async fn write_body<W: AsyncWrite + Unpin>(
    io: &mut W,
    out: &mut Vec<u8>,
    mut body: ProxyBody,
    framing: Framing,
    trailers_wanted: bool,
) -> io::Result<Written> {
    if framing == Framing::None {
        io.write_all(out).await?;
        return Ok(Written::Complete);
    }
    let mut left = match framing {
        Framing::Length(n) => Some(n),
        _ => None,
    };
    loop {
        let frame = std::future::poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
            std::task::Poll::Pending if !out.is_empty() => std::task::Poll::Ready(Step::Flush),
            std::task::Poll::Pending => std::task::Poll::Pending,
            std::task::Poll::Ready(frame) => std::task::Poll::Ready(Step::Frame(frame)),
        })
        .await;
        let frame = match frame {
            Step::Flush => {
                io.write_all(out).await?;
                out.clear();
                continue;
            }
            Step::Frame(None) => break,
            Step::Frame(Some(Ok(frame))) => frame,
            Step::Frame(Some(Err(e))) => {
                tracing::debug!(error = %e, "response body failed; closing the client connection");
                io.write_all(out).await?;
                return Ok(Written::Cut);
            }
        };
        let frame = match frame.into_data() {
            Ok(data) => data,
            Err(frame) => {
                if let (Framing::Chunked, Ok(trailers)) = (framing, frame.into_trailers()) {
                    write_end(out, framing, trailers_wanted.then_some(&trailers));
                    io.write_all(out).await?;
                    return Ok(Written::Complete);
                }
                continue;
            }
        };
        if frame.is_empty() {
            continue;
        }
        if let Some(left) = &mut left {
            if frame.len() as u64 > *left {
                tracing::debug!("response body longer than its Content-Length; closing the client connection");
                io.write_all(out).await?;
                return Ok(Written::Cut);
            }
            *left -= frame.len() as u64;
        }
        if framing == Framing::Chunked {
            wire::write_chunk_size(out, frame.len());
        }
        if frame.len() < COPY_BELOW {
            out.extend_from_slice(&frame);
        } else {
            write_beside(io, out, &frame).await?;
        }
        if framing == Framing::Chunked {
            out.extend_from_slice(b"\r\n");
        }
        if out.len() >= FLUSH_AT {
            io.write_all(out).await?;
            out.clear();
        }
    }
    if left.is_some_and(|n| n > 0) {
        tracing::debug!("response body shorter than its Content-Length; closing the client connection");
        io.write_all(out).await?;
        return Ok(Written::Cut);
    }
    write_end(out, framing, None);
    io.write_all(out).await?;
    Ok(Written::Complete)
}

enum Step {
    Flush,
    Frame(Option<Result<Frame<Bytes>, crate::upstream::BoxError>>),
}

fn write_end(out: &mut Vec<u8>, framing: Framing, trailers: Option<&HeaderMap>) {
    if framing == Framing::Chunked {
        wire::write_last_chunk(out, trailers);
    }
}

/// Writes `out`, then `data`, with as few calls as the socket allows; `out` is empty after.
async fn write_beside<W: AsyncWrite + Unpin>(io: &mut W, out: &mut Vec<u8>, data: &[u8]) -> io::Result<()> {
    let (mut first, mut second) = (&out[..], data);
    while !first.is_empty() || !second.is_empty() {
        let n = io.write_vectored(&[IoSlice::new(first), IoSlice::new(second)]).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let from_first = n.min(first.len());
        first = &first[from_first..];
        second = &second[n - from_first..];
    }
    out.clear();
    Ok(())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use http::Response;
    use http_body_util::{BodyExt, Full, StreamBody};

    use super::*;

    const GET11: Asked<'static> = Asked { method: &Method::GET, version: Version::HTTP_11 };

    fn parts(status: u16, headers: &[(&str, &str)]) -> Parts {
        let mut b = Response::builder().status(status);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn head(parts: &Parts, framing: Framing, asked: Asked<'_>, keep_alive: bool) -> String {
        head_with(parts, &fields(b"", 0), framing, asked, keep_alive)
    }

    /// The added fields, with the field lines of an upstream head made of `lines`.
    fn fields(lines: &[u8], attempts: u32) -> ResponseFields {
        let mut head = BytesMut::from(&b"HTTP/1.1 200 OK\r\n"[..]);
        head.extend_from_slice(lines);
        head.extend_from_slice(b"\r\n");
        let upstream = wire::parse_response_head(&mut head, None).unwrap().unwrap().fields;
        ResponseFields::new(upstream, http::HeaderValue::from_static("id"), attempts)
    }

    fn head_with(parts: &Parts, added: &ResponseFields, framing: Framing, asked: Asked<'_>, keep_alive: bool) -> String {
        let mut out = Vec::new();
        write_head(&mut out, parts, added, framing, asked, keep_alive);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn framing_follows_method_status_and_length() {
        let (ok, none) = (parts(200, &[]), fields(b"", 0));
        assert_eq!(framing(GET11, &ok, &none, Some(5)), Framing::Length(5));
        assert_eq!(framing(GET11, &ok, &none, None), Framing::Chunked);
        assert_eq!(framing(Asked { method: &Method::GET, version: Version::HTTP_10 }, &ok, &none, None), Framing::Close);
        let declared = parts(200, &[("content-length", "7")]);
        assert_eq!(framing(GET11, &declared, &none, None), Framing::Length(7), "a declared length is kept");
        assert_eq!(framing(GET11, &ok, &fields(b"Content-Length: 8\r\n", 0), None), Framing::Length(8), "in the lines too");
        assert_eq!(framing(Asked { method: &Method::HEAD, ..GET11 }, &ok, &none, Some(0)), Framing::None);
        assert_eq!(framing(Asked { method: &Method::CONNECT, ..GET11 }, &ok, &none, Some(0)), Framing::None);
        for status in [101, 204, 304] {
            assert_eq!(framing(GET11, &parts(status, &[]), &none, Some(0)), Framing::None, "{status}");
        }
    }

    #[test]
    fn the_head_carries_the_gateways_framing_and_connection_fields() {
        let p = parts(200, &[("content-length", "99"), ("transfer-encoding", "chunked"), ("x-a", "1"), ("date", "d")]);
        let h = head(&p, Framing::Length(5), GET11, true);
        assert_eq!(h, "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: d\r\nx-request-id: id\r\ncontent-length: 5\r\n\r\n");
        let h = head(&parts(404, &[]), Framing::Chunked, GET11, false);
        assert!(
            h.starts_with("HTTP/1.1 404 Not Found\r\nx-request-id: id\r\ntransfer-encoding: chunked\r\nconnection: close\r\ndate: "),
            "{h}"
        );
        let h = head(&parts(200, &[("date", "d")]), Framing::Length(0), Asked { method: &Method::GET, version: Version::HTTP_10 }, true);
        assert!(h.starts_with("HTTP/1.0 200 OK\r\n"), "{h}");
        assert!(h.contains("connection: keep-alive\r\n"), "an HTTP/1.0 client is told it may keep the connection: {h}");
        let h = head(&parts(101, &[("upgrade", "websocket"), ("connection", "upgrade")]), Framing::None, GET11, true);
        assert_eq!(h.matches("connection: upgrade").count(), 1, "{h}");
        let h =
            head(&parts(200, &[("content-length", "12"), ("date", "d")]), Framing::None, Asked { method: &Method::HEAD, ..GET11 }, true);
        assert!(h.contains("content-length: 12\r\n"), "a HEAD answer keeps its length: {h}");
    }

    #[test]
    fn the_added_fields_follow_the_maps_and_replace_the_upstreams() {
        let p = parts(200, &[("x-request-id", "upstream's"), ("x-datum-router-attempts", "9"), ("x-a", "1"), ("date", "d")]);
        let h = head_with(&p, &fields(b"", 2), Framing::Length(0), GET11, true);
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nx-a: 1\r\ndate: d\r\nx-request-id: id\r\nx-datum-router-attempts: 2\r\ncontent-length: 0\r\n\r\n"
        );
    }

    #[test]
    fn an_upstreams_lines_go_out_as_read_less_this_hops_fields_and_before_the_maps() {
        let lines = b"Server: up\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTransfer-Encoding: chunked\r\n\
                      Content-Length: 3\r\nX-Request-Id: upstream's\r\nX-Datum-Router-Attempts: 9\r\nDate: d\r\nX-A: 1\r\nx-a: 2\r\n";
        let p = parts(200, &[("x-filter", "f")]);
        let h = head_with(&p, &fields(lines, 1), Framing::Length(3), GET11, true);
        assert_eq!(
            h,
            "HTTP/1.1 200 OK\r\nServer: up\r\nDate: d\r\nX-A: 1\r\nx-a: 2\r\nx-filter: f\r\nx-request-id: id\r\n\
             x-datum-router-attempts: 1\r\ncontent-length: 3\r\n\r\n",
            "the upstream's spelling is kept; its Date stands"
        );
        let h = head_with(
            &parts(200, &[]),
            &fields(b"Content-Length: 12\r\n", 1),
            Framing::None,
            Asked { method: &Method::HEAD, ..GET11 },
            true,
        );
        assert!(h.contains("Content-Length: 12\r\n"), "a HEAD answer keeps its length: {h}");
    }

    async fn written(body: ProxyBody, framing: Framing, trailers: bool) -> (String, Written) {
        let mut io = Vec::new();
        let mut out = b"HEAD\r\n".to_vec();
        let written = write_body(&mut io, &mut out, body, framing, trailers).await.unwrap();
        (String::from_utf8(io).unwrap(), written)
    }

    fn pieces(parts: &[&'static str], trailers: Option<HeaderMap>) -> ProxyBody {
        let mut frames: Vec<Result<Frame<Bytes>, crate::upstream::BoxError>> =
            parts.iter().map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes())))).collect();
        frames.extend(trailers.map(|t| Ok(Frame::trailers(t))));
        StreamBody::new(futures::stream::iter(frames)).boxed()
    }

    #[tokio::test]
    async fn bodies_are_written_in_their_framing() {
        let (s, w) = written(pieces(&["hel", "lo"], None), Framing::Length(5), false).await;
        assert_eq!((s.as_str(), w), ("HEAD\r\nhello", Written::Complete));
        let (s, _) = written(pieces(&["hel", "", "lo"], None), Framing::Chunked, false).await;
        assert_eq!(s, "HEAD\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n");
        let mut t = HeaderMap::new();
        t.insert("grpc-status", "0".parse().unwrap());
        let (s, _) = written(pieces(&["a"], Some(t.clone())), Framing::Chunked, true).await;
        assert_eq!(s, "HEAD\r\n1\r\na\r\n0\r\ngrpc-status: 0\r\n\r\n");
        let (s, _) = written(pieces(&["a"], Some(t)), Framing::Chunked, false).await;
        assert_eq!(s, "HEAD\r\n1\r\na\r\n0\r\n\r\n", "no trailers for a client that did not ask");
        let big = "x".repeat(100_000);
        let body = Full::new(Bytes::from(big.clone())).map_err(|never| match never {}).boxed();
        let (s, _) = written(body, Framing::Length(100_000), false).await;
        assert_eq!(s, format!("HEAD\r\n{big}"), "a large piece is written beside the head");
    }

    #[tokio::test]
    async fn a_body_that_breaks_its_length_cuts_the_connection() {
        let (s, w) = written(pieces(&["hel"], None), Framing::Length(5), false).await;
        assert_eq!((s.as_str(), w), ("HEAD\r\nhel", Written::Cut), "short");
        let (_, w) = written(pieces(&["hello!"], None), Framing::Length(5), false).await;
        assert_eq!(w, Written::Cut, "long");
        let failing: ProxyBody =
            StreamBody::new(futures::stream::iter(vec![Ok(Frame::data(Bytes::from_static(b"a"))), Err("upstream reset".into())])).boxed();
        let (s, w) = written(failing, Framing::Chunked, false).await;
        assert_eq!(w, Written::Cut);
        assert!(!s.ends_with("0\r\n\r\n"), "a failed chunked body never looks complete: {s:?}");
    }
}
