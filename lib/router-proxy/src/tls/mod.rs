//! TLS on both sides of the gateway, built from Secrets at every reload.
//!
//! [`TlsBuilder::build`] turns a snapshot's listener plans and services into
//! a [`TlsState`]: a rustls server configuration per HTTPS listener (and for
//! the internal HTTPS listener of `ROUTER_TLS_CERT`/`ROUTER_TLS_KEY`), and
//! TLS clients per service that wants TLS to its endpoints. New handshakes
//! use the state current when they start; open connections keep theirs.
//!
//! Hot reload keeps what works: a Secret whose new content is broken (or
//! that disappeared) is reported on the listener or service, and its last
//! good certificate stays in service. Session tickets and the session cache
//! outlive reloads, so resumption survives a certificate change.

pub mod accept;
pub mod secrets;
pub mod server;
pub mod upstream;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use router_api::v1alpha1::{CA_CERT, ServiceProtocol, TLS_CERT, TLS_KEY};
use router_core::{ServiceKey, Snapshot, ingress::SecretKey, snapshot::ServiceTarget};
use router_tls::{Certificate, ca_roots};
use rustls::{RootCertStore, ServerConfig, crypto::CryptoProvider, pki_types::ServerName};

use self::{
    secrets::Secrets,
    server::{SessionState, SniResolver, server_config},
};
use crate::upstream::{MirrorClient, UpstreamClient, UpstreamSettings, pooled_client, tls_connector};

/// The label of the internal HTTPS listener in reports.
pub const INTERNAL_LISTENER: &str = "internal-https";

/// The crypto provider of every TLS connection the gateway makes or accepts.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A service's TLS clients (their pools are its own).
pub struct UpstreamTls {
    pub client: UpstreamClient,
    pub mirror: MirrorClient,
}

/// Everything TLS the request path needs, swapped in with each snapshot.
#[derive(Default)]
pub struct TlsState {
    /// By listener label (`namespace/ingress/listener`).
    pub listeners: HashMap<Arc<str>, Arc<ServerConfig>>,
    /// The internal HTTPS listener's configuration.
    pub internal: Option<Arc<ServerConfig>>,
    /// Per service with TLS to its endpoints: its clients, or why there are none.
    pub upstream: HashMap<ServiceKey, Result<Arc<UpstreamTls>, Arc<str>>>,
}

/// PEM files of the internal HTTPS listener's certificate (`ROUTER_TLS_CERT`, `ROUTER_TLS_KEY`).
#[derive(Debug, Clone)]
pub struct DefaultCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Identifies what a service's TLS clients were built from; the same Arcs mean the same content.
#[derive(PartialEq)]
struct UpstreamInputs {
    server_name: Option<String>,
    roots: usize,
    client_cert: Option<usize>,
    device: Option<String>,
    protocol: ServiceProtocol,
}

#[derive(Default)]
struct Cache {
    certificates: HashMap<SecretKey, (Vec<u8>, Arc<Certificate>)>,
    roots: HashMap<SecretKey, (Vec<u8>, Arc<RootCertStore>)>,
    upstream: HashMap<ServiceKey, (UpstreamInputs, Arc<UpstreamTls>)>,
}

/// Loads with last-good fallback: new content that parses replaces the old;
/// content that does not is reported and the previous value stays.
fn last_good<T>(
    cache: &mut HashMap<SecretKey, (Vec<u8>, Arc<T>)>,
    key: &SecretKey,
    content: Result<Vec<u8>, String>,
    parse: impl FnOnce(&[u8]) -> Result<T, String>,
    problems: &mut Vec<String>,
) -> Option<Arc<T>> {
    let previous = cache.get(key).map(|(_, v)| v.clone());
    let failure = match content {
        Ok(content) => {
            if let Some((old, value)) = cache.get(key)
                && *old == content
            {
                return Some(value.clone());
            }
            match parse(&content) {
                Ok(value) => {
                    let value = Arc::new(value);
                    cache.insert(key.clone(), (content, value.clone()));
                    return Some(value);
                }
                Err(e) => format!("Secret {key}: {e}"),
            }
        }
        Err(e) => e,
    };
    match previous {
        Some(v) => {
            problems.push(format!("{failure}; still serving the previous one"));
            Some(v)
        }
        None => {
            problems.push(failure);
            None
        }
    }
}

