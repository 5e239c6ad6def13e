//! Header and filter logic of the request path, as pure functions over
//! `http` types so each is unit-tested without sockets.

pub mod filters;
pub mod headers;
