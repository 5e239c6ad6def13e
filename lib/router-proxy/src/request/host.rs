//! The request's host, as routing sees it.

use http::{HeaderValue, Request, header, uri::Authority};
use router_core::normalize_host;

/// The request's host, lower-cased without port. It is held as a shared clone of the
/// URI authority (HTTP/2, absolute-form) or Host header it came from, plus the host's
/// length in it; only an unusual host (upper case, IPv6, trailing dot) is copied.
pub(super) enum RequestHost {
    Authority(Authority, usize),
    Header(HeaderValue, usize),
    Normalized(String),
}

impl RequestHost {
    pub(super) fn of<B>(req: &Request<B>) -> Option<Self> {
        let (text, source) = match req.uri().authority() {
            Some(a) => (a.as_str(), None),
            None => {
                let h = req.headers().get(header::HOST)?;
                (h.to_str().ok()?, Some(h))
            }
        };
        let without_port = match text.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => text,
        };
        if without_port.bytes().any(|b| b == b':' || b == b'[' || b.is_ascii_uppercase()) || without_port.ends_with('.') {
            return Some(Self::Normalized(normalize_host(text)));
        }
        let len = without_port.len();
        Some(match (source, req.uri().authority()) {
            (Some(h), _) => Self::Header(h.clone(), len),
            (None, Some(a)) => Self::Authority(a.clone(), len),
            (None, None) => Self::Normalized(without_port.to_owned()),
        })
    }

    pub(super) fn as_str(&self) -> &str {
        match self {
            Self::Authority(a, len) => &a.as_str()[..*len],
            // Checked visible ASCII when this was built.
            Self::Header(h, len) => h.to_str().map_or("", |s| &s[..*len]),
            Self::Normalized(s) => s,
        }
    }
}
