//! TLS from the gateway to a service's endpoints (VPCService `protocol: HTTPS`
//! or `tls:`): the endpoints' certificates are verified against the
//! service's CA bundle (the Mozilla roots when it names none) for the
//! configured server name (the endpoint's IP otherwise), and a client
//! certificate is presented when the service asks for mTLS.

use std::sync::Arc;

use router_api::v1alpha1::TlsVersion;
use rustls::{ClientConfig, RootCertStore, SignatureScheme, client::ResolvesClientCert, crypto::CryptoProvider, sign::CertifiedKey};

use router_tls::Certificate;

use super::server::versions;

/// Presents one client certificate whatever the server asks for.
#[derive(Debug)]
struct FixedClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for FixedClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The public web's roots, for services that name no CA of their own.
pub fn public_roots() -> Arc<RootCertStore> {
    Arc::new(RootCertStore { roots: webpki_roots::TLS_SERVER_ROOTS.to_vec() })
}

/// The client configuration of one service. ALPN is left to the connector.
pub fn client_config(
    provider: &Arc<CryptoProvider>,
    roots: Arc<RootCertStore>,
    client_cert: Option<&Certificate>,
) -> Result<ClientConfig, rustls::Error> {
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions(TlsVersion::Tls12))?
        .with_root_certificates(roots);
    Ok(match client_cert {
        Some(c) => builder.with_client_cert_resolver(Arc::new(FixedClientCert(c.key.clone()))),
        None => builder.with_no_client_auth(),
    })
}
