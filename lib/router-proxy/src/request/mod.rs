//! The request path: every request the gateway proxies goes through the same
//! short sequence of stages, each in its own module, so a behaviour is found
//! by its name and each stage's cost can be measured on its own:
//!
//! ```text
//! handle ─► validate ─► route ─► filters ─► destination ─► forward ─► attempts ─► response ─► record
//! ```
//!
//! * [`validate`]: framing and target rules every request is held to first (400, 501).
//! * [`route`]: the listener's route table and the matching rule (404, 421).
//! * [`filters`]: the filters that answer locally (CORS preflight, redirect).
//! * [`destination`]: weighted split, `maxRequests`, `maxConnections`, endpoint pick, client.
//! * [`forward`]: the upstream request head and body, built once for every attempt.
//! * [`attempts`]: send, classify, retry, feed the circuit breaker.
//! * [`response`]: the client's response: headers, attempts count, guarded body, upgrades.
//! * [`record`]: metrics, the access log line and the trace span, once the head is out.
//!
//! Requests that ask the gateway to be their forward proxy (CONNECT,
//! absolute-form from a VPC under a VPCEgress) leave the sequence after
//! `handle` for [`crate::egress`].

mod attempts;
mod destination;
mod filters;
mod forward;
mod host;
mod record;
mod response;
mod route;
mod validate;

use std::{sync::Arc, time::Duration};

use http::{Request, Response, Version, header};

use self::{forward::RequestIds, host::RequestHost, record::Record};
pub use self::{
    forward::{ADDED_FIELDS, RETRY_BUFFER_BYTES},
    response::{ATTEMPTS_HEADER, IdleTimeout, ResponseFields},
};
use crate::{
    config::SnapshotCell,
    egress,
    error::ProxyError,
    http::{
        field_lines::FieldLines,
        headers::{self, ClientInfo},
    },
    local::ProxyBody,
    outcome::Outcome,
    telemetry::{AccessLog, Metrics, spans::SpanExport},
    upstream::{ClientBody, Upstreams},
};

/// Marks an HTTP/1.1 request whose head carried both `Content-Length` and
/// `Transfer-Encoding` (request smuggling's shape): the server hands it over
/// unread, for a 400 `ambiguous-framing`, and closes the connection after.
#[derive(Debug, Clone, Copy)]
pub struct AmbiguousFraming;

/// Shared state of the request path.
pub struct Gateway {
    pub cell: Arc<SnapshotCell>,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    pub access_log: AccessLog,
    /// Span export over OTLP, when configured.
    pub spans: Option<Arc<SpanExport>>,
    /// The body read timeout (see [`ClientBody`]); None reads bodies without one.
    pub client_body_timeout: Option<Duration>,
}

impl Gateway {
    /// Serves one request. Never fails: every problem becomes a response,
    /// which goes out with the fields the gateway adds to every response.
    /// The request is borrowed from the server's future, like every stage's:
    /// taken by value, it was copied into this future and again at its first poll.
    pub async fn answer(&self, req: &mut Request<ClientBody>, client: &ClientInfo) -> (Response<ProxyBody>, ResponseFields) {
        let mut record = Record::start(self, req);
        // gRPC request streams may rightly stay quiet for long; their deadlines bound them.
        req.body_mut().set_timeout(self.client_body_timeout.filter(|_| !record.grpc));
        let ambiguous = req.extensions().get::<AmbiguousFraming>().is_some();
        let valid = if ambiguous { Err(ProxyError::AmbiguousFraming) } else { validate::check(req) };
        // HTTP/1.0 may omit Host (HTTP/1.1 may not: 400): the TLS server name stands in, else no host,
        // which only routes without hostnames match.
        let host = RequestHost::of(req)
            .or_else(|| (req.version() == Version::HTTP_10).then(|| RequestHost::Normalized(client.sni.clone().unwrap_or_default())));
        let mut outcome = Outcome::default();
        let ids = RequestIds { request_id: &record.request_id, traceparent: &record.traceparent };
        let (response, upstream_lines) = match (&host, valid) {
            (_, Err(e)) => (outcome.fail(e), FieldLines::default()),
            (None, Ok(())) => (outcome.fail(ProxyError::BadRequest), FieldLines::default()),
            (Some(host), Ok(())) if egress::is_proxy_request(req) => {
                let snapshot = self.cell.load();
                let policy = snapshot.egress.policy_for(client.addr.ip());
                if policy.is_some() || req.method() == http::Method::CONNECT {
                    (egress::serve(&self.upstreams, &self.metrics, std::mem::take(req), policy, &mut outcome).await, FieldLines::default())
                } else {
                    // An absolute-form request from outside any governed VPC is an ordinary request.
                    self.proxy(req, client, host.as_str(), &ids, &mut outcome).await
                }
            }
            (Some(host), Ok(())) => self.proxy(req, client, host.as_str(), &ids, &mut outcome).await,
        };
        let fields = ResponseFields::new(upstream_lines, record.request_id.clone(), outcome.attempts);
        record.finish(self, client, host.as_ref().map_or("", RequestHost::as_str), &response, &outcome);
        (response, fields)
    }

    /// route → filters → destination → forward → attempts → response; the
    /// response's fields that are not in its map (see [`ResponseFields`]).
    /// The request is borrowed, as by every stage: an async fn holds what it
    /// takes twice over (as its argument and as its local) and copies it at
    /// its first poll.
    async fn proxy(
        &self,
        req: &mut Request<ClientBody>,
        client: &ClientInfo,
        host: &str,
        ids: &RequestIds<'_>,
        outcome: &mut Outcome,
    ) -> (Response<ProxyBody>, FieldLines) {
        let snapshot = self.cell.load();
        // Routing may match on the verified client identity, so it is settled before the lookup.
        headers::set_client_identity(req.headers_mut(), client);
        let rule = match route::lookup(&snapshot, client, host, req) {
            Ok(rule) => rule,
            Err(e) => return (outcome.fail(e), FieldLines::default()),
        };
        let policy = &rule.action;
        outcome.route = Some(policy.label.clone());
        if let Some(answer) = filters::answer(&rule, req, client, host) {
            return (answer, FieldLines::default());
        }
        let origin = policy.cors.as_ref().and_then(|_| req.headers().get(header::ORIGIN)?.to_str().ok().map(str::to_owned));
        let mut dest = match self.destination(policy, req, client, outcome).await {
            Ok(dest) => dest,
            Err(e) => return (outcome.fail(e), FieldLines::default()),
        };
        let mut request = match self.upstream_request(req, &rule, dest.service.protocol, client, host, ids).await {
            Ok(request) => request,
            Err(e) => return (outcome.fail(e), FieldLines::default()),
        };
        let client_upgrade = request.upgrade.take();
        match self.attempts(policy, &mut dest, &mut request, outcome).await {
            Ok(answered) => {
                outcome.attempts = answered.attempts;
                self.respond(&rule, dest, answered, client_upgrade, origin.as_deref())
            }
            Err(failed) => {
                outcome.attempts = failed.attempts;
                (outcome.fail(failed.error), FieldLines::default())
            }
        }
    }
}
