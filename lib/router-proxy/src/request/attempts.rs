//! Stage 4, attempts: the request goes to the chosen endpoint, and again —
//! to a different endpoint when there is one — while the route's `retries`
//! allow it, its retry budget has room and the destination's `maxRetries`
//! is not reached.
//!
//! Each attempt is classified the way retry conditions are written
//! (connect failure, reset, timeout, status; a gRPC trailers-only error
//! counts as the HTTP status gRPC maps it to) and feeds the endpoint's
//! circuit breaker, except gRPC streams, whose outcome is in trailers the
//! response stage reports. Timeouts: each attempt gets `timeouts.perTry` or
//! what is left of `timeouts.request`, whichever is shorter, and the metric
//! names the one that fired.

use std::{net::SocketAddr, time::Duration};

use http::Response;
use http_body::Body;
use router_api::v1alpha1::ServiceProtocol;
use router_core::{
    EndpointState,
    balance::{ActiveRequest, EndpointPicker},
    breaker::BreakerStatus,
    endpoint::InFlightGuard,
    retry::{self, AttemptFailure},
    snapshot::RoutePolicy,
};

use super::{Gateway, destination::Destination, forward::UpstreamRequest};
use crate::{
    error::ProxyError,
    http::{field_lines::FieldLines, headers},
    outcome::Outcome,
    telemetry::Metrics,
    upstream::{Attempt, ClientBodyError, RequestBody, UpstreamBody, UpstreamClient, UpstreamError},
};

/// The response of the attempt that answered, and what stays held until its body is done.
pub(super) struct Answered {
    pub response: Response<UpstreamBody>,
    /// Its fields as the gateway's HTTP/1.1 client read them, when not in its map.
    pub lines: FieldLines,
    pub guard: InFlightGuard,
    /// A retry's maxRetries slot.
    pub retry_slot: Option<ActiveRequest>,
    /// A gRPC stream: its outcome for the breaker comes with the trailers.
    pub grpc_stream: bool,
    pub attempts: u32,
}

/// How the attempts failed: the error and how many were made.
pub(super) struct Failed {
    pub error: ProxyError,
    pub attempts: u32,
}

