//! What a request leaves behind once its response head is out: the request
//! metrics (by route, service, method and status class), upstream error
//! counts, the trace span (when spans are exported) and the access log line.
//! The request id and trace context are settled first, in [`Record::start`],
//! because the upstream request carries them.

use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, Uri, Version, header};
use http_body::Body;
use opentelemetry::KeyValue;

use super::{
    Gateway,
    forward::{content_length, length},
};
use crate::{
    error::ProxyError,
    http::{
        forwarding,
        headers::{self, ClientInfo},
    },
    outcome::Outcome,
    telemetry::{AccessRecord, RequestLabels, method_label, spans::RequestSpan, status_class, trace::TraceContext},
};

pub(super) struct Record {
    start: Instant,
    method: Method,
    /// Target and version, kept for the access log when it is on (the URI's clone shares its bytes).
    logged: Option<(Uri, Version)>,
    span: Option<RequestSpan>,
    trace: TraceContext,
    /// The client's `x-request-id` (up to 128 bytes), else the trace id.
    pub request_id: HeaderValue,
    /// The `traceparent` the upstream gets: a child of the caller's, or of a new trace.
    pub traceparent: [u8; 55],
    request_size: Option<u64>,
    /// A gRPC request, by its content type (read in the same pass).
    pub grpc: bool,
}

impl Record {
    pub(super) fn start<B>(gateway: &Gateway, req: &Request<B>) -> Self {
        let start = Instant::now();
        gateway.metrics.in_flight.inc();
        let method = req.method().clone();
        let logged = gateway.access_log.enabled().then(|| (req.uri().clone(), req.version()));
        // One pass over the fields finds the four this needs (two of them names
        // a map must hash byte by byte); the first of each counts, as with `get`.
        let (mut caller, mut client_id, mut request_size, mut grpc) = (None, None, None, None);
        for (name, value) in req.headers() {
            if name == header::CONTENT_TYPE {
                grpc = grpc.or(Some(headers::is_grpc_content_type(value)));
            } else if name == header::CONTENT_LENGTH {
                request_size = request_size.or_else(|| length(value));
            } else if name == forwarding::TRACEPARENT {
                caller = caller.or_else(|| value.to_str().ok().and_then(TraceContext::parse));
            } else if name == forwarding::X_REQUEST_ID && client_id.is_none() {
                client_id = Some(value).filter(|v| !v.is_empty() && v.len() <= 128);
            }
        }
        let span = gateway.spans.as_ref().map(|s| s.start(caller.as_ref(), method.as_str().to_owned(), SystemTime::now()));
        let (trace, traceparent) = match &span {
            Some(span) => span.upstream(),
            None => {
                let trace = caller.unwrap_or_else(TraceContext::start);
                let header = trace.child_header();
                (trace, header)
            }
        };
        let request_id = match client_id {
            Some(id) => id.clone(),
            // Made shared at once (one allocation holding the bytes and their count): the value is
            // cloned into the upstream request and the response, and a first clone of a value
            // made from a copy would allocate again to share it.
            None => HeaderValue::from_maybe_shared(Bytes::from_owner(trace.trace_id_hex())).expect("hex is a valid header value"),
        };
        Self { start, method, logged, span, trace, request_id, traceparent, request_size, grpc: grpc == Some(true) }
    }

    // Borrowed, not consumed: `answer` keeps the record in its future, and
    // moving it out for this call copied all of it.
    pub(super) fn finish<B: Body>(
        &mut self,
        gateway: &Gateway,
        client: &ClientInfo,
        host: &str,
        response: &Response<B>,
        outcome: &Outcome,
    ) {
        let metrics = &gateway.metrics;
        let status = response.status().as_u16();
        let class = status_class(status);
        let labels =
            RequestLabels { route: outcome.route.as_ref(), service: outcome.service.as_ref(), method: method_label(&self.method), class };
        let (route_label, service_label) = (labels.route_label(), labels.service_label());
        // The body's exact size where it is known (it is for every response with a
        // length), else what the head declares.
        let response_size = response.body().size_hint().exact().or_else(|| content_length(response.headers()));
        metrics.record_request(&labels, self.start.elapsed().as_secs_f64(), self.request_size, response_size);
        if let Some(e) = outcome.error
            && matches!(
                e,
                ProxyError::UpstreamConnect | ProxyError::UpstreamProtocol | ProxyError::UpstreamTimeout | ProxyError::UpstreamTls
            )
        {
            metrics.upstream_errors.with_label_values(&[service_label, e.label()]).inc();
        }
        metrics.in_flight.dec();
        if let Some(span) = self.span.take() {
            let mut attributes = vec![
                KeyValue::new("http.request.method", self.method.as_str().to_owned()),
                KeyValue::new("http.response.status_code", i64::from(status)),
                KeyValue::new("http.route", route_label.to_owned()),
                KeyValue::new("datum.router.service", service_label.to_owned()),
            ];
            if let Some(upstream) = outcome.upstream {
                attributes.push(KeyValue::new("server.address", upstream.ip().to_string()));
                attributes.push(KeyValue::new("server.port", i64::from(upstream.port())));
            }
            span.finish(
                format!("{} {route_label}", self.method.as_str()),
                attributes,
                outcome.error.map(ProxyError::label),
                SystemTime::now(),
            );
        }
        if let Some((uri, version)) = &self.logged {
            gateway.access_log.write(&AccessRecord {
                client: client.addr,
                method: self.method.as_str(),
                host,
                path: uri.path(),
                protocol: match *version {
                    Version::HTTP_2 => "HTTP/2",
                    Version::HTTP_10 => "HTTP/1.0",
                    _ => "HTTP/1.1",
                },
                status,
                route: route_label,
                upstream: outcome.upstream,
                error: outcome.error.map(ProxyError::label),
                duration: self.start.elapsed(),
                upstream_elapsed: outcome.upstream_elapsed,
                trace_id: self.trace.trace_id_hex().as_str(),
                request_id: self.request_id.to_str().unwrap_or_default(),
            });
        }
    }
}
