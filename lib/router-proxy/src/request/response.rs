//! Stage 5, response: what the client gets of the upstream's answer. Hop-by-hop
//! headers go, the route's response header modifier and CORS origin headers
//! apply, `x-datum-router-attempts` says how many attempts were made, and the
//! body streams through [`GuardedBody`], which holds the request's in-flight
//! counts and limits until it is done, enforces `timeouts.idle`, and reports a
//! gRPC stream's trailers to the breaker. An accepted HTTP/1.1 upgrade (101)
//! becomes a byte tunnel between the two upgraded connections.

use std::{
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::Duration,
};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use router_core::{
    EndpointState,
    balance::ActiveRequest,
    endpoint::InFlightGuard,
    route_table::RouteRule,
    snapshot::{DestinationTarget, RoutePolicy},
};

use super::{
    Gateway,
    attempts::{Answered, record_breaker},
    destination::Destination,
};
use crate::{
    http::{field_lines::FieldLines, filters, forwarding, headers, upgrade::OnUpgrade},
    local::{ProxyBody, empty_body},
    telemetry::Metrics,
    upstream::{BoxError, UpstreamBody, UpstreamUpgrade},
};

/// The response header with the number of upstream attempts made.
pub const ATTEMPTS_HEADER: &str = "x-datum-router-attempts";
static ATTEMPTS_NAME: HeaderName = HeaderName::from_static(ATTEMPTS_HEADER);

impl Gateway {
    pub(super) fn respond(
        &self,
        rule: &Arc<RouteRule<RoutePolicy>>,
        dest: Destination<'_>,
        answered: Answered,
        client_upgrade: Option<OnUpgrade>,
        origin: Option<&str>,
    ) -> (Response<ProxyBody>, FieldLines) {
        let policy = &rule.action;
        let Answered { mut response, mut lines, guard, retry_slot, grpc_stream, .. } = answered;
        if let Some(client_upgrade) = client_upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = UpstreamUpgrade::on(&mut response);
            let held = (guard, dest.connection);
            tokio::spawn(async move {
                let _held = held;
                let spliced = match client_upgrade.connection().await {
                    Ok(client) => upstream_upgrade.splice(client).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = spliced {
                    tracing::debug!(error = %e, "upgrade failed");
                }
            });
            let (parts, _) = response.into_parts();
            return (Response::from_parts(parts, empty_body()), lines);
        }
        let grpc = grpc_stream.then(|| GrpcOutcome {
            rule: rule.clone(),
            destination: dest.index,
            endpoint: dest.endpoint.clone(),
            metrics: self.metrics.clone(),
        });
        let (mut parts, body) = response.into_parts();
        let cors = policy.cors.as_ref().zip(origin).and_then(|(cors, origin)| Some((cors, filters::allowed_origin(cors, origin)?)));
        if policy.response_headers.is_some() || cors.is_some() {
            // Filters work on the map.
            lines.move_into(&mut parts.headers);
        }
        // Lines left beside the map hold end-to-end fields only; a map may hold hop-by-hop ones.
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(m) = &policy.response_headers {
            headers::apply_modifier(&mut parts.headers, m);
        }
        if let Some((cors, origin)) = cors {
            filters::add_origin_headers(cors, origin, &mut parts.headers);
        }
        let idle = policy.timeouts.idle.map(|d| IdleTimer {
            limit: d,
            sleep: Box::pin(tokio::time::sleep(d)),
            fired: self.metrics.timeouts.with_label_values(&[&*policy.label, "idle"]),
        });
        let body =
            GuardedBody { inner: body, idle, _guard: guard, _active: dest.active, _retry: retry_slot, _connection: dest.connection, grpc };
        (Response::from_parts(parts, body.boxed()), lines)
    }
}

/// The fields a response carries beside its map: the upstream's as the
/// gateway's HTTP/1.1 client read them (when no filter needed them in the
/// map), and the ones the gateway adds to every response, the request id and
/// how many upstream attempts were made when there were any. The HTTP/1.1
/// and HTTP/2 servers write them around the map's fields (building a map, or
/// inserting two fields into one, costs more than the rest of the response
/// head); the added fields replace any field of the same name the upstream sent.
pub struct ResponseFields {
    upstream: FieldLines,
    request_id: HeaderValue,
    attempts: u32,
}

impl ResponseFields {
    /// `attempts`: 0 when the request did not go upstream.
    pub fn new(upstream: FieldLines, request_id: HeaderValue, attempts: u32) -> Self {
        Self { upstream, request_id, attempts }
    }

    /// The upstream's fields not in the map.
    pub fn upstream(&self) -> &FieldLines {
        &self.upstream
    }

    /// Whether a field named `name` (any case) is one the added fields replace.
    pub fn replace(&self, name: &[u8]) -> bool {
        name.eq_ignore_ascii_case(forwarding::X_REQUEST_ID.as_str().as_bytes())
            || (self.attempts > 0 && name.eq_ignore_ascii_case(ATTEMPTS_HEADER.as_bytes()))
    }

