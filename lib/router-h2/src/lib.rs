//! The HTTP/2 server protocol (RFC 9113, RFC 7541) of router-gateway, without
//! I/O: the bytes a client sends go in, what the gateway must do and the bytes
//! it sends back come out. The gateway's connection task owns the socket and
//! the request futures; this crate owns every rule of the protocol, so each
//! rule is tested here on byte strings, without a socket or a runtime.
//!
//! Why not hyper's server over the `h2` crate, which served HTTP/2 before:
//! per request it spent about four times what HAProxy spends on top of an
//! HTTP/1.1 request (docs/performance.md, "HTTP/2: what stands between the
//! gateway and HAProxy"). The costs are structural — an HPACK encoder that
//! indexes and Huffman-codes every response field, a stream store behind a
//! mutex that two tasks lock several times per stream, and a task per
//! stream — so they go away only with a server shaped for a proxy:
//! * responses are encoded against the static table only, never indexed and
//!   never Huffman-coded (RFC 7541 allows every encoder that choice), so the
//!   encoder keeps no state and costs a copy of the bytes;
//! * requests are decoded completely (clients index and Huffman-code), and
//!   what the dynamic table holds is validated once, when it is inserted,
//!   so a field a client repeats costs a reference count, not a parse;
//! * the connection's state has one owner, the connection task.

#![forbid(unsafe_code)]

pub mod conn;
pub mod error;
pub mod frame;
pub mod head;
pub mod hpack;
mod output;
pub mod settings;
pub mod window;
