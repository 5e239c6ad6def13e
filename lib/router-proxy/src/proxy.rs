//! The per-request handler: route, filter, split, pick, forward, stream back.

use std::{
    convert::Infallible,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
    time::{Duration, Instant, SystemTime},
};

use bytes::Bytes;
use http::{
    HeaderValue, Request, Response, StatusCode, Uri, Version, header,
    uri::{Authority, PathAndQuery, Scheme},
};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full, Limited, combinators::BoxBody};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use opentelemetry::KeyValue;
use router_core::{
    EndpointState, RequestView,
    balance::{ActiveRequest, EndpointPicker, PendingOverflow, PickContext, hash_key},
    breaker::BreakerStatus,
    endpoint::InFlightGuard,
    normalize_host,
    retry::{self, AttemptFailure},
    route_table::RouteRule,
    snapshot::{DestinationTarget, RoutePolicy, ServiceTarget},
};

use crate::{
    config::SnapshotCell,
    egress::is_proxy_request,
    error::{ERROR_HEADER, ProxyError},
    http::{
        filters,
        headers::{self, ClientInfo, Entry},
    },
    mirror::RequestBody,
    telemetry::{AccessLog, AccessRecord, Metrics, method_label, millis, spans::SpanExport, status_class, trace::TraceContext},
    tls,
    upstream::{UpstreamClient, Upstreams},
};

/// The body of every response the gateway sends.
pub type ProxyBody = BoxBody<Bytes, BoxError>;

/// Errors of streamed bodies: the upstream's, or the idle timeout's.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The response header with the number of upstream attempts made.
pub const ATTEMPTS_HEADER: &str = "x-datum-router-attempts";

/// Shared state of the request path.
pub struct Gateway {
    pub cell: Arc<SnapshotCell>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    /// Span export over OTLP, when configured.
    pub spans: Option<Arc<SpanExport>>,
}

/// What the access log and metrics need about the outcome.
#[derive(Default)]
pub(crate) struct Outcome {
    pub(crate) route: Option<Arc<str>>,
    pub(crate) service: Option<Arc<str>>,
    pub(crate) upstream: Option<SocketAddr>,
    pub(crate) error: Option<ProxyError>,
    pub(crate) upstream_elapsed: Option<Duration>,
}

impl Outcome {
    pub(crate) fn fail(&mut self, e: ProxyError) -> Response<ProxyBody> {
        self.error = Some(e);
        error_response(e)
    }
}