impl Gateway {
    pub(super) async fn attempts(
        &self,
        policy: &RoutePolicy,
        dest: &mut Destination<'_>,
        // Borrowed, not taken: a future holds what it takes twice over (as its
        // argument and as its local), 944 bytes here, copied in at its first poll.
        request: &mut UpstreamRequest<'_>,
        outcome: &mut Outcome,
    ) -> Result<Answered, Failed> {
        let retry = policy.retries.as_ref().filter(|r| r.max_retries > 0);
        // Only a buffered body can be sent again (never an upgrade's: it streams).
        let replay = request.body.replayable();
        let max_attempts = match (retry, &replay) {
            (Some(r), Some(_)) => 1 + u32::try_from(r.max_retries).unwrap_or(0),
            _ => 1,
        };
        let idempotent = retry::is_idempotent(&request.method);
        let grpc_possible = may_carry_grpc(dest.service.protocol);
        if let Some(budget) = &policy.retry_budget {
            budget.record_request(std::time::Instant::now());
        }
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut attempt = 0u32;
        // Held while a retry is in flight: counts against the destination's maxRetries.
        let mut retry_slot = None;
        loop {
            attempt += 1;
            let endpoint = dest.endpoint.clone();
            outcome.upstream = Some(endpoint.addr);
            let remaining = dest.deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            if remaining == Some(Duration::ZERO) {
                self.metrics.timeouts.with_label_values(&[&*policy.label, "request"]).inc();
                return Err(Failed { error: ProxyError::UpstreamTimeout, attempts: attempt - 1 });
            }
            let per_try = match (policy.timeouts.per_try, remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let body = match &replay {
                Some(bytes) => RequestBody::Replay(Some(bytes.clone())),
                None => std::mem::replace(&mut request.body, RequestBody::Replay(None)),
            };
            let attempt_of = Attempt {
                method: &request.method,
                scheme: &dest.scheme,
                authority: &endpoint.authority,
                path_and_query: &request.path_and_query,
                version: request.version,
                headers: &mut request.headers,
                added: &request.added,
                last: attempt == max_attempts,
            };

            let guard = endpoint.start_request();
            let sent = std::time::Instant::now();
            let mut result = send(&dest.client, attempt_of, body, per_try).await;
            outcome.upstream_elapsed = Some(sent.elapsed());
            let timed_out = match result {
                // Whichever was shorter fired: the per-try timeout, or what was left of the request deadline.
                Err(AttemptFailure::Timeout) if policy.timeouts.per_try.is_some_and(|p| remaining.is_none_or(|r| p < r)) => Some("per-try"),
                Err(AttemptFailure::Timeout) => Some("request"),
                Err(AttemptFailure::ConnectTimeout) => Some("connect"),
                _ => None,
            };
            if let Some(kind) = timed_out {
                self.metrics.timeouts.with_label_values(&[&*policy.label, kind]).inc();
            }
            let (failure, grpc_stream) = match &mut result {
                Ok((r, lines)) => {
                    if grpc_possible {
                        // gRPC's fields are looked for in the map (hyper's clients, which carry it, leave no lines).
                        lines.move_into(r.headers_mut());
                    }
                    let (status, grpc_stream) = response_status(r, grpc_possible);
                    (AttemptFailure::Status(status), grpc_stream)
                }
                Err(f) => (*f, false),
            };
            if !grpc_stream {
                let failed = match failure {
                    AttemptFailure::Status(s) => s >= 500,
                    _ => true,
                };
                record_breaker(&self.metrics, &policy.label, dest.picker, &endpoint, failed);
            }
            let retry_wanted = retry.is_some_and(|r| retry::retryable(r, failure, idempotent)) && attempt < max_attempts;
            if retry_wanted {
                let label = failure.label();
                // maxRetries first: a retry refused for concurrency should not spend budget.
                let slot = dest.picker.start_retry();
                let budget_ok = slot.is_some() && policy.retry_budget.as_ref().is_none_or(|b| b.try_retry(std::time::Instant::now()));
                if slot.is_none() {
                    self.metrics.retries.with_label_values(&[&*policy.label, label, "overflow"]).inc();
                } else if budget_ok {
                    retry_slot = slot;
                    self.metrics.retries.with_label_values(&[&*policy.label, label, "retried"]).inc();
                    drop((result, guard));
                    tried.push(endpoint.addr);
                    if let Some(b) = retry.and_then(|r| r.backoff.as_ref()) {
                        let mut wait = retry::backoff(b.base.into(), b.max.into(), attempt - 1);
                        if let Some(d) = dest.deadline {
                            wait = wait.min(d.saturating_duration_since(tokio::time::Instant::now()));
                        }
                        tokio::time::sleep(wait).await;
                    }
                    // A different endpoint when there is one.
                    let next = (0..dest.picker.endpoints().len().max(1))
                        .filter_map(|_| dest.picker.pick(&dest.ctx))
                        .find(|e| !tried.contains(&e.addr))
                        .or_else(|| dest.picker.pick(&dest.ctx));
                    if let Some(next) = next {
                        dest.endpoint = next.clone();
                    }
                    continue;
                } else {
                    self.metrics.retries.with_label_values(&[&*policy.label, label, "budget-exhausted"]).inc();
                }
            }
            return match result {
                Ok((response, lines)) => Ok(Answered { response, lines, guard, retry_slot, grpc_stream, attempts: attempt }),
                Err(f) => {
                    let error = match f {
                        AttemptFailure::Connect | AttemptFailure::ConnectTimeout => ProxyError::UpstreamConnect,
                        AttemptFailure::Tls => ProxyError::UpstreamTls,
                        AttemptFailure::Timeout => ProxyError::UpstreamTimeout,
                        AttemptFailure::Reset | AttemptFailure::Status(_) => ProxyError::UpstreamProtocol,
                        AttemptFailure::ClientBody => ProxyError::ClientBody,
                        AttemptFailure::ClientBodyTimeout => ProxyError::ClientBodyTimeout,
                    };
                    Err(Failed { error, attempts: attempt })
                }
            };
        }
    }
}

/// Feeds one outcome to the endpoint's breaker (routes with circuitBreaker), with metrics and a log line on a transition.
pub(super) fn record_breaker(metrics: &Metrics, route: &str, picker: &EndpointPicker, endpoint: &EndpointState, failed: bool) {
    let Some(cfg) = picker.breaker() else { return };
    let now = std::time::Instant::now();
    if let Some(state) = endpoint.breaker.record(!failed, now, cfg, picker.may_eject(now)) {
        metrics.breaker_transitions.with_label_values(&[route, state.as_str()]).inc();
        let endpoint_label = endpoint.addr.to_string();
        for s in [BreakerStatus::Open, BreakerStatus::Closed] {
            metrics.breaker_state.with_label_values(&[route, &endpoint_label, s.as_str()]).set(i64::from(s == state));
        }
        tracing::warn!(route, endpoint = %endpoint.addr, state = state.as_str(), "circuit breaker");
    }
}

/// One upstream attempt, classified for retrying.
async fn send(
    client: &UpstreamClient,
    attempt: Attempt<'_>,
    body: RequestBody,
    timeout: Option<Duration>,
) -> Result<(Response<UpstreamBody>, FieldLines), AttemptFailure> {
    let fut = client.attempt(attempt, body);
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| AttemptFailure::Timeout)?,
        None => fut.await,
    };
    result.map_err(|e| {
        tracing::debug!(error = %e, "upstream attempt failed");
        classify(&e)
    })
}

