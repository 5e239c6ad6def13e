//! The tunnel's framing: one HTTP/1.1 `CONNECT host:port` exchange at the
//! start of each QUIC bidirectional stream (RFC 9110 §9.3.6), answered
//! `200` (then the stream carries the spliced bytes both ways), `403` (the
//! target is not one the connector serves) or `502` (the origin did not
//! answer). It is what Datum's connector agent speaks on ALPN
//! `iroh-http-proxy/1`, so either side interoperates with it.
//!
//! A head is read up to its blank line and never past [`MAX_HEAD`]; bytes
//! that arrived with it belong to the tunnel and are handed back, not lost.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request or response head accepted.
pub const MAX_HEAD: usize = 8 * 1024;

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum FramingError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the stream ended before a complete head")]
    Closed,
    #[error("head larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("malformed head: {0}")]
    Malformed(String),
}

/// Writes the request for `authority` (`host:port`).
pub async fn send_request(w: &mut (impl AsyncWrite + Unpin), authority: &str) -> std::io::Result<()> {
    w.write_all(format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n").as_bytes()).await
}

/// Writes a response with `status`; anything but 200 ends the exchange.
pub async fn send_response(w: &mut (impl AsyncWrite + Unpin), status: u16) -> std::io::Result<()> {
    let reason = match status {
        200 => "Connection Established",
        400 => "Bad Request",
        403 => "Forbidden",
        502 => "Bad Gateway",
        _ => "",
    };
    let length = if status == 200 { "" } else { "Content-Length: 0\r\n" };
    w.write_all(format!("HTTP/1.1 {status} {reason}\r\n{length}\r\n").as_bytes()).await
}

/// Reads one head into `buf`; returns it, leaving in `buf` what came after it.
async fn read_head(r: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> Result<BytesMut, FramingError> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Ok(buf.split_to(end + 4));
        }
        if buf.len() >= MAX_HEAD {
            return Err(FramingError::TooLarge);
        }
        buf.reserve(1024);
        if r.read_buf(buf).await? == 0 {
            return Err(FramingError::Closed);
        }
    }
}

/// Reads a CONNECT request; returns its authority, and in `buf` the bytes that followed it.
pub async fn read_request(r: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> Result<String, FramingError> {
    let head = read_head(r, buf).await?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut request = httparse::Request::new(&mut headers);
    match request.parse(&head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Err(FramingError::Malformed("incomplete request".into())),
        Err(e) => return Err(FramingError::Malformed(e.to_string())),
    }
    if request.method != Some("CONNECT") {
        return Err(FramingError::Malformed(format!("method {:?}, want CONNECT", request.method.unwrap_or_default())));
    }
    let authority = request.path.unwrap_or_default();
    if !is_authority(authority) {
        return Err(FramingError::Malformed(format!("{authority:?} is not host:port")));
    }
    Ok(authority.to_owned())
}

/// Whether `text` is a CONNECT authority: a host, a colon and a port from 1 to 65535.
pub fn is_authority(text: &str) -> bool {
    text.rsplit_once(':').is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0))
}

/// Reads a response; returns its status, and in `buf` the bytes that followed it.
pub async fn read_response(r: &mut (impl AsyncRead + Unpin), buf: &mut BytesMut) -> Result<u16, FramingError> {
    let head = read_head(r, buf).await?;
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(&head) {
        Ok(httparse::Status::Complete(_)) => response.code.ok_or_else(|| FramingError::Malformed("no status".into())),
        Ok(httparse::Status::Partial) => Err(FramingError::Malformed("incomplete response".into())),
        Err(e) => Err(FramingError::Malformed(e.to_string())),
    }
}

/// Writes what was read past a head before the splice takes over.
pub async fn forward_rest(w: &mut (impl AsyncWrite + Unpin), rest: &mut BytesMut) -> std::io::Result<()> {
    if rest.has_remaining() {
        w.write_all(rest).await?;
        rest.clear();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_round_trips_and_bytes_after_the_head_are_kept() {
        let mut wire = Vec::new();
        send_request(&mut wire, "127.0.0.1:5173").await.unwrap();
        wire.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut buf = BytesMut::new();
        let authority = read_request(&mut wire.as_slice(), &mut buf).await.unwrap();
        assert_eq!(authority, "127.0.0.1:5173");
        assert_eq!(&buf[..], b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn responses_round_trip_with_their_status() {
        for status in [200, 403, 502] {
            let mut wire = Vec::new();
            send_response(&mut wire, status).await.unwrap();
            let mut buf = BytesMut::new();
            assert_eq!(read_response(&mut wire.as_slice(), &mut buf).await.unwrap(), status);
            assert!(buf.is_empty());
        }
    }

    #[tokio::test]
    async fn malformed_truncated_and_oversized_heads_are_refused() {
        let cases: [(&[u8], &str); 4] = [
            (b"GET /x HTTP/1.1\r\n\r\n", "want CONNECT"),
            (b"CONNECT nohost HTTP/1.1\r\n\r\n", "not host:port"),
            (b"CONNECT a:1 HTTP/1.1\r\n", "ended before"),
            (b"CONNECT a:0 HTTP/1.1\r\n\r\n", "not host:port"),
        ];
        for (wire, expect) in cases {
            let err = read_request(&mut &wire[..], &mut BytesMut::new()).await.unwrap_err().to_string();
            assert!(err.contains(expect), "{:?}: {err}", String::from_utf8_lossy(wire));
        }
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(matches!(read_request(&mut huge.as_slice(), &mut BytesMut::new()).await, Err(FramingError::TooLarge)));
    }
}
