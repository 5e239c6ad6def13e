//! Active health checking: one probe loop per endpoint per gateway, whatever
//! number of routes use it, following VPCService.healthCheck.
//!
//! * HTTP: `GET <httpPath>`; a status in `expectedStatuses` (default 200–399) passes.
//! * gRPC: `grpc.health.v1.Health/Check` for `grpcService` over HTTP/2; SERVING passes.
//!
//! HTTP and gRPC probes use the client the service's traffic would: its
//! protocol, its VRF device, and over TLS its own CA, server name and client
//! certificate (from pools of the checker's own).
//! * TCP (the default): a connect within the timeout passes.
//!
//! Each loop waits a random share of its interval before the first probe and
//! adds up to ±10% jitter to every interval after, so N gateways (and the
//! endpoints of one service) do not probe in lockstep. Results feed the state
//! machine in `router_core::health`; transitions are logged and counted.
//! Loops follow the snapshots: a new endpoint gets one, a removed one's
//! stops, a changed check restarts it.

use std::{collections::HashMap, net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Request, Uri, uri::Scheme};
use http_body_util::BodyExt;
use prost::Message;
use rand::Rng;
use router_api::v1alpha1::{HealthCheck, ServiceProtocol};
use router_core::{
    EndpointState, Snapshot,
    health::{HealthState, HealthStatus},
};
use rustls::crypto::CryptoProvider;
use tokio::task::JoinHandle;
use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse, health_check_response::ServingStatus};

use crate::{
    config::SnapshotCell,
    http::headers::GRPC_STATUS,
    telemetry::Metrics,
    tls::{self, TlsState},
    upstream::{RequestBody, UpstreamBody, UpstreamClient, UpstreamSettings, Upstreams},
};

/// What one endpoint is probed with.
#[derive(Debug, Clone, PartialEq)]
struct Probe {
    service: Arc<str>,
    check: HealthCheck,
    tls: bool,
}

/// How HTTP and gRPC probes reach an endpoint: the client the service's own
/// traffic uses (its protocol, VRF device and, for TLS, its CA, server name
/// and client certificate), or None when its TLS configuration is unusable.
#[derive(Clone)]
struct ProbeClient {
    client: Option<UpstreamClient>,
    scheme: Scheme,
    /// TCP probes: the VRF device to bind to, when binding is on.
    device: Option<String>,
}

struct Running {
    probe: Probe,
    task: JoinHandle<()>,
}

/// Keeps one probe loop per checked endpoint in step with the snapshots.
pub struct HealthChecker {
    /// Pools of their own, so probes never queue behind traffic.
    upstreams: Upstreams,
    metrics: Arc<Metrics>,
    running: HashMap<SocketAddr, Running>,
}

impl HealthChecker {
    pub fn new(metrics: Arc<Metrics>, settings: UpstreamSettings, provider: Arc<CryptoProvider>) -> Self {
        let settings = UpstreamSettings { max_idle_per_endpoint: 1, ..settings };
        Self { upstreams: Upstreams::new(settings, provider), metrics, running: HashMap::new() }
    }

    /// Follows `cell` until the process ends, reconciling after every publish.
    pub async fn run(mut self, cell: Arc<SnapshotCell>) {
        let mut published = cell.subscribe();
        loop {
            self.reconcile(&cell.load(), &cell.tls());
            if published.changed().await.is_err() {
                return;
            }
        }
    }