/// Builds [`TlsState`]s, remembering the last good material across reloads.
pub struct TlsBuilder {
    session: SessionState,
    settings: UpstreamSettings,
    default_certificate: Option<DefaultCertificate>,
    cache: Mutex<Cache>,
}

impl TlsBuilder {
    pub fn new(
        provider: Arc<CryptoProvider>,
        settings: UpstreamSettings,
        default_certificate: Option<DefaultCertificate>,
    ) -> Result<Self, rustls::Error> {
        Ok(Self { session: SessionState::new(provider)?, settings, default_certificate, cache: Mutex::default() })
    }

    pub fn default_certificate(&self) -> Option<&DefaultCertificate> {
        self.default_certificate.as_ref()
    }

    /// The TLS state for `snapshot`; problems go into its report.
    pub fn build(&self, snapshot: &mut Snapshot, secrets: &Secrets) -> TlsState {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let provider = self.session.provider.clone();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let mut state = TlsState::default();

        let certificate = |cache: &mut Cache, key: &SecretKey, problems: &mut Vec<String>| {
            let content = secrets.get(key, TLS_CERT).and_then(|c| secrets.get(key, TLS_KEY).map(|k| [c, b"\0", k].concat()));
            let cert = last_good(&mut cache.certificates, key, content, |pem| parse_pair(pem, &provider), problems)?;
            if cert.not_after < now {
                problems.push(format!("the certificate in Secret {key} has expired; clients will reject it"));
            }
            Some(cert)
        };
        let roots = |cache: &mut Cache, key: &SecretKey, problems: &mut Vec<String>| {
            let content = secrets.get(key, CA_CERT).map(<[u8]>::to_vec);
            last_good(
                &mut cache.roots,
                key,
                content,
                |pem| ca_roots(pem, CA_CERT).map(Arc::unwrap_or_clone).map_err(|e| e.to_string()),
                problems,
            )
        };

        for port in snapshot.ingress.ports.values() {
            for listener in &port.listeners {
                let Some(plan) = &listener.tls else { continue };
                let mut problems = Vec::new();
                let certs: Vec<Arc<Certificate>> =
                    plan.certificates.iter().filter_map(|k| certificate(&mut cache, k, &mut problems)).collect();
                let client_ca = match &plan.client_ca {
                    None => Ok(None),
                    Some(k) => roots(&mut cache, k, &mut problems).map(Some).ok_or(()),
                };
                match (SniResolver::new(certs), client_ca) {
                    (None, _) => problems.push("no usable certificate: every TLS handshake on this listener fails".to_owned()),
                    (_, Err(())) => problems.push(
                        "no usable client CA: every TLS handshake on this listener fails rather than admit unverified clients".to_owned(),
                    ),
                    (Some(resolver), Ok(ca)) => match server_config(&self.session, resolver, plan.min_version, ca) {
                        Ok(config) => {
                            state.listeners.insert(listener.label.clone(), config);
                        }
                        Err(e) => problems.push(format!("TLS configuration rejected: {e}")),
                    },
                }
                if let Some(r) = snapshot.report.listeners.get_mut(&*listener.label) {
                    r.problems.extend(problems);
                }
            }
        }

        if let Some(files) = &self.default_certificate {
            let mut problems = Vec::new();
            let key = SecretKey { namespace: String::new(), name: "ROUTER_TLS_CERT".to_owned() };
            let read = |p: &PathBuf| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()));
            let content = read(&files.cert).and_then(|c| read(&files.key).map(|k| [c.as_slice(), b"\0", k.as_slice()].concat()));
            let cert = last_good(&mut cache.certificates, &key, content, |pem| parse_pair(pem, &provider), &mut problems);
            match cert.and_then(|c| SniResolver::new(vec![c])) {
                Some(resolver) => match server_config(&self.session, resolver, Default::default(), None) {
                    Ok(config) => state.internal = Some(config),
                    Err(e) => problems.push(format!("TLS configuration rejected: {e}")),
                },
                None => problems.push("no usable certificate: every TLS handshake on the internal HTTPS listener fails".to_owned()),
            }
            snapshot.report.listeners.entry(INTERNAL_LISTENER.to_owned()).or_default().problems.extend(problems);
        }

        let mut upstream_cache = std::mem::take(&mut cache.upstream);
        for service in snapshot.services.values().filter(|s| wants_tls(s)) {
            let mut problems = Vec::new();
            let tls = service.tls.clone().unwrap_or_default();
            let namespace = &service.key.namespace;
            let ca = match &tls.ca_certificate_ref {
                Some(r) => roots(&mut cache, &SecretKey::local(namespace, r), &mut problems),
                None => Some(upstream::public_roots()),
            };
            let client_cert = match &tls.client_certificate_ref {
                Some(r) => certificate(&mut cache, &SecretKey::local(namespace, r), &mut problems).map(Some),
                None => Some(None),
            };
            let server_name = match tls.server_name.as_deref().map(|n| ServerName::try_from(n.to_owned())) {
                Some(Err(e)) => {
                    problems.push(format!("tls.serverName: {e}"));
                    None
                }
                Some(Ok(n)) => Some(Some(n)),
                None => Some(None),
            };
            let built = match (ca, client_cert, server_name) {
                (Some(ca), Some(client_cert), Some(server_name)) => {
                    let inputs = UpstreamInputs {
                        server_name: tls.server_name.clone(),
                        roots: Arc::as_ptr(&ca) as usize,
                        client_cert: client_cert.as_ref().map(|c| Arc::as_ptr(c) as usize),
                        device: service.vrf_device.clone().filter(|_| self.settings.bind_vrf),
                        protocol: service.protocol,
                    };
                    match upstream_cache.remove(&service.key).filter(|(old, _)| *old == inputs) {
                        Some((inputs, clients)) => {
                            cache.upstream.insert(service.key.clone(), (inputs, clients.clone()));
                            Ok(clients)
                        }
                        None => match upstream::client_config(&provider, ca, client_cert.as_deref()) {
                            Ok(config) => {
                                let clients = Arc::new(self.clients(service, config, server_name, inputs.device.as_deref()));
                                cache.upstream.insert(service.key.clone(), (inputs, clients.clone()));
                                Ok(clients)
                            }
                            Err(e) => Err(format!("TLS client configuration rejected: {e}")),
                        },
                    }
                }
                _ => Err("TLS to the endpoints is not possible; requests are answered 502 upstream-tls-error".to_owned()),
            };
            if let Err(e) = &built {
                problems.push(e.clone());
            }
            snapshot.report.services.entry(service.key.clone()).or_default().extend(problems);
            state.upstream.insert(service.key.clone(), built.map_err(Arc::from));
        }
        state
    }

    fn clients(
        &self,
        service: &ServiceTarget,
        config: rustls::ClientConfig,
        server_name: Option<ServerName<'static>>,
        device: Option<&str>,
    ) -> UpstreamTls {
        // HTTP/2 and gRPC services must speak h2; HTTPS lets ALPN choose.
        let http2_only = matches!(service.protocol, ServiceProtocol::Http2 | ServiceProtocol::Grpc);
        let connector = tls_connector(&self.settings, device, config, server_name, http2_only);
        UpstreamTls {
            client: pooled_client(&self.settings, connector.clone(), http2_only),
            mirror: pooled_client(&self.settings, connector, http2_only),
        }
    }
}

/// Whether a service's endpoints are reached over TLS.
pub fn wants_tls(service: &ServiceTarget) -> bool {
    service.protocol == ServiceProtocol::Https || service.tls.is_some()
}

/// A certificate and key stored as `cert \0 key`.
fn parse_pair(pem: &[u8], provider: &CryptoProvider) -> Result<Certificate, String> {
    let split = pem.iter().position(|&b| b == 0).unwrap_or(pem.len());
    let (cert, key) = (&pem[..split], pem.get(split + 1..).unwrap_or_default());
    Certificate::from_pem(cert, key, provider).map_err(|e| e.to_string())
}
