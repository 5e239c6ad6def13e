//! The gateway side (`tunnel-gateway serve`): keeps the running tunnels equal
//! to the latest [`Plan`]. One [`Link`] per connector id, shared by every
//! binding that lists it; one listener per binding on the VPC address, open
//! exactly while at least one of its connectors is up. Every change of a
//! link wakes the supervisor; a periodic tick refreshes the path and RTT
//! gauges.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr},
    sync::{Arc, Mutex},
    time::Duration,
};

use iroh::{Endpoint, PublicKey};
use tokio::sync::{Notify, watch};

use crate::{
    endpoint::peer_addr,
    link::{Link, LinkState, lock},
    listener::{Route, ServiceListener},
    metrics::TunnelMetrics,
    plan::{BindingPlan, ConnectorPlan, Plan},
};

/// How often gauges are refreshed without a change.
const TICK: Duration = Duration::from_secs(1);

struct Served {
    plan: BindingPlan,
    links: Vec<Arc<Link>>,
    listener: Option<ServiceListener>,
    last_bind_error: Option<String>,
}

/// One binding as this replica serves it, for `/config` and the status writer.
#[derive(Clone, Debug, serde::Serialize)]
pub struct BindingReport {
    pub binding: String,
    pub listening: Option<SocketAddr>,
    pub target: String,
    pub connectors: Vec<ConnectorReport>,
    pub problems: Vec<String>,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ConnectorReport {
    pub endpoint_id: String,
    pub up: bool,
    pub path: Option<&'static str>,
    pub rtt_ms: Option<u64>,
    pub last_error: Option<String>,
}

/// The running tunnels of one replica.
pub struct Tunnels {
    endpoint: Endpoint,
    listen_ip: IpAddr,
    metrics: Arc<TunnelMetrics>,
    changed: Arc<Notify>,
    links: Mutex<BTreeMap<PublicKey, (ConnectorPlan, Arc<Link>)>>,
    served: Mutex<BTreeMap<String, Served>>,
    problems: Mutex<BTreeMap<String, Vec<String>>>,
}

impl Tunnels {
    pub fn new(endpoint: Endpoint, listen_ip: IpAddr, metrics: Arc<TunnelMetrics>) -> Arc<Self> {
        Arc::new(Self {
            endpoint,
            listen_ip,
            metrics,
            changed: Arc::new(Notify::new()),
            links: Mutex::default(),
            served: Mutex::default(),
            problems: Mutex::default(),
        })
    }

    /// The metrics the tunnels count into.
    pub fn metrics(&self) -> Arc<TunnelMetrics> {
        self.metrics.clone()
    }

    /// This replica's endpoint id.
    pub fn id(&self) -> PublicKey {
        self.endpoint.id()
    }

    /// Makes `plan` the one served: links for new connectors are dialed, links no
    /// binding lists are closed, bindings come and go.
    pub fn apply(&self, plan: Plan) {
        // One link per id; a connector listed by several bindings is reached as the first lists it
        // (collecting in reverse lets the first occurrence win).
        let wanted: BTreeMap<PublicKey, ConnectorPlan> =
            plan.bindings.iter().flat_map(|b| b.connectors.iter()).map(|c| (c.id, c.clone())).rev().collect();
        let links: BTreeMap<PublicKey, Arc<Link>> = {
            let mut links = lock(&self.links);
            links.retain(|id, (p, _)| wanted.get(id) == Some(p));
            for (id, p) in &wanted {
                links.entry(*id).or_insert_with(|| {
                    let addr = peer_addr(p.id, &p.addresses, p.relay.as_ref());
                    (p.clone(), Link::spawn(self.endpoint.clone(), addr, self.changed.clone(), self.metrics.clone()))
                });
            }
            links.iter().map(|(id, (_, l))| (*id, l.clone())).collect()
        };
        let mut served = lock(&self.served);
        served.retain(|key, s| {
            let kept = plan.bindings.iter().any(|b| &b.binding == key && *b == s.plan);
            if !kept {
                self.forget(s);
            }
            kept
        });
        for b in &plan.bindings {
            served.entry(b.binding.clone()).or_insert_with(|| Served {
                links: b.connectors.iter().filter_map(|c| links.get(&c.id).cloned()).collect(),
                plan: b.clone(),
                listener: None,
                last_bind_error: None,
            });
        }
        *lock(&self.problems) = plan.problems;
        drop(served);
        self.changed.notify_waiters();
    }

