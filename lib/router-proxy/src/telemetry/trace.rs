//! W3C Trace Context (`traceparent` / `tracestate`).
//!
//! The gateway is a hop in the trace: it keeps the caller's trace id (or
//! starts a trace when there is none or it is malformed) and gives each
//! upstream attempt a fresh span id whose parent is the caller's span, so a
//! backend's spans hang under the gateway's. `tracestate` passes through
//! untouched, as the spec asks of a participant that adds no state.

use rand::Rng;

/// A parsed or generated trace context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub trace_id: [u8; 16],
    /// The caller's span (our parent), if the caller sent one.
    pub parent_id: Option<[u8; 8]>,
    pub sampled: bool,
}

fn hex_to<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != N * 2 || !s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        return None;
    }
    let mut out = [0u8; N];
    for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(chunk).ok()?, 16).ok()?;
    }
    Some(out)
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Lower-case hex of `bytes` into `out` (twice as long).
fn hex_into(bytes: &[u8], out: &mut [u8]) {
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
}

/// A trace id as 32 lower-case hex digits.
#[derive(Clone, Copy)]
pub struct TraceIdHex([u8; 32]);

impl TraceIdHex {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("hex digits are ASCII")
    }
}

impl AsRef<[u8]> for TraceIdHex {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl TraceContext {
    /// Parses a `traceparent` header (version 00 and future versions' first four fields).
    pub fn parse(header: &str) -> Option<Self> {
        let mut parts = header.trim().split('-');
        let version = parts.next()?;
        let trace = parts.next()?;
        let parent = parts.next()?;
        let flags = parts.next()?;
        if version.len() != 2 || version == "ff" || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let trace_id = hex_to::<16>(trace)?;
        let parent_id = hex_to::<8>(parent)?;
        let flags = hex_to::<1>(flags)?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, parent_id: Some(parent_id), sampled: flags & 1 == 1 })
    }

    /// A new trace, sampled.
    pub fn start() -> Self {
        let mut trace_id = [0u8; 16];
        rand::rng().fill(&mut trace_id);
        trace_id[0] |= 1; // never all zero
        Self { trace_id, parent_id: None, sampled: true }
    }

    /// The trace id in lower-case hex, without allocating.
    pub fn trace_id_hex(&self) -> TraceIdHex {
        let mut out = [0u8; 32];
        hex_into(&self.trace_id, &mut out);
        TraceIdHex(out)
    }

    /// The `traceparent` for an upstream attempt, with a fresh span id.
    pub fn child_header(&self) -> [u8; 55] {
        let mut span = [0u8; 8];
        rand::rng().fill(&mut span);
        span[0] |= 1;
        self.header_with_span(span)
    }

    /// `00-<trace id>-<span>-<flags>`, 55 bytes, built without formatting
    /// machinery because every proxied request needs one.
    pub fn header_with_span(&self, span: [u8; 8]) -> [u8; 55] {
        let mut out = *b"00-00000000000000000000000000000000-0000000000000000-00";
        hex_into(&self.trace_id, &mut out[3..35]);
        hex_into(&span, &mut out[36..52]);
        out[54] = if self.sampled { b'1' } else { b'0' };
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_spec_example_and_keeps_the_trace_id_for_children() {
        let tc = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
        assert_eq!(tc.trace_id_hex().as_str(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(tc.sampled);
        let child = tc.child_header();
        let child = std::str::from_utf8(&child).unwrap();
        let parts: Vec<&str> = child.split('-').collect();
        assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_ne!(parts[2], "00f067aa0ba902b7", "a new span id per attempt");
        assert_eq!(parts[3], "01");
    }

    #[test]
    fn unsampled_traces_stay_unsampled() {
        let tc = TraceContext::parse("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00").unwrap();
        assert!(tc.child_header().ends_with(b"-00"));
    }

    #[test]
    fn rejects_malformed_headers() {
        for bad in [
            "",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f35-00f067aa0ba902b7-01",
        ] {
            assert!(TraceContext::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn started_traces_are_valid_and_distinct() {
        let a = TraceContext::start();
        let b = TraceContext::start();
        assert_ne!(a.trace_id, b.trace_id);
        assert!(TraceContext::parse(std::str::from_utf8(&a.child_header()).unwrap()).is_some());
    }
}