fn local_response(status: StatusCode, body: &'static str) -> Response<ProxyBody> {
    let mut r = Response::new(Full::new(Bytes::from_static(body.as_bytes())).map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

fn error_response(e: ProxyError) -> Response<ProxyBody> {
    let mut r = local_response(e.status(), e.label());
    r.headers_mut().insert(ERROR_HEADER, HeaderValue::from_static(e.label()));
    r
}

pub(crate) fn empty_response(status: StatusCode) -> Response<ProxyBody> {
    let mut r = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *r.status_mut() = status;
    r
}

/// The request's host, lower-cased without port. It is held as a shared clone of the
/// URI authority (HTTP/2, absolute-form) or Host header it came from, plus the host's
/// length in it; only an unusual host (upper case, IPv6, trailing dot) is copied.
enum RequestHost {
    Authority(Authority, usize),
    Header(HeaderValue, usize),
    Normalized(String),
}

impl RequestHost {
    fn of<B>(req: &Request<B>) -> Option<Self> {
        let (text, source) = match req.uri().authority() {
            Some(a) => (a.as_str(), None),
            None => {
                let h = req.headers().get(header::HOST)?;
                (h.to_str().ok()?, Some(h))
            }
        };
        let without_port = match text.rsplit_once(':') {
            Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => text,
        };
        if without_port.bytes().any(|b| b == b':' || b == b'[' || b.is_ascii_uppercase()) || without_port.ends_with('.') {
            return Some(Self::Normalized(normalize_host(text)));
        }
        let len = without_port.len();
        Some(match (source, req.uri().authority()) {
            (Some(h), _) => Self::Header(h.clone(), len),
            (None, Some(a)) => Self::Authority(a.clone(), len),
            (None, None) => Self::Normalized(without_port.to_owned()),
        })
    }

    fn as_str(&self) -> &str {
        match self {
            Self::Authority(a, len) => &a.as_str()[..*len],
            // Checked visible ASCII when this was built.
            Self::Header(h, len) => h.to_str().map_or("", |s| &s[..*len]),
            Self::Normalized(s) => s,
        }
    }
}

impl Gateway {
    /// Serves one request. Never fails: every problem becomes a response.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, client: Arc<ClientInfo>) -> Result<Response<ProxyBody>, Infallible> {
        let start = Instant::now();
        self.metrics.in_flight.inc();
        let method = req.method().clone();
        let logged = self.access_log.enabled().then(|| (req.uri().path().to_owned(), req.version()));
        let caller = req.headers().get(&headers::TRACEPARENT).and_then(|v| v.to_str().ok()).and_then(TraceContext::parse);
        let span = self.spans.as_ref().map(|s| s.start(caller.as_ref(), method.as_str().to_owned(), SystemTime::now()));
        let (trace, traceparent) = match &span {
            Some(span) => span.upstream(),
            None => {
                let trace = caller.unwrap_or_else(TraceContext::start);
                let header = trace.child_header();
                (trace, header)
            }
        };
        let request_id = match req.headers().get(&headers::X_REQUEST_ID).filter(|v| !v.is_empty() && v.len() <= 128) {
            Some(id) => id.clone(),
            None => HeaderValue::from_str(&trace.trace_id_hex()).expect("hex is a valid header value"),
        };
        let request_size = content_length(req.headers());
        // HTTP/1.0 may omit Host (HTTP/1.1 may not: 400): the TLS server name stands in, else no host,
        // which only routes without hostnames match.
        let host = RequestHost::of(&req)
            .or_else(|| (req.version() == Version::HTTP_10).then(|| RequestHost::Normalized(client.sni.clone().unwrap_or_default())));

        let mut outcome = Outcome::default();
        let mut response = match &host {
            None => outcome.fail(ProxyError::BadRequest),
            Some(_) if is_proxy_request(&req) => {
                let snapshot = self.cell.load();
                let policy = snapshot.egress.policy_for(client.addr.ip());
                if policy.is_some() || req.method() == http::Method::CONNECT {
                    self.egress(req, policy, &mut outcome).await
                } else {
                    // An absolute-form request from outside any governed VPC is an ordinary request.
                    let host = host.as_ref().map_or("", RequestHost::as_str);
                    self.route_and_forward(req, &client, host, &traceparent, &request_id, &mut outcome).await
                }
            }
            Some(host) => self.route_and_forward(req, &client, host.as_str(), &traceparent, &request_id, &mut outcome).await,
        };
        response.headers_mut().insert(headers::X_REQUEST_ID.clone(), request_id.clone());

        let status = response.status().as_u16();
        let class = status_class(status);
        let route_label = outcome.route.as_deref().unwrap_or("none");
        let service_label = outcome.service.as_deref().unwrap_or("none");
        self.metrics.requests.with_label_values(&[route_label, service_label, method_label(&method), class]).inc();
        self.metrics.duration.with_label_values(&[route_label, class]).observe(start.elapsed().as_secs_f64());
        if let Some(n) = request_size {
            self.metrics.request_size.with_label_values(&[route_label]).observe(n as f64);
        }
        if let Some(n) = content_length(response.headers()) {
            self.metrics.response_size.with_label_values(&[route_label]).observe(n as f64);
        }
        if let Some(e) = outcome.error
            && matches!(
                e,
                ProxyError::UpstreamConnect | ProxyError::UpstreamProtocol | ProxyError::UpstreamTimeout | ProxyError::UpstreamTls
            )
        {
            self.metrics.upstream_errors.with_label_values(&[service_label, e.label()]).inc();
        }
        self.metrics.in_flight.dec();
        if let Some(span) = span {
            let mut attributes = vec![
                KeyValue::new("http.request.method", method.as_str().to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
                KeyValue::new("http.route", route_label.to_owned()),
                KeyValue::new("datum.router.service", service_label.to_owned()),
            ];
            if let Some(upstream) = outcome.upstream {
                attributes.push(KeyValue::new("server.address", upstream.ip().to_string()));
                attributes.push(KeyValue::new("server.port", i64::from(upstream.port())));
            }
            span.finish(format!("{} {route_label}", method.as_str()), attributes, outcome.error.map(ProxyError::label), SystemTime::now());
        }
        if let Some((path, version)) = logged {
            self.access_log.write(&AccessRecord {
                client: client.addr,
                method: method.as_str(),
                host: host.as_ref().map_or("", RequestHost::as_str),
                path: &path,
                protocol: match version {
                    Version::HTTP_2 => "HTTP/2",
                    Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                },
                status,
                route: route_label,
                upstream: outcome.upstream,
                error: outcome.error.map(ProxyError::label),
                duration_ms: millis(start.elapsed()),
                upstream_ms: outcome.upstream_elapsed.map(millis),
                trace_id: &trace.trace_id_hex(),
                request_id: request_id.to_str().unwrap_or_default(),
            });
        }
        Ok(response)
    }

    async fn route_and_forward(
        &self,
        mut req: Request<Incoming>,
        client: &ClientInfo,
        host: &str,
        traceparent: &[u8; 55],
        request_id: &HeaderValue,
        outcome: &mut Outcome,
    ) -> Response<ProxyBody> {
        let snapshot = self.cell.load();
        // Routing may match on the verified client identity, so it is settled before the lookup.
        headers::set_client_identity(req.headers_mut(), client);
        let table = match &client.entry {
            Entry::Internal => &snapshot.routes,
            Entry::Ingress { port, tls_listener } => {
                let Some(listener) = snapshot.ingress.ports.get(port).and_then(|p| p.select(Some(host))) else {
                    return outcome.fail(ProxyError::NoRoute);
                };
                // A connection belongs to the listener its SNI chose (its certificate, its client
                // validation): a request for another listener's host, as HTTP/2 coalescing sends, is misdirected.
                if tls_listener.as_ref().is_some_and(|sni| *sni != listener.label) {
                    return outcome.fail(ProxyError::Misdirected);
                }
                &listener.routes
            }
        };
        let rule = {
            let view = RequestView { host, path: req.uri().path(), query: req.uri().query(), method: req.method(), headers: req.headers() };
            match table.lookup(&view) {
                Some(rule) => rule.clone(),
                None => return outcome.fail(ProxyError::NoRoute),
            }
        };
        let policy: &RoutePolicy = &rule.action;
        outcome.route = Some(policy.label.clone());

        let origin = req.headers().get(header::ORIGIN).and_then(|o| o.to_str().ok()).map(str::to_owned);
        if let Some(cors) = &policy.cors
            && filters::is_preflight(req.method(), req.headers())
        {
            let mut r = empty_response(StatusCode::NO_CONTENT);
            *r.headers_mut() = filters::preflight_headers(cors, req.headers());
            return r;
        }
        if let Some(redirect) = &policy.redirect {
            let port = req.uri().port_u16().or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| h.rsplit_once(':'))
                    .and_then(|(_, p)| p.parse().ok())
            });
            let (status, location) =
                filters::redirect_location(redirect, client.scheme, host, port, (req.uri().path(), req.uri().query()), &rule.path);
            let mut r = empty_response(status);
            if let Ok(v) = HeaderValue::from_str(&location) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            return r;
        }

        let Some(index) = policy.split.pick() else {
            return outcome.fail(ProxyError::NoWeightedDestination);
        };
        let (service, picker) = match &policy.destinations[index] {
            DestinationTarget::Resolved { service, picker } => (service, picker),
            DestinationTarget::Unresolved { label, .. } => {
                outcome.service = Some(label.clone());
                return outcome.fail(ProxyError::DestinationUnresolved);
            }
        };
        outcome.service = Some(service.label.clone());
        let ctx = PickContext {
            source_ip: Some(client.addr.ip()),
            hash_key: policy.hash_on.as_ref().and_then(|h| {
                if let Some(name) = &h.header {
                    req.headers().get(name.as_str()).map(|v| hash_key(v.as_bytes()))
                } else if let Some(name) = &h.cookie {
                    cookie(req.headers(), name).map(|v| hash_key(v.as_bytes()))
                } else {
                    None
                }
            }),
        };
        let Some(active) = picker.start_request() else {
            return outcome.fail(ProxyError::UpstreamOverflow);
        };
        // The request timeout covers everything from here: waiting for a connection slot and every attempt.
        let deadline = policy.timeouts.request.map(|d| tokio::time::Instant::now() + d);
        // maxConnections: wait for a connection slot (within the deadline), or overflow. Destinations
        // without the limit (most) skip this entirely: no future, no timer.
        let connection = if picker.limits_connections() {
            let slot = match deadline {
                Some(at) => tokio::time::timeout_at(at, picker.connection_slot()).await,
                None => Ok(picker.connection_slot().await),
            };
            match slot {
                Ok(Ok(connection)) => connection,
                Ok(Err(PendingOverflow)) => return outcome.fail(ProxyError::UpstreamOverflow),
                Err(_) => {
                    self.metrics.timeouts.with_label_values(&[&*policy.label, "pending"]).inc();
                    return outcome.fail(ProxyError::UpstreamTimeout);
                }
            }
        } else {
            None
        };
        let Some(endpoint) = picker.pick(&ctx) else {
            return outcome.fail(ProxyError::NoHealthyUpstream);
        };
        let mut endpoint = endpoint.clone();
        let (upstream, scheme) = match self.upstream_client(service) {
            Ok(u) => u,
            Err(e) => return outcome.fail(e),
        };
        let is_h1 = upstream_is_http1(service.protocol);
        // WebSocket and other HTTP/1.1 upgrades pass through to HTTP/1.1 upstreams.
        let upgrade = (is_h1 && is_upgrade_request(&req)).then(|| {
            let protocol = req.headers().get(header::UPGRADE).cloned();
            (hyper::upgrade::on(&mut req), protocol)
        });

        // Build the upstream request head once, reusing what is not rewritten.
        let (mut parts, body) = req.into_parts();
        let path_and_query = match policy.url_rewrite.as_ref().and_then(|rw| filters::rewrite_path(parts.uri.path(), &rule.path, rw)) {
            Some(path) => {
                let joined = match parts.uri.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                match PathAndQuery::try_from(joined) {
                    Ok(pq) => pq,
                    Err(_) => return outcome.fail(ProxyError::BadRequest),
                }
            }
            None => parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/")),
        };
        headers::strip_hop_by_hop(&mut parts.headers);
        headers::set_forwarded(&mut parts.headers, client, client.scheme, host);
        if let Some(m) = &policy.request_headers {
            headers::apply_modifier(&mut parts.headers, m);
        }
        parts.headers.insert(headers::X_REQUEST_ID.clone(), request_id.clone());
        if let Ok(v) = HeaderValue::from_bytes(traceparent) {
            parts.headers.insert(headers::TRACEPARENT.clone(), v);
        }
        let version = if is_h1 { Version::HTTP_11 } else { Version::HTTP_2 };
        // The logical host travels in Host for HTTP/1.1 and HTTP/2 upstreams alike; an
        // HTTP/1.1 client's own Host header is kept as it came unless the route rewrites it.
        if let Some(rewritten) = policy.url_rewrite.as_ref().and_then(|rw| rw.hostname.as_deref()) {
            if let Ok(v) = HeaderValue::from_str(rewritten) {
                parts.headers.insert(header::HOST, v);
            }
        } else if !parts.headers.contains_key(header::HOST)
            && let Ok(v) = HeaderValue::from_str(host)
        {
            parts.headers.insert(header::HOST, v);
        }
        if let Some((_, Some(protocol))) = &upgrade {
            parts.headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            parts.headers.insert(header::UPGRADE, protocol.clone());
        }

        // A request can be retried only if its body can be sent again: buffered up to a bound.
        let retry = policy.retries.as_ref().filter(|r| r.max_retries > 0 && upgrade.is_none());
        let body = match retry {
            Some(_) if body.is_end_stream() => RequestBody::Replay(Some(Bytes::new())),
            Some(_) if content_length(&parts.headers).is_some_and(|n| n <= RETRY_BUFFER_BYTES) => {
                match Limited::new(body, RETRY_BUFFER_BYTES as usize).collect().await {
                    Ok(collected) => RequestBody::Replay(Some(collected.to_bytes())),
                    Err(_) => return outcome.fail(ProxyError::BadRequest),
                }
            }
            _ => RequestBody::Direct(body),
        };
        let mut body = match &policy.mirror {
            Some((target, percent)) => self.mirror(target, *percent, &parts, body),
            None => body,
        };
        let replay = body.replayable();
        let max_attempts = match (retry, &replay) {
            (Some(r), Some(_)) => 1 + u32::try_from(r.max_retries).unwrap_or(0),
            _ => 1,
        };
        let idempotent = retry::is_idempotent(&parts.method);
        if let Some(budget) = &policy.retry_budget {
            budget.record_request(std::time::Instant::now());
        }
        let mut tried: Vec<SocketAddr> = Vec::new();
        let mut attempt = 0u32;
        // Held while a retry is in flight: counts against the destination's maxRetries.
        let mut retry_slot = None;
        let (response, guard, grpc_stream) = loop {
            attempt += 1;
            outcome.upstream = Some(endpoint.addr);
            let remaining = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            if remaining == Some(Duration::ZERO) {
                self.metrics.timeouts.with_label_values(&[&*policy.label, "request"]).inc();
                return with_attempts(outcome.fail(ProxyError::UpstreamTimeout), attempt - 1);
            }
            let per_try = match (policy.timeouts.per_try, remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let Ok(uri) =
                Uri::builder().scheme(scheme.clone()).authority(endpoint.authority.clone()).path_and_query(path_and_query.clone()).build()
            else {
                return outcome.fail(ProxyError::BadRequest);
            };
            let this_body = match &replay {
                Some(bytes) => RequestBody::Replay(Some(bytes.clone())),
                None => std::mem::replace(&mut body, RequestBody::Replay(None)),
            };
            let mut req = Request::new(this_body);
            *req.method_mut() = parts.method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            *req.headers_mut() = if attempt == max_attempts { std::mem::take(&mut parts.headers) } else { parts.headers.clone() };

            let guard = endpoint.start_request();
            let sent = Instant::now();
            let result = send_attempt(&upstream, req, per_try).await;
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
            let failure = match &result {
                Ok(r) => Some(AttemptFailure::Status(effective_status(r))),
                Err(f) => Some(*f),
            };
            // A gRPC stream's outcome is in its trailers: the breaker hears about it when they arrive.
            let deferred = matches!(&result, Ok(r) if is_grpc_stream(r));
            if !deferred {
                let failed = match failure {
                    Some(AttemptFailure::Status(s)) => s >= 500,
                    Some(_) => true,
                    None => false,
                };
                record_breaker(&self.metrics, &policy.label, picker, &endpoint, failed);
            }
            let retry_wanted = failure.is_some_and(|f| retry.is_some_and(|r| retry::retryable(r, f, idempotent))) && attempt < max_attempts;
            if retry_wanted {
                let label = failure.map_or("", AttemptFailure::label);
                // maxRetries first: a retry refused for concurrency should not spend budget.
                let slot = picker.start_retry();
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
                        if let Some(d) = deadline {
                            wait = wait.min(d.saturating_duration_since(tokio::time::Instant::now()));
                        }
                        tokio::time::sleep(wait).await;
                    }
                    // A different endpoint when there is one.
                    let next = (0..picker.endpoints().len().max(1))
                        .filter_map(|_| picker.pick(&ctx))
                        .find(|e| !tried.contains(&e.addr))
                        .or_else(|| picker.pick(&ctx));
                    if let Some(next) = next {
                        endpoint = next.clone();
                    }
                    continue;
                } else {
                    self.metrics.retries.with_label_values(&[&*policy.label, label, "budget-exhausted"]).inc();
                }
            }
            match result {
                Ok(r) => break (r, guard, deferred),
                Err(f) => {
                    let kind = match f {
                        AttemptFailure::Connect | AttemptFailure::ConnectTimeout => ProxyError::UpstreamConnect,
                        AttemptFailure::Tls => ProxyError::UpstreamTls,
                        AttemptFailure::Timeout => ProxyError::UpstreamTimeout,
                        AttemptFailure::Reset | AttemptFailure::Status(_) => ProxyError::UpstreamProtocol,
                    };
                    return with_attempts(outcome.fail(kind), attempt);
                }
            }
        };
        let mut response = response;
        if let Some((client_upgrade, _)) = upgrade
            && response.status() == StatusCode::SWITCHING_PROTOCOLS
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                let _held = (guard, connection);
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((c, u)) => {
                        let _ = tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u)).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgrade failed"),
                }
            });
            let (parts, _) = response.into_parts();
            return Response::from_parts(parts, Empty::new().map_err(|never| match never {}).boxed());
        }
        let grpc = grpc_stream.then(|| GrpcOutcome {
            rule: rule.clone(),
            destination: index,
            endpoint: endpoint.clone(),
            metrics: self.metrics.clone(),
        });
        let (mut parts, body) = response.into_parts();
        headers::strip_hop_by_hop(&mut parts.headers);
        if let Some(m) = &policy.response_headers {
            headers::apply_modifier(&mut parts.headers, m);
        }
        if let (Some(cors), Some(origin)) = (&policy.cors, origin.as_deref())
            && let Some(origin) = filters::allowed_origin(cors, origin)
        {
            filters::add_origin_headers(cors, origin, &mut parts.headers);
        }
        let idle = policy.timeouts.idle.map(|d| IdleTimer {
            limit: d,
            sleep: Box::pin(tokio::time::sleep(d)),
            fired: self.metrics.timeouts.with_label_values(&[&*policy.label, "idle"]),
        });
        with_attempts(
            Response::from_parts(
                parts,
                GuardedBody { inner: body, idle, _guard: guard, _active: active, _retry: retry_slot, _connection: connection, grpc }
                    .boxed(),
            ),
            attempt,
        )
    }
}

