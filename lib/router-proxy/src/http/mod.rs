//! Header, filter and framing logic of the request path, as pure functions
//! over `http` types and bytes so each is unit-tested without sockets.

pub mod field_lines;
pub mod filters;
pub mod forwarding;
pub mod headers;
pub mod rewind;
pub mod upgrade;
