//! The upstream request, built once per request and reused by every attempt:
//! the path after the route's rewrite, the headers without hop-by-hop ones,
//! with the forwarding headers (X-Forwarded-*, Forwarded), the route's request
//! header modifier, `x-request-id` and the child `traceparent`, and the Host
//! the upstream sees. The body is buffered when a retry may need it again,
//! and teed when the route mirrors.

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Version, header, request::Parts, uri::PathAndQuery};
use http_body::Body;
use http_body_util::{BodyExt, Limited};
use router_core::{route_table::RouteRule, snapshot::RoutePolicy};

use super::Gateway;
use crate::{
    error::ProxyError,
    http::{
        filters,
        forwarding::AddedFields,
        headers::{self, ClientInfo},
        upgrade::{OnUpgrade, UpgradeSlot},
    },
    mirror,
    upstream::{self, ClientBody, ClientBodyError, RequestBody},
};

/// The largest request body buffered so that it can be sent again on retry;
/// larger (or unknown-length) bodies stream and are not retried.
pub const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// Fields this stage adds to the request's map: Host, Connection and
/// Upgrade at most (the forwarding fields stay beside it, in
/// [`AddedFields`]). The HTTP/1.1 server makes room for them when it parses a head.
pub const ADDED_FIELDS: usize = 3;

/// What identifies the request to the upstream and to traces.
pub(super) struct RequestIds<'a> {
    pub request_id: &'a HeaderValue,
    pub traceparent: &'a [u8; 55],
}

pub(super) struct UpstreamRequest<'a> {
    pub method: Method,
    pub path_and_query: PathAndQuery,
    pub version: Version,
    pub headers: http::HeaderMap,
    /// The forwarding and request id fields not moved into `headers`.
    pub added: AddedFields<'a>,
    pub body: RequestBody,
    /// The client's side of an HTTP/1.1 upgrade (WebSocket), when it asked for one.
    pub upgrade: Option<OnUpgrade>,
}

impl Gateway {
    pub(super) async fn upstream_request<'a>(
        &self,
        req: &mut Request<ClientBody>,
        rule: &RouteRule<RoutePolicy>,
        service_protocol: router_api::v1alpha1::ServiceProtocol,
        client: &'a ClientInfo,
        host: &'a str,
        ids: &RequestIds<'a>,
    ) -> Result<UpstreamRequest<'a>, ProxyError> {
        let mut req = std::mem::take(req);
        let policy = &rule.action;
        let is_h1 = upstream::is_http1(service_protocol);
        // WebSocket and other HTTP/1.1 upgrades pass through to HTTP/1.1 upstreams.
        let upgrade = (is_h1 && is_upgrade_request(&req)).then(|| {
            let protocol = req.headers().get(header::UPGRADE).cloned();
            (OnUpgrade::on(&mut req), protocol)
        });
        let (mut parts, body) = req.into_parts();
        let path_and_query = rewritten_path(&parts, rule)?;
        headers::strip_hop_by_hop(&mut parts.headers);
        let rewritten_host = policy.url_rewrite.as_ref().and_then(|rw| rw.hostname.as_deref());
        // An HTTP/1.1 client's own Host header is kept as it came unless the route rewrites it;
        // HTTP/2 carries the host in :authority, so its map has none.
        let host_missing = rewritten_host.is_none() && !parts.headers.contains_key(header::HOST);
        // Room for exactly what this stage adds, taken at once: a no-op for the HTTP/1.1
        // server's maps (made with room for ADDED_FIELDS), and growing an HTTP/2 request's
        // map by more than it needs cost a reallocation of its entries on every request.
        let adds = usize::from(rewritten_host.is_some() || host_missing) + if upgrade.is_some() { 2 } else { 0 };
        parts.headers.reserve(adds);
        let mut added = AddedFields::new(&mut parts.headers, client, host, ids.request_id, ids.traceparent);
        // The modifier sees (and may change) the forwarding fields; the request ids are the gateway's.
        if let Some(m) = &policy.request_headers {
            added.move_forwarding_into(&mut parts.headers);
            headers::apply_modifier(&mut parts.headers, m);
        }
        // The logical host travels in Host for HTTP/1.1 and HTTP/2 upstreams alike.
        if let Some(rewritten) = rewritten_host {
            if let Ok(v) = HeaderValue::from_str(rewritten) {
                parts.headers.insert(header::HOST, v);
            }
        } else if host_missing && let Ok(v) = HeaderValue::from_str(host) {
            parts.headers.insert(header::HOST, v);
        }
        if let Some((_, Some(protocol))) = &upgrade {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }
        // A request can be retried only if its body can be sent again: buffered up to a bound.
        let retries = policy.retries.as_ref().is_some_and(|r| r.max_retries > 0) && upgrade.is_none();
        let body = match retries {
            true if body.is_end_stream() => RequestBody::Replay(Some(Bytes::new())),
            true if content_length(&parts.headers).is_some_and(|n| n <= RETRY_BUFFER_BYTES) => {
                match Limited::new(body, RETRY_BUFFER_BYTES as usize).collect().await {
                    Ok(collected) => RequestBody::Replay(Some(collected.to_bytes())),
                    Err(e) if matches!(e.downcast_ref(), Some(ClientBodyError::Timeout)) => return Err(ProxyError::ClientBodyTimeout),
                    Err(_) => return Err(ProxyError::ClientBody),
                }
            }
            _ => RequestBody::Direct(body),
        };
        let body = match &policy.mirror {
            Some((target, percent)) => {
                added.move_all_into(&mut parts.headers);
                mirror::start(&self.upstreams, &self.cell.tls(), &self.metrics, target, *percent, &parts, body)
            }
            None => body,
        };
        Ok(UpstreamRequest {
            method: parts.method,
            path_and_query,
            version: if is_h1 { Version::HTTP_11 } else { Version::HTTP_2 },
            headers: parts.headers,
            added,
            body,
            upgrade: upgrade.map(|(on, _)| on),
        })
    }
}

/// The path and query the upstream sees: the route's `urlRewrite` of the path, or the client's.
fn rewritten_path(parts: &Parts, rule: &RouteRule<RoutePolicy>) -> Result<PathAndQuery, ProxyError> {
    let Some(path) = rule.action.url_rewrite.as_ref().and_then(|rw| filters::rewrite_path(parts.uri.path(), &rule.path, rw)) else {
        return Ok(parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")));
    };
    let joined = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path,
    };
    PathAndQuery::try_from(joined).map_err(|_| ProxyError::BadRequest)
}

/// An HTTP/1.1 request that asks to upgrade its connection (`Connection:
/// upgrade` with `Upgrade`): the gateway's HTTP/1.1 server, which read its
/// head, left it a slot for the connection.
fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.extensions().get::<UpgradeSlot>().is_some()
}

pub(super) fn content_length(h: &http::HeaderMap) -> Option<u64> {
    length(h.get(header::CONTENT_LENGTH)?)
}

/// A Content-Length value's length.
pub(super) fn length(value: &HeaderValue) -> Option<u64> {
    value.to_str().ok()?.parse().ok()
}
