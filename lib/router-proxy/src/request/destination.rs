//! Stage 3, destination: which of the route's weighted destinations serves
//! this request, under which of its limits, on which endpoint, with which
//! client.
//!
//! The order matters: `maxRequests` is taken before anything waits, a
//! `maxConnections` slot is waited for within the request deadline (the
//! deadline starts here and covers every attempt), and the endpoint is picked
//! only once the request may go, so a balancer's choice is not stale.

use std::sync::Arc;

use http::{Request, uri::Scheme};
use router_core::{
    EndpointState,
    balance::{ActiveRequest, EndpointPicker, PendingOverflow, PickContext, hash_key},
    snapshot::{DestinationTarget, RoutePolicy, ServiceTarget},
};

use super::Gateway;
use crate::{error::ProxyError, http::headers::ClientInfo, outcome::Outcome, tls, upstream::UpstreamClient};

/// The destination chosen for a request, and what it holds while the request runs.
pub(super) struct Destination<'a> {
    /// Its index among the route's destinations.
    pub index: usize,
    pub service: &'a ServiceTarget,
    pub picker: &'a EndpointPicker,
    /// What consistent hashing and source-IP balancing pick by.
    pub ctx: PickContext,
    pub endpoint: Arc<EndpointState>,
    pub client: UpstreamClient,
    pub scheme: Scheme,
    /// maxRequests: one of the destination's concurrent requests.
    pub active: ActiveRequest,
    /// maxConnections: the destination's connection slot, when it limits them.
    pub connection: Option<tokio::sync::OwnedSemaphorePermit>,
    /// timeouts.request, from now.
    pub deadline: Option<tokio::time::Instant>,
}

impl Gateway {
    pub(super) async fn destination<'a, B>(
        &self,
        policy: &'a RoutePolicy,
        req: &Request<B>,
        client: &ClientInfo,
        outcome: &mut Outcome,
    ) -> Result<Destination<'a>, ProxyError> {
        let index = policy.split.pick().ok_or(ProxyError::NoWeightedDestination)?;
        let (service, picker) = match &policy.destinations[index] {
            DestinationTarget::Resolved { service, picker } => (service, picker),
            DestinationTarget::Unresolved { label, .. } => {
                outcome.service = Some(label.clone());
                return Err(ProxyError::DestinationUnresolved);
            }
        };
        outcome.service = Some(service.label.clone());
        let ctx = PickContext { source_ip: Some(client.addr.ip()), hash_key: request_hash(policy, req) };
        let active = picker.start_request().ok_or(ProxyError::UpstreamOverflow)?;
        let deadline = policy.timeouts.request.map(|d| tokio::time::Instant::now() + d);
        // Destinations without maxConnections (most) skip this entirely: no future, no timer.
        let connection = if picker.limits_connections() {
            let slot = match deadline {
                Some(at) => tokio::time::timeout_at(at, picker.connection_slot()).await,
                None => Ok(picker.connection_slot().await),
            };
            match slot {
                Ok(Ok(connection)) => connection,
                Ok(Err(PendingOverflow)) => return Err(ProxyError::UpstreamOverflow),
                Err(_) => {
                    self.metrics.timeouts.with_label_values(&[&*policy.label, "pending"]).inc();
                    return Err(ProxyError::UpstreamTimeout);
                }
            }
        } else {
            None
        };
        let (endpoint, level) = picker.pick_located(&ctx).ok_or(ProxyError::NoHealthyUpstream)?;
        if let Some(level) = level {
            self.metrics.locality_requests.with_label_values(&[&*policy.label, level.label()]).inc();
        }
        let endpoint = endpoint.clone();
        let (client, scheme) = self.upstream_client(service)?;
        Ok(Destination { index, service, picker, ctx, endpoint, client, scheme, active, connection, deadline })
    }

    /// The client and URI scheme for a service's endpoints: its own TLS client
    /// when it wants TLS (502 upstream-tls-error when that could not be built).
    fn upstream_client(&self, service: &ServiceTarget) -> Result<(UpstreamClient, Scheme), ProxyError> {
        if !tls::wants_tls(service) {
            return Ok((self.upstreams.client(service.protocol, service.vrf_device.as_deref()), Scheme::HTTP));
        }
        match self.cell.tls().upstream.get(&service.key) {
            Some(Ok(clients)) => Ok((clients.client.clone(), Scheme::HTTPS)),
            _ => Err(ProxyError::UpstreamTls),
        }
    }
}

/// The key consistent hashing picks by: the route's `hashOn` header or cookie.
fn request_hash<B>(policy: &RoutePolicy, req: &Request<B>) -> Option<u64> {
    let h = policy.hash_on.as_ref()?;
    if let Some(name) = &h.header {
        req.headers().get(name.as_str()).map(|v| hash_key(v.as_bytes()))
    } else {
        let name = h.cookie.as_ref()?;
        cookie(req.headers(), name).map(|v| hash_key(v.as_bytes()))
    }
}

fn cookie<'a>(h: &'a http::HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}
