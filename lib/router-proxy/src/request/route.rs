//! Stage 1, route: the route table of the listener the request came in on,
//! and the rule in it that matches the request.
//!
//! On a VPCIngress port the listener is chosen by host; over TLS the
//! connection already belongs to the listener its SNI chose, so a request for
//! another listener's host (HTTP/2 connection coalescing sends them) is 421
//! rather than served under the wrong certificate or client validation.

use std::sync::Arc;

use http::Request;
use router_core::{RequestView, Snapshot, route_table::RouteRule, snapshot::RoutePolicy};

use crate::{
    error::ProxyError,
    http::headers::{ClientInfo, Entry},
};

pub(super) fn lookup<B>(
    snapshot: &Snapshot,
    client: &ClientInfo,
    host: &str,
    req: &Request<B>,
) -> Result<Arc<RouteRule<RoutePolicy>>, ProxyError> {
    let table = match &client.entry {
        Entry::Internal => &snapshot.routes,
        Entry::Ingress { port, tls_listener } => {
            let listener = snapshot.ingress.ports.get(port).and_then(|p| p.select(Some(host))).ok_or(ProxyError::NoRoute)?;
            if tls_listener.as_ref().is_some_and(|sni| *sni != listener.label) {
                return Err(ProxyError::Misdirected);
            }
            &listener.routes
        }
    };
    let view = RequestView { host, path: req.uri().path(), query: req.uri().query(), method: req.method(), headers: req.headers() };
    table.lookup(&view).cloned().ok_or(ProxyError::NoRoute)
}
