//! The W3C `traceparent` parser on any header value a client can send. What
//! it accepts must survive the trip the gateway gives it: the child header
//! built from it parses again, with the same trace id.
#![no_main]

use libfuzzer_sys::fuzz_target;
use router_proxy::telemetry::trace::TraceContext;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else { return };
    let Some(context) = TraceContext::parse(header) else { return };
    let child = context.child_header();
    let child = std::str::from_utf8(&child).expect("the child header is ASCII");
    let again = TraceContext::parse(child).expect("the gateway's own traceparent parses");
    assert_eq!(again.trace_id_hex().as_str(), context.trace_id_hex().as_str(), "the trace id is kept");
});