    /// Starts, keeps or stops probe loops so that exactly the checked endpoints of `snapshot` have one.
    /// An endpoint shared by services with different checks is probed with the first service's check.
    pub fn reconcile(&mut self, snapshot: &Snapshot, tls_state: &TlsState) {
        let mut wanted: HashMap<SocketAddr, (Probe, Arc<EndpointState>, ProbeClient)> = HashMap::new();
        for svc in snapshot.services.values() {
            let Some(check) = &svc.health_check else { continue };
            let tls = tls::wants_tls(svc);
            // A gRPC check needs HTTP/2 whatever else the service speaks.
            let protocol = if check.grpc_service.is_some() && !tls { ServiceProtocol::Grpc } else { svc.protocol };
            let device = svc.vrf_device.clone().filter(|_| self.upstreams.settings().bind_vrf);
            let client = if !tls {
                ProbeClient { client: Some(self.upstreams.client(protocol, svc.vrf_device.as_deref())), scheme: Scheme::HTTP, device }
            } else {
                let client = match tls_state.upstream.get(&svc.key) {
                    Some(Ok(c)) => Some(c.client.clone()),
                    _ => None,
                };
                ProbeClient { client, scheme: Scheme::HTTPS, device }
            };
            for ep in &svc.endpoints {
                wanted
                    .entry(ep.addr)
                    .or_insert_with(|| (Probe { service: svc.label.clone(), check: check.clone(), tls }, ep.clone(), client.clone()));
            }
        }
        self.running.retain(|addr, running| {
            let keep = wanted.get(addr).is_some_and(|(probe, _, _)| *probe == running.probe);
            if !keep {
                running.task.abort();
            }
            keep
        });
        for (addr, (probe, endpoint, client)) in wanted {
            if self.running.contains_key(&addr) {
                continue;
            }
            let task = tokio::spawn(probe_loop(probe.clone(), endpoint, client, self.metrics.clone()));
            self.running.insert(addr, Running { probe, task });
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        for running in self.running.values() {
            running.task.abort();
        }
    }
}

fn jittered(interval: Duration) -> Duration {
    interval.mul_f64(rand::rng().random_range(0.9..1.1))
}

async fn probe_loop(probe: Probe, endpoint: Arc<EndpointState>, client: ProbeClient, metrics: Arc<Metrics>) {
    let check = &probe.check;
    let interval = Duration::from_secs(u64::try_from(check.interval_seconds).unwrap_or(10).max(1));
    let timeout = Duration::from_secs(u64::try_from(check.timeout_seconds).unwrap_or(2).max(1));
    let mut state =
        HealthState::new(u32::try_from(check.healthy_threshold).unwrap_or(2), u32::try_from(check.unhealthy_threshold).unwrap_or(3));
    let endpoint_label = endpoint.addr.to_string();
    let gauge = |status: HealthStatus| {
        for s in [HealthStatus::Unknown, HealthStatus::Healthy, HealthStatus::Unhealthy] {
            metrics.endpoint_health.with_label_values(&[&*probe.service, &endpoint_label, s.as_str()]).set(i64::from(s == status));
        }
    };
    gauge(endpoint.health());
    let first = interval.mul_f64(rand::rng().random_range(0.0..1.0));
    tokio::time::sleep(first).await;
    loop {
        let passed = tokio::time::timeout(timeout, run_probe(check, &endpoint, &client)).await.unwrap_or(false);
        metrics.health_checks.with_label_values(&[&*probe.service, if passed { "pass" } else { "fail" }]).inc();
        if let Some(status) = state.observe(passed) {
            let from = endpoint.health();
            endpoint.set_health(status);
            gauge(status);
            metrics.health_transitions.with_label_values(&[&*probe.service, status.as_str()]).inc();
            tracing::info!(service = %probe.service, endpoint = %endpoint.addr, from = from.as_str(), to = status.as_str(), "endpoint health changed");
        }
        tokio::time::sleep(jittered(interval)).await;
    }
}

/// A `grpc.health.v1.Health/Check` request body: one length-prefixed, uncompressed message.
fn grpc_health_request(service: &str) -> Bytes {
    let message = HealthCheckRequest { service: service.to_owned() }.encode_to_vec();
    let mut framed = Vec::with_capacity(5 + message.len());
    framed.push(0);
    framed.extend_from_slice(&u32::try_from(message.len()).unwrap_or(u32::MAX).to_be_bytes());
    framed.extend_from_slice(&message);
    Bytes::from(framed)
}

/// Whether a Health/Check answer says SERVING: grpc-status 0 (in trailers or a
/// trailers-only head) and a HealthCheckResponse with status SERVING.
async fn grpc_serving(response: http::Response<UpstreamBody>) -> bool {
    let head_status = response.headers().get(&GRPC_STATUS).cloned();
    let Ok(collected) = response.into_body().collect().await else { return false };
    let status = collected.trailers().and_then(|t| t.get(&GRPC_STATUS).cloned()).or(head_status);
    if status.as_ref().map(|v| v.as_bytes()) != Some(b"0") {
        return false;
    }
    let body = collected.to_bytes();
    body.len() >= 5 && HealthCheckResponse::decode(&body[5..]).is_ok_and(|r| r.status == ServingStatus::Serving as i32)
}

async fn run_probe(check: &HealthCheck, endpoint: &EndpointState, probe: &ProbeClient) -> bool {
    let request = |path: &str, method: http::Method| {
        Uri::builder()
            .scheme(probe.scheme.clone())
            .authority(endpoint.authority.clone())
            .path_and_query(path)
            .build()
            .ok()
            .map(|uri| Request::builder().method(method).uri(uri).header(http::header::USER_AGENT, "datum-router-health-check"))
    };
    if let Some(path) = &check.http_path {
        let (Some(client), Some(req)) = (&probe.client, request(path, http::Method::GET)) else { return false };
        let Ok(req) = req.body(RequestBody::Replay(Some(Bytes::new()))) else { return false };
        let (min, max) = check.expected_statuses.map_or((200, 399), |r| (r.min, r.max));
        return client.request(req).await.is_ok_and(|r| (min..=max).contains(&i32::from(r.status().as_u16())));
    }
    if let Some(service) = &check.grpc_service {
        let (Some(client), Some(req)) = (&probe.client, request("/grpc.health.v1.Health/Check", http::Method::POST)) else { return false };
        let Ok(mut req) = req
            .version(http::Version::HTTP_2)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header(http::header::TE, "trailers")
            .body(RequestBody::Replay(Some(grpc_health_request(service))))
        else {
            return false;
        };
        *req.version_mut() = http::Version::HTTP_2;
        return match client.request(req).await {
            Ok(r) => grpc_serving(r).await,
            Err(_) => false,
        };
    }
    tcp_connect(endpoint.addr, probe.device.as_deref()).await.is_ok()
}

/// A TCP connect, out of the VPC's VRF device when one is given (SO_BINDTODEVICE).
async fn tcp_connect(addr: SocketAddr, device: Option<&str>) -> std::io::Result<tokio::net::TcpStream> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    if let Some(device) = device {
        socket.bind_device(Some(device.as_bytes()))?;
    }
    socket.connect(addr).await
}