    /// Opens and closes listeners as links come and go, until `stop` turns true.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        loop {
            self.reconcile();
            tokio::select! {
                () = self.changed.notified() => {}
                () = tokio::time::sleep(TICK) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }

    fn reconcile(&self) {
        let mut served = lock(&self.served);
        for s in served.values_mut() {
            let live = s.links.iter().any(|l| l.is_up());
            match (live, s.listener.is_some()) {
                (true, false) => {
                    let addr = SocketAddr::new(self.listen_ip, s.plan.port);
                    let route = Route { binding: s.plan.binding.clone(), target: s.plan.target.clone(), links: s.links.clone() };
                    match ServiceListener::open(addr, route, self.metrics.clone()) {
                        Ok(l) => {
                            tracing::info!(binding = %s.plan.binding, %addr, "listening: a connector is up");
                            s.listener = Some(l);
                            s.last_bind_error = None;
                        }
                        Err(e) => {
                            if s.last_bind_error.as_deref() != Some(&e.to_string()) {
                                tracing::error!(binding = %s.plan.binding, %addr, error = %e, "cannot listen; retrying");
                            }
                            s.last_bind_error = Some(e.to_string());
                        }
                    }
                }
                (false, true) => {
                    tracing::warn!(binding = %s.plan.binding, "no connector is up: listener closed");
                    s.listener = None;
                }
                _ => {}
            }
            for l in &s.links {
                self.record(&s.plan.binding, l);
            }
        }
    }

    /// Drops the per-connector gauges of a binding that is no longer served as it was.
    fn forget(&self, served: &Served) {
        for l in &served.links {
            let id = l.id.to_string();
            let labels = [served.plan.binding.as_str(), id.as_str()];
            let _ = self.metrics.connector_up.remove_label_values(&labels);
            let _ = self.metrics.connector_rtt.remove_label_values(&labels);
            for path in ["Direct", "Relay"] {
                let _ = self.metrics.connector_path.remove_label_values(&[labels[0], labels[1], path]);
            }
        }
    }

    fn record(&self, binding: &str, link: &Link) {
        let state = link.state();
        let id = link.id.to_string();
        self.metrics.connector_up.with_label_values(&[binding, &id]).set(i64::from(state.up));
        for path in ["Direct", "Relay"] {
            self.metrics.connector_path.with_label_values(&[binding, &id, path]).set(i64::from(state.path == Some(path)));
        }
        if let Some(rtt) = state.rtt {
            self.metrics.connector_rtt.with_label_values(&[binding, &id]).set(rtt.as_secs_f64());
        }
    }

    /// Every binding as served now, and the bindings that could not be.
    pub fn report(&self) -> Vec<BindingReport> {
        let served = lock(&self.served);
        let problems = lock(&self.problems).clone();
        let mut out: Vec<BindingReport> = served
            .values()
            .map(|s| BindingReport {
                binding: s.plan.binding.clone(),
                listening: s.listener.as_ref().map(|l| l.addr),
                target: s.plan.target.clone(),
                connectors: s.links.iter().map(|l| connector_report(l.id, l.state())).collect(),
                problems: problems.get(&s.plan.binding).cloned().into_iter().flatten().chain(s.last_bind_error.clone()).collect(),
            })
            .collect();
        for (binding, p) in problems {
            if !served.contains_key(&binding) {
                out.push(BindingReport { binding, listening: None, target: String::new(), connectors: Vec::new(), problems: p });
            }
        }
        out.sort_by(|a, b| a.binding.cmp(&b.binding));
        out
    }
}

/// Gateways dial; they are never dialed. A peer that dials a gateway is refused
/// right after the handshake, before any stream is read, and counted.
pub async fn refuse_incoming(endpoint: Endpoint, metrics: Arc<TunnelMetrics>) {
    while let Some(incoming) = endpoint.accept().await {
        if let Ok(conn) = incoming.await {
            metrics.denied_peers.with_label_values(&["gateway"]).inc();
            tracing::warn!(peer = %conn.remote_id(), "refused a peer that dialed the gateway");
            conn.close(crate::connector::FORBIDDEN_CODE.into(), b"gateways are not dialed");
        }
    }
}

fn connector_report(id: PublicKey, state: LinkState) -> ConnectorReport {
    ConnectorReport {
        endpoint_id: id.to_string(),
        up: state.up,
        path: state.path,
        rtt_ms: state.rtt.map(|r| u64::try_from(r.as_millis()).unwrap_or(u64::MAX)),
        last_error: state.last_error,
    }
}
