//! Stage 2, filters that answer without an upstream: a CORS preflight the
//! route's `cors` policy covers (204 with the allow headers), and a
//! `redirect` (its status and Location). Everything else the route's filters
//! do — rewrites and header modifiers — shapes the upstream request
//! (`forward`) or its response (`response`).

use http::{HeaderValue, Request, StatusCode, header};
use router_core::{route_table::RouteRule, snapshot::RoutePolicy};

use crate::{
    http::{filters, headers::ClientInfo},
    local::{ProxyBody, empty_response},
};

/// The route's local answer to `req`, when it has one.
pub(super) fn answer<B>(
    rule: &RouteRule<RoutePolicy>,
    req: &Request<B>,
    client: &ClientInfo,
    host: &str,
) -> Option<http::Response<ProxyBody>> {
    let policy = &rule.action;
    if let Some(cors) = &policy.cors
        && filters::is_preflight(req.method(), req.headers())
    {
        let mut r = empty_response(StatusCode::NO_CONTENT);
        *r.headers_mut() = filters::preflight_headers(cors, req.headers());
        return Some(r);
    }
    let redirect = policy.redirect.as_ref()?;
    let port = req.uri().port_u16().or_else(|| {
        req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).and_then(|h| h.rsplit_once(':')).and_then(|(_, p)| p.parse().ok())
    });
    let (status, location) =
        filters::redirect_location(redirect, client.scheme, host, port, (req.uri().path(), req.uri().query()), &rule.path);
    let mut r = empty_response(status);
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    Some(r)
}
