//! TLS termination: one rustls ServerConfig per listener, a certificate
//! chosen by SNI among the listener's certificates (an exact name first, then
//! a wildcard, else the first certificate), ALPN `h2` and `http/1.1`, TLS 1.2
//! and 1.3 only, and client certificates verified against a CA when the
//! listener asks for them.

use std::sync::Arc;

use router_api::v1alpha1::TlsVersion;
use rustls::{
    RootCertStore, ServerConfig,
    crypto::CryptoProvider,
    server::{ClientHello, ProducesTickets, ResolvesServerCert, StoresServerSessions, WebPkiClientVerifier},
    sign::CertifiedKey,
};

use router_tls::Certificate;

/// Picks a listener's certificate by SNI.
#[derive(Debug)]
pub struct SniResolver {
    /// In the listener's order; the first is the default.
    certificates: Vec<Arc<Certificate>>,
}

impl SniResolver {
    pub fn new(certificates: Vec<Arc<Certificate>>) -> Option<Self> {
        (!certificates.is_empty()).then_some(Self { certificates })
    }

    pub fn pick(&self, server_name: Option<&str>) -> &Arc<Certificate> {
        let best = server_name.and_then(|name| {
            let name = name.to_ascii_lowercase();
            // max_by_key keeps the last of equals: walk in reverse so the first listed wins a tie.
            self.certificates.iter().rev().filter_map(|c| c.covers(&name).map(|cov| (cov, c))).max_by_key(|(cov, _)| *cov).map(|(_, c)| c)
        });
        best.unwrap_or(&self.certificates[0])
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()).key.clone())
    }
}

/// What the process shares across every listener's configuration, so that a
/// reload does not throw away session state: resumption keeps working.
#[derive(Debug, Clone)]
pub struct SessionState {
    pub provider: Arc<CryptoProvider>,
    pub tickets: Arc<dyn ProducesTickets>,
    pub cache: Arc<dyn StoresServerSessions>,
}

impl SessionState {
    pub fn new(provider: Arc<CryptoProvider>) -> Result<Self, rustls::Error> {
        Ok(Self {
            provider,
            tickets: rustls::crypto::ring::Ticketer::new()?,
            cache: rustls::server::ServerSessionMemoryCache::new(16 * 1024),
        })
    }
}

/// The protocol versions at or above `min`; nothing below TLS 1.2 exists here.
pub fn versions(min: TlsVersion) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static TLS12_AND_13: [&rustls::SupportedProtocolVersion; 2] = [&rustls::version::TLS13, &rustls::version::TLS12];
    static TLS13_ONLY: [&rustls::SupportedProtocolVersion; 1] = [&rustls::version::TLS13];
    match min {
        TlsVersion::Tls12 => &TLS12_AND_13,
        TlsVersion::Tls13 => &TLS13_ONLY,
    }
}

/// A listener's server configuration.
pub fn server_config(
    session: &SessionState,
    resolver: SniResolver,
    min: TlsVersion,
    client_ca: Option<Arc<RootCertStore>>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let builder = ServerConfig::builder_with_provider(session.provider.clone()).with_protocol_versions(versions(min))?;
    let builder = match client_ca {
        Some(roots) => builder.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(roots, session.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?,
        ),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(Arc::new(resolver));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = session.tickets.clone();
    config.session_storage = session.cache.clone();
    Ok(Arc::new(config))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(names: &[&str]) -> Arc<Certificate> {
        let key = rcgen::KeyPair::generate().unwrap();
        let c =
            rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap().self_signed(&key).unwrap();
        Arc::new(
            Certificate::from_pem(c.pem().as_bytes(), key.serialize_pem().as_bytes(), &rustls::crypto::ring::default_provider()).unwrap(),
        )
    }

    #[test]
    fn sni_prefers_exact_then_wildcard_then_the_first_certificate() {
        let default = cert(&["default.example.com"]);
        let wild = cert(&["*.example.com"]);
        let exact = cert(&["api.example.com"]);
        let r = SniResolver::new(vec![default.clone(), wild.clone(), exact.clone()]).unwrap();
        assert!(Arc::ptr_eq(r.pick(Some("api.example.com")), &exact));
        assert!(Arc::ptr_eq(r.pick(Some("API.example.com")), &exact));
        assert!(Arc::ptr_eq(r.pick(Some("shop.example.com")), &wild));
        assert!(Arc::ptr_eq(r.pick(Some("other.org")), &default));
        assert!(Arc::ptr_eq(r.pick(None), &default));
        let twice = cert(&["*.example.com"]);
        let r = SniResolver::new(vec![wild.clone(), twice]).unwrap();
        assert!(Arc::ptr_eq(r.pick(Some("x.example.com")), &wild), "the first listed wins a tie");
        assert!(SniResolver::new(Vec::new()).is_none());
    }

    #[test]
    fn min_version_13_offers_only_tls13() {
        assert_eq!(versions(TlsVersion::Tls13).len(), 1);
        assert_eq!(versions(TlsVersion::Tls12).len(), 2);
    }
}
