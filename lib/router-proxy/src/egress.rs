//! The gateway as the HTTP proxy of VPC clients: CONNECT tunnels and
//! absolute-form requests, allowed or refused by the client's VPCEgress.
//! Every decision is counted with the policy and rule that made it, and a
//! refusal names them in `x-datum-router-egress-rule`.

use std::time::Duration;

use http::{HeaderValue, Method, Request, Response, StatusCode, Version};
use router_api::v1alpha1::ServiceProtocol;
use router_core::egress::EgressPolicy;
use tokio::net::TcpStream;

use crate::{
    error::ProxyError,
    http::{headers, upgrade::OnUpgrade},
    local::{ProxyBody, empty_response},
    outcome::Outcome,
    telemetry::Metrics,
    upstream::{BoxError, ClientBody, RequestBody, Upstreams},
};

/// The response header naming the VPCEgress rule that refused a destination.
pub const EGRESS_RULE_HEADER: &str = "x-datum-router-egress-rule";

/// Whether a request asks the gateway to act as a forward proxy.
pub fn is_proxy_request<B>(req: &Request<B>) -> bool {
    req.method() == Method::CONNECT || (req.version() != Version::HTTP_2 && req.uri().scheme().is_some())
}

/// Serves a proxy request under `policy` (None: the client is in no VPC with a policy).
pub(crate) async fn serve(
    upstreams: &Upstreams,
    metrics: &Metrics,
    mut req: Request<ClientBody>,
    policy: Option<&EgressPolicy>,
    outcome: &mut Outcome,
) -> Response<ProxyBody> {
    let connect = req.method() == Method::CONNECT;
    let default_port = if req.uri().scheme_str() == Some("https") { 443 } else { 80 };
    let (Some(host), port) =
        (req.uri().host().map(|h| h.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()), req.uri().port_u16())
    else {
        return outcome.fail(ProxyError::BadRequest);
    };
    let port = match (port, connect) {
        (Some(p), _) => p,
        (None, false) => default_port,
        (None, true) => return outcome.fail(ProxyError::BadRequest),
    };
    let Some(policy) = policy else {
        // CONNECT with no policy: an open tunnel nobody allowed is not offered.
        metrics.egress.with_label_values(&["none", "none", "deny"]).inc();
        return outcome.fail(ProxyError::EgressDenied);
    };
    let decision = policy.decide(&host, port);
    metrics.egress.with_label_values(&[&*decision.policy, &*decision.rule, if decision.allowed { "allow" } else { "deny" }]).inc();
    if !decision.allowed {
        let mut r = outcome.fail(ProxyError::EgressDenied);
        if let Ok(v) = HeaderValue::from_str(&format!("{}/{}", decision.policy, decision.rule)) {
            r.headers_mut().insert(EGRESS_RULE_HEADER, v);
        }
        return r;
    }
    outcome.route = Some(decision.policy.clone());

    if connect {
        let mut upstream = match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect((host.as_str(), port))).await {
            Ok(Ok(s)) => s,
            _ => return outcome.fail(ProxyError::UpstreamConnect),
        };
        outcome.upstream = upstream.peer_addr().ok();
        let on_upgrade = OnUpgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(mut client) = on_upgrade.connection().await {
                let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
            }
        });
        return empty_response(StatusCode::OK);
    }

    let client = upstreams.client(ServiceProtocol::Http, None);
    let (mut parts, body) = req.into_parts();
    headers::strip_hop_by_hop(&mut parts.headers);
    parts.version = Version::HTTP_11;
    match client.request(Request::from_parts(parts, RequestBody::Direct(body))).await {
        Ok(r) => {
            let (mut parts, body) = r.into_parts();
            headers::strip_hop_by_hop(&mut parts.headers);
            Response::from_parts(parts, http_body_util::BodyExt::boxed(http_body_util::BodyExt::map_err(body, BoxError::from)))
        }
        Err(e) => outcome.fail(if e.is_connect() { ProxyError::UpstreamConnect } else { ProxyError::UpstreamProtocol }),
    }
}
