//! VPCIngress ports follow the snapshots: a port that appears is opened, one
//! that disappears (or changes protocol) stops accepting and drains its open
//! connections, and a port that could not be opened (already in use, no
//! permission) is retried until it can. Certificates and routes are not
//! bound to the socket: every handshake and request reads the current
//! snapshot, so changing them never reopens a port.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use router_api::v1alpha1::ListenerProtocol;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};

use crate::{
    http::headers::Entry,
    request::Gateway,
    server::{self, ListenerKind, ServerSettings},
    tls::accept::TlsPort,
};

/// How often ports that failed to open are tried again.
const RETRY_INTERVAL: Duration = Duration::from_secs(5);

struct Open {
    protocol: ListenerProtocol,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Keeps one listening socket per VPCIngress port of the current snapshot.
pub struct IngressListeners {
    bind: IpAddr,
    gateway: Arc<Gateway>,
    settings: ServerSettings,
    open: HashMap<u16, Open>,
    /// Ports closed by a reload, still draining.
    draining: Vec<JoinHandle<()>>,
}

fn protocol_label(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "HTTP",
        ListenerProtocol::Https => "HTTPS",
    }
}

impl IngressListeners {
    /// Ports are opened on `bind` (all addresses by default).
    pub fn new(bind: IpAddr, gateway: Arc<Gateway>, settings: ServerSettings) -> Self {
        Self { bind, gateway, settings, open: HashMap::new(), draining: Vec::new() }
    }

    /// Follows the snapshots until `shutdown` turns true, then drains every port.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut published = self.gateway.cell.subscribe();
        loop {
            self.reconcile().await;
            tokio::select! {
                changed = published.changed() => if changed.is_err() { break },
                _ = shutdown.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(RETRY_INTERVAL) => {}
            }
        }
        for (_, open) in self.open.drain() {
            let _ = open.stop.send(true);
            self.draining.push(open.task);
        }
        for task in self.draining {
            let _ = task.await;
        }
    }

    async fn reconcile(&mut self) {
        let snapshot = self.gateway.cell.load();
        let metrics = &self.gateway.metrics;
        let wanted: HashMap<u16, ListenerProtocol> = snapshot.ingress.ports.iter().map(|(port, l)| (*port, l.protocol)).collect();
        let closing: Vec<u16> = self.open.iter().filter(|(port, o)| wanted.get(port) != Some(&o.protocol)).map(|(port, _)| *port).collect();
        for port in closing {
            if let Some(open) = self.open.remove(&port) {
                tracing::info!(port, protocol = protocol_label(open.protocol), "closing listener");
                metrics.listeners.with_label_values(&[&port.to_string(), protocol_label(open.protocol)]).set(0);
                let _ = open.stop.send(true);
                self.draining.push(open.task);
            }
        }
        self.draining.retain(|t| !t.is_finished());
        for (port, protocol) in wanted {
            if self.open.contains_key(&port) {
                continue;
            }
            let addr = SocketAddr::new(self.bind, port);
            let listener = match TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    metrics.listener_bind_errors.with_label_values(&[&port.to_string()]).inc();
                    tracing::error!(%addr, error = %e, "cannot open VPCIngress listener; retrying");
                    continue;
                }
            };
            let kind = match protocol {
                ListenerProtocol::Http => ListenerKind::Cleartext(Entry::Ingress { port, tls_listener: None }),
                ListenerProtocol::Https => ListenerKind::Tls(TlsPort::Ingress(port)),
            };
            let (stop, mut stopped) = watch::channel(false);
            let task = tokio::spawn(server::serve(listener, kind, self.gateway.clone(), self.settings.clone(), async move {
                let _ = stopped.wait_for(|stop| *stop).await;
            }));
            tracing::info!(%addr, protocol = protocol_label(protocol), "VPCIngress listener open");
            metrics.listeners.with_label_values(&[&port.to_string(), protocol_label(protocol)]).set(1);
            self.open.insert(port, Open { protocol, stop, task });
        }
    }
}