fn classify(e: &UpstreamError) -> AttemptFailure {
    if !e.is_connect()
        && let Some(body) = client_body_failure(e)
    {
        body
    } else if is_tls_failure(e) {
        AttemptFailure::Tls
    } else if e.is_connect() && is_timeout(e) {
        AttemptFailure::ConnectTimeout
    } else if e.is_connect() {
        AttemptFailure::Connect
    } else {
        AttemptFailure::Reset
    }
}

/// Whether `matches` holds for `e` or any of its causes. io::Error needs its
/// own step: its `source()` skips the error it wraps.
fn any_cause(e: &(dyn std::error::Error + 'static), matches: &dyn Fn(&(dyn std::error::Error + 'static)) -> bool) -> bool {
    if matches(e) {
        return true;
    }
    if let Some(inner) = e.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref())
        && any_cause(inner, matches)
    {
        return true;
    }
    e.source().is_some_and(|c| any_cause(c, matches))
}

/// Whether an upstream error came from TLS (a handshake, a certificate).
fn is_tls_failure(e: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(e, &|c| c.is::<rustls::Error>())
}

/// Whether the exchange failed because the body the gateway was sending (the
/// client's) failed, and how: hyper reports it as an error caused by the
/// body's own error. Other failures (a connection task gone, say) have no
/// such cause and stay the upstream's.
fn client_body_failure(e: &(dyn std::error::Error + 'static)) -> Option<AttemptFailure> {
    if any_cause(e, &|c| matches!(c.downcast_ref(), Some(ClientBodyError::Timeout))) {
        Some(AttemptFailure::ClientBodyTimeout)
    } else if any_cause(e, &|c| c.is::<ClientBodyError>()) {
        Some(AttemptFailure::ClientBody)
    } else {
        None
    }
}

/// Whether a connect error is the connect timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(e, &|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

/// gRPC needs HTTP/2: a cleartext HTTP/1.1 service's responses are not
/// looked at for it, an HTTPS one's are (ALPN may have settled on HTTP/2).
fn may_carry_grpc(protocol: ServiceProtocol) -> bool {
    protocol != ServiceProtocol::Http
}

/// How a response counts for retrying, and whether it is a gRPC stream
/// whose status will come in trailers (not a trailers-only answer). The
/// status is its HTTP status, or for a gRPC trailers-only error the HTTP
/// status gRPC maps its code to (UNAVAILABLE → 503, DEADLINE_EXCEEDED → 504,
/// INTERNAL → 500). Only a gRPC response (`grpc_possible`, and by its
/// content type) is looked at for `grpc-status`.
fn response_status<B: Body>(r: &Response<B>, grpc_possible: bool) -> (u16, bool) {
    let status = r.status().as_u16();
    if !grpc_possible || !headers::is_grpc(r.headers()) {
        return (status, false);
    }
    let Some(grpc) = r.headers().get(&headers::GRPC_STATUS) else {
        return (status, !r.body().is_end_stream());
    };
    let mapped = match headers::grpc_code(grpc) {
        Some(14) => 503,
        Some(4) => 504,
        Some(13) => 500,
        _ => status,
    };
    (mapped, false)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use http_body_util::{Empty, Full};

    use super::*;

    fn response<B>(status: u16, fields: &[(&str, &str)], body: B) -> Response<B> {
        let mut b = Response::builder().status(status);
        for (name, value) in fields {
            b = b.header(*name, *value);
        }
        b.body(body).unwrap()
    }

    #[test]
    fn a_grpc_status_counts_as_its_http_status_where_grpc_can_travel() {
        let grpc = [("content-type", "application/grpc")];
        let unavailable = response(200, &[grpc[0], ("grpc-status", "14")], Empty::<Bytes>::new());
        for protocol in [ServiceProtocol::Grpc, ServiceProtocol::Http2, ServiceProtocol::Https] {
            assert_eq!(response_status(&unavailable, may_carry_grpc(protocol)), (503, false), "{protocol:?}");
        }
        assert_eq!(
            response_status(&unavailable, may_carry_grpc(ServiceProtocol::Http)),
            (200, false),
            "cleartext HTTP/1.1 carries no gRPC"
        );
        for (code, status) in [("4", 504), ("13", 500), ("5", 200), ("0", 200)] {
            let r = response(200, &[grpc[0], ("grpc-status", code)], Empty::<Bytes>::new());
            assert_eq!(response_status(&r, true), (status, false), "grpc-status {code}");
        }
        let plain = response(200, &[("grpc-status", "14")], Empty::<Bytes>::new());
        assert_eq!(response_status(&plain, true), (200, false), "not a gRPC response: its grpc-status means nothing");
    }

    #[test]
    fn a_grpc_response_without_a_status_in_its_head_is_a_stream_until_its_trailers() {
        let stream = response(200, &[("content-type", "application/grpc+proto")], Full::new(Bytes::from_static(b"msg")));
        assert_eq!(response_status(&stream, true), (200, true));
        let ended = response(200, &[("content-type", "application/grpc")], Empty::<Bytes>::new());
        assert_eq!(response_status(&ended, true), (200, false), "no body to wait for");
    }
}