/// Feeds one outcome to the endpoint's breaker (routes with circuitBreaker), with metrics and a log line on a transition.
fn record_breaker(metrics: &Metrics, route: &str, picker: &EndpointPicker, endpoint: &EndpointState, failed: bool) {
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

/// A gRPC response whose status will come in trailers (not a trailers-only answer).
fn is_grpc_stream(r: &Response<Incoming>) -> bool {
    !r.body().is_end_stream()
        && !r.headers().contains_key("grpc-status")
        && r.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
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

impl Gateway {
    /// The client and URI scheme for a service's endpoints: its own TLS client
    /// when it wants TLS (502 upstream-tls-error when that could not be built).
    pub(crate) fn upstream_client(&self, service: &ServiceTarget) -> Result<(UpstreamClient, Scheme), ProxyError> {
        if !tls::wants_tls(service) {
            return Ok((self.upstreams.client(service.protocol, service.vrf_device.as_deref()), Scheme::HTTP));
        }
        match self.cell.tls().upstream.get(&service.key) {
            Some(Ok(clients)) => Ok((clients.client.clone(), Scheme::HTTPS)),
            _ => Err(ProxyError::UpstreamTls),
        }
    }
}

/// The largest request body buffered so that it can be sent again on retry;
/// larger (or unknown-length) bodies stream and are not retried.
pub const RETRY_BUFFER_BYTES: u64 = 64 * 1024;

/// One upstream attempt, classified for retrying.
async fn send_attempt(
    client: &UpstreamClient,
    req: Request<RequestBody>,
    timeout: Option<Duration>,
) -> Result<Response<Incoming>, AttemptFailure> {
    let fut = client.request(req);
    let result = match timeout {
        Some(t) => tokio::time::timeout(t, fut).await.map_err(|_| AttemptFailure::Timeout)?,
        None => fut.await,
    };
    result.map_err(|e| {
        tracing::debug!(error = %e, "upstream attempt failed");
        if is_tls_failure(&e) {
            AttemptFailure::Tls
        } else if e.is_connect() && is_timeout(&e) {
            AttemptFailure::ConnectTimeout
        } else if e.is_connect() {
            AttemptFailure::Connect
        } else {
            AttemptFailure::Reset
        }
    })
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

/// Whether a connect error is the connect timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    any_cause(e, &|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut))
}

/// The status a response counts as for retrying: its HTTP status, or for a
/// gRPC trailers-only error the HTTP status gRPC maps its code to
/// (UNAVAILABLE → 503, DEADLINE_EXCEEDED → 504, INTERNAL → 500).
fn effective_status(r: &Response<Incoming>) -> u16 {
    let grpc = r.headers().get("grpc-status").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u8>().ok());
    match grpc {
        Some(14) => 503,
        Some(4) => 504,
        Some(13) => 500,
        _ => r.status().as_u16(),
    }
}

fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && req
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("upgrade")))
}

pub(crate) fn upstream_is_http1(protocol: router_api::v1alpha1::ServiceProtocol) -> bool {
    matches!(protocol, router_api::v1alpha1::ServiceProtocol::Http | router_api::v1alpha1::ServiceProtocol::Https)
}

fn with_attempts(mut r: Response<ProxyBody>, attempts: u32) -> Response<ProxyBody> {
    r.headers_mut().insert(ATTEMPTS_HEADER, HeaderValue::from(attempts));
    r
}

fn content_length(h: &http::HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

fn cookie<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

pin_project_lite::pin_project! {
    /// An upstream response body that keeps the endpoint's in-flight count
    /// raised until the body is finished or dropped.
    struct GuardedBody {
        #[pin]
        inner: Incoming,
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
                        let status = f.trailers_ref().and_then(|t| t.get("grpc-status")).and_then(|v| v.to_str().ok()?.parse().ok());
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
                Poll::Ready(frame.map(|f| f.map_err(BoxError::from)))
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