    /// Calls `f` with each field's name and value.
    pub fn for_each(&self, mut f: impl FnMut(&HeaderName, &[u8])) {
        f(forwarding::X_REQUEST_ID, self.request_id.as_bytes());
        if self.attempts > 0 {
            f(&ATTEMPTS_NAME, itoa::Buffer::new().format(self.attempts).as_bytes());
        }
    }
}

/// Waits for a gRPC stream's trailers to tell the destination's breaker how the call went.
struct GrpcOutcome {
    rule: Arc<RouteRule<RoutePolicy>>,
    destination: usize,
    endpoint: Arc<EndpointState>,
    metrics: Arc<Metrics>,
}

impl GrpcOutcome {
    /// `status`: the trailers' grpc-status, None when the stream ended without one.
    fn finish(self, status: Option<u8>) {
        // UNAVAILABLE, INTERNAL and DEADLINE_EXCEEDED are the endpoint's failures; other codes are the application's answer.
        let failed = status.is_none_or(|s| matches!(s, 4 | 13 | 14));
        if let DestinationTarget::Resolved { picker, .. } = &self.rule.action.destinations[self.destination] {
            record_breaker(&self.metrics, &self.rule.action.label, picker, &self.endpoint, failed);
        }
    }
}

pin_project_lite::pin_project! {
    /// An upstream response body that keeps the endpoint's in-flight count
    /// raised until the body is finished or dropped.
    struct GuardedBody {
        #[pin]
        inner: UpstreamBody,
        // timeouts.idle: the stream fails when no frame arrives for this long.
        idle: Option<IdleTimer>,
        _guard: InFlightGuard,
        _active: ActiveRequest,
        // A retry stays in flight (maxRetries) until its response is done.
        _retry: Option<ActiveRequest>,
        // The destination's connection slot (maxConnections), held until the exchange is over.
        _connection: Option<tokio::sync::OwnedSemaphorePermit>,
        // For gRPC streams: the breaker learns the outcome from the trailers.
        grpc: Option<GrpcOutcome>,
    }
}

/// The route's `timeouts.idle` on one response body, and the counter it bumps when it fires.
struct IdleTimer {
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    fired: prometheus::IntCounter,
}

/// The response body went quiet for longer than the route's `timeouts.idle`.
#[derive(Debug)]
pub struct IdleTimeout(Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "no data from the upstream for {:?} (timeouts.idle)", self.0)
    }
}

impl std::error::Error for IdleTimeout {}

impl Body for GuardedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        match this.inner.poll_frame(cx) {
            Poll::Ready(frame) => {
                if let Some(idle) = this.idle.as_mut() {
                    idle.sleep.as_mut().reset(tokio::time::Instant::now() + idle.limit);
                }
                match &frame {
                    Some(Ok(f)) if f.is_trailers() => {
                        let status = f.trailers_ref().and_then(headers::grpc_status);
                        if let Some(grpc) = this.grpc.take() {
                            grpc.finish(status);
                        }
                    }
                    Some(Ok(_)) => {}
                    // Ended or broken without trailers: no status is a failure.
                    None | Some(Err(_)) => {
                        if let Some(grpc) = this.grpc.take() {
                            grpc.finish(None);
                        }
                    }
                }
                Poll::Ready(frame)
            }
            Poll::Pending => {
                if let Some(idle) = this.idle.as_mut()
                    && idle.sleep.as_mut().poll(cx).is_ready()
                {
                    idle.fired.inc();
                    return Poll::Ready(Some(Err(Box::new(IdleTimeout(idle.limit)))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::upstream::h1::wire;

    fn upstream_lines(head: &str) -> FieldLines {
        wire::parse_response_head(&mut BytesMut::from(head), None).unwrap().unwrap().fields
    }

    #[test]
    fn the_added_fields_replace_the_upstreams_and_name_any_number_of_attempts() {
        for n in [1, 2, 4, 5, 12] {
            let upstream = upstream_lines("HTTP/1.1 200 OK\r\nServer: up\r\nX-Request-Id: upstream's\r\n\r\n");
            let fields = ResponseFields::new(upstream, HeaderValue::from_static("id"), n);
            let mut written = Vec::new();
            fields.for_each(|name, value| written.push(format!("{name}: {}", String::from_utf8_lossy(value))));
            assert_eq!(written, ["x-request-id: id".to_string(), format!("{ATTEMPTS_HEADER}: {n}")]);
            assert!(fields.replace(b"X-Datum-Router-Attempts") && fields.replace(b"X-Request-Id") && !fields.replace(b"server"));
            assert_eq!(fields.upstream().len(), 2);
        }
        let local = ResponseFields::new(FieldLines::default(), HeaderValue::from_static("id"), 0);
        assert!(!local.replace(ATTEMPTS_HEADER.as_bytes()), "no attempts, no attempts field");
    }
}
