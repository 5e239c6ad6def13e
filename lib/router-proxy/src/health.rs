//! Active health checking: one probe loop per endpoint per gateway, whatever
//! number of routes use it, following VPCService.healthCheck.
//!
//! * HTTP: `GET <httpPath>` (over TLS for services that want TLS, with their
//!   own TLS client); a status in `expectedStatuses` (default 200–399) passes.
//! * gRPC: `grpc.health.v1.Health/Check` for `grpcService`; SERVING passes.
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
use http::{Request, Uri};
use http_body_util::Empty;
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::TokioExecutor,
};
use rand::Rng;
use router_api::v1alpha1::HealthCheck;
use router_core::{
    EndpointState, Snapshot,
    health::{HealthState, HealthStatus},
};
use tokio::task::JoinHandle;

use crate::{
    config::SnapshotCell,
    mirror::RequestBody,
    telemetry::Metrics,
    tls::{self, TlsState},
    upstream::UpstreamClient,
};

/// What one endpoint is probed with.
#[derive(Debug, Clone, PartialEq)]
struct Probe {
    service: Arc<str>,
    check: HealthCheck,
    tls: bool,
}

/// How HTTP probes reach an endpoint.
#[derive(Clone)]
enum ProbeClient {
    Cleartext(Client<HttpConnector, Empty<Bytes>>),
    /// The service's own TLS client (its CA, server name and client certificate).
    Tls(UpstreamClient),
    /// The service wants TLS but has no usable TLS configuration: HTTP probes fail.
    TlsUnavailable,
}

struct Running {
    probe: Probe,
    task: JoinHandle<()>,
}

/// Keeps one probe loop per checked endpoint in step with the snapshots.
pub struct HealthChecker {
    http: Client<HttpConnector, Empty<Bytes>>,
    metrics: Arc<Metrics>,
    running: HashMap<SocketAddr, Running>,
}

impl HealthChecker {
    pub fn new(metrics: Arc<Metrics>) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Self { http: Client::builder(TokioExecutor::new()).pool_max_idle_per_host(1).build(connector), metrics, running: HashMap::new() }
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
            let client = match tls_state.upstream.get(&svc.key) {
                _ if !tls => ProbeClient::Cleartext(self.http.clone()),
                Some(Ok(c)) => ProbeClient::Tls(c.client.clone()),
                _ => ProbeClient::TlsUnavailable,
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

async fn probe_loop(probe: Probe, endpoint: Arc<EndpointState>, http: ProbeClient, metrics: Arc<Metrics>) {
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
    // One lazily (re)connecting channel per loop: probes reuse its HTTP/2 connection, as HTTP probes reuse the pool.
    let grpc = check
        .grpc_service
        .as_ref()
        .and_then(|_| tonic::transport::Endpoint::from_shared(format!("http://{}", endpoint.addr)).ok())
        .map(|e| e.connect_lazy());
    let first = interval.mul_f64(rand::rng().random_range(0.0..1.0));
    tokio::time::sleep(first).await;
    loop {
        let passed = tokio::time::timeout(timeout, run_probe(check, &endpoint, &http, grpc.as_ref())).await.unwrap_or(false);
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

async fn run_probe(check: &HealthCheck, endpoint: &EndpointState, http: &ProbeClient, grpc: Option<&tonic::transport::Channel>) -> bool {
    if let Some(path) = &check.http_path {
        let scheme = if matches!(http, ProbeClient::Cleartext(_)) { "http" } else { "https" };
        let Ok(uri) = Uri::builder().scheme(scheme).authority(endpoint.authority.clone()).path_and_query(path.as_str()).build() else {
            return false;
        };
        let req = Request::get(uri).header(http::header::USER_AGENT, "datum-router-health-check");
        let status = match http {
            ProbeClient::Cleartext(c) => match req.body(Empty::new()) {
                Ok(req) => c.request(req).await.map(|r| r.status()).ok(),
                Err(_) => None,
            },
            ProbeClient::Tls(c) => match req.body(RequestBody::Replay(Some(Bytes::new()))) {
                Ok(req) => c.request(req).await.map(|r| r.status()).ok(),
                Err(_) => None,
            },
            ProbeClient::TlsUnavailable => None,
        };
        let (min, max) = check.expected_statuses.map_or((200, 399), |r| (r.min, r.max));
        return status.is_some_and(|s| (min..=max).contains(&i32::from(s.as_u16())));
    }
    if let Some(service) = &check.grpc_service {
        use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
        let Some(channel) = grpc else { return false };
        return HealthClient::new(channel.clone())
            .check(HealthCheckRequest { service: service.clone() })
            .await
            .is_ok_and(|r| r.get_ref().status == ServingStatus::Serving as i32);
    }
    tokio::net::TcpStream::connect(endpoint.addr).await.is_ok()
}
