//! TLS material: certificates, keys and CA bundles from PEM, checked before they are used:
//! a key that does not match its certificate, an empty chain or a CA file
//! without certificates is an error that names the problem, never a listener
//! that fails every handshake. The gateway builds its TLS configurations from
//! these; router-controller uses the same checks to report a broken Secret.
#![forbid(unsafe_code)]

use std::sync::Arc;

use rustls::{RootCertStore, crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use x509_parser::{extensions::GeneralName, prelude::FromDer};

/// Why TLS material was not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaterialError {
    #[error("{0}: no PEM certificate found")]
    NoCertificate(&'static str),
    #[error("{0}: not a valid PEM certificate: {1}")]
    BadCertificate(&'static str, String),
    #[error("tls.key: no PEM private key found (PKCS#8, PKCS#1 and SEC1 are accepted): {0}")]
    BadKey(String),
    #[error("tls.key does not belong to the certificate in tls.crt, or is not a supported RSA, ECDSA or Ed25519 key: {0}")]
    KeyMismatch(String),
    #[error("{0}: no certificate in it is a usable CA: {1}")]
    BadCa(&'static str, String),
    #[error("the Secret has no {0}")]
    Missing(&'static str),
}

/// A certificate chain with its key, and the names it is valid for.
#[derive(Debug)]
pub struct Certificate {
    pub key: Arc<CertifiedKey>,
    /// DNS names of the subjectAltName extension, lower-case (`*.` wildcards kept).
    pub dns_names: Vec<String>,
    /// notAfter as Unix seconds.
    pub not_after: i64,
}

impl Certificate {
    /// Parses a PEM chain (leaf first) and its PEM key.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8], provider: &CryptoProvider) -> Result<Self, MaterialError> {
        let chain = certificates(cert_pem, "tls.crt")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| MaterialError::BadKey(e.to_string()))?;
        let (dns_names, not_after) = leaf_names(&chain[0]).map_err(|e| MaterialError::BadCertificate("tls.crt", e))?;
        let key = CertifiedKey::from_der(chain, key, provider).map_err(|e| MaterialError::KeyMismatch(e.to_string()))?;
        Ok(Self { key: Arc::new(key), dns_names, not_after })
    }

    /// Whether this certificate is valid for `name` (TLS rules: a wildcard covers one label).
    pub fn covers(&self, name: &str) -> Option<Coverage> {
        self.dns_names.iter().find_map(|n| {
            if n == name {
                Some(Coverage::Exact)
            } else {
                let suffix = n.strip_prefix("*.")?;
                let (label, rest) = name.split_once('.')?;
                (!label.is_empty() && rest == suffix).then_some(Coverage::Wildcard)
            }
        })
    }
}

/// How a certificate matches a server name; an exact name beats a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Coverage {
    Wildcard,
    Exact,
}

fn certificates(pem: &[u8], field: &'static str) -> Result<Vec<CertificateDer<'static>>, MaterialError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(pem).collect::<Result<_, _>>().map_err(|e| MaterialError::BadCertificate(field, e.to_string()))?;
    if chain.is_empty() {
        return Err(MaterialError::NoCertificate(field));
    }
    Ok(chain)
}

fn leaf_names(der: &CertificateDer<'_>) -> Result<(Vec<String>, i64), String> {
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).map_err(|e| e.to_string())?;
    let names = match cert.subject_alternative_name().map_err(|e| e.to_string())? {
        Some(san) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        None => Vec::new(),
    };
    Ok((names, cert.validity().not_after.timestamp()))
}

/// A CA bundle (`ca.crt`) as trust roots.
pub fn ca_roots(pem: &[u8], field: &'static str) -> Result<Arc<RootCertStore>, MaterialError> {
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(certificates(pem, field)?);
    if added == 0 {
        return Err(MaterialError::BadCa(field, "none parsed as an X.509 trust anchor".to_owned()));
    }
    Ok(Arc::new(roots))
}

/// The verified identity of a client certificate, as the gateway passes it on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// The subject as an RFC 4514 string (`CN=client,O=Example`).
    pub subject: String,
    /// DNS names, URIs (SPIFFE IDs among them), e-mail addresses and IPs of the subjectAltName.
    pub sans: Vec<String>,
}

impl ClientIdentity {
    pub fn of(der: &CertificateDer<'_>) -> Option<Self> {
        let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der.as_ref()).ok()?;
        let sans = match cert.subject_alternative_name() {
            Ok(Some(san)) => san
                .value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::DNSName(d) => Some(format!("DNS:{d}")),
                    GeneralName::URI(u) => Some(format!("URI:{u}")),
                    GeneralName::RFC822Name(m) => Some(format!("email:{m}")),
                    GeneralName::IPAddress(b) => match b.len() {
                        4 => <[u8; 4]>::try_from(*b).ok().map(|a| format!("IP:{}", std::net::Ipv4Addr::from(a))),
                        16 => <[u8; 16]>::try_from(*b).ok().map(|a| format!("IP:{}", std::net::Ipv6Addr::from(a))),
                        _ => None,
                    },
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        };
        Some(Self { subject: cert.subject().to_string(), sans })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider() -> CryptoProvider {
        rustls::crypto::ring::default_provider()
    }

    fn self_signed(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn ecdsa_and_ed25519_keys_load_and_report_their_names() {
        // RSA (PKCS#1) and SEC1 keys are covered by the gateway's TLS tests: ring cannot generate RSA keys here.
        for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
            let (cert, key) = self_signed(&["api.example.com", "*.apps.example.com"], alg);
            let c = Certificate::from_pem(cert.as_bytes(), key.as_bytes(), &provider()).unwrap();
            assert_eq!(c.dns_names, ["api.example.com", "*.apps.example.com"]);
            assert_eq!(c.covers("api.example.com"), Some(Coverage::Exact));
            assert_eq!(c.covers("shop.apps.example.com"), Some(Coverage::Wildcard));
            assert_eq!(c.covers("a.b.apps.example.com"), None, "a TLS wildcard covers one label");
            assert_eq!(c.covers("apps.example.com"), None);
        }
    }

    #[test]
    fn broken_material_is_named() {
        let (cert, key) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let (_, other_key) = self_signed(&["a.example.com"], &rcgen::PKCS_ECDSA_P256_SHA256);
        let p = provider();
        assert_eq!(Certificate::from_pem(b"", key.as_bytes(), &p).unwrap_err(), MaterialError::NoCertificate("tls.crt"));
        assert!(matches!(Certificate::from_pem(cert.as_bytes(), b"nope", &p), Err(MaterialError::BadKey(_))));
        assert!(matches!(Certificate::from_pem(cert.as_bytes(), other_key.as_bytes(), &p), Err(MaterialError::KeyMismatch(_))));
        assert!(ca_roots(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", "ca.crt").is_err());
        assert!(ca_roots(cert.as_bytes(), "ca.crt").is_ok());
    }

    #[test]
    fn client_identity_has_subject_and_sans() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["client.example.com".to_owned()]).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, "billing");
        params.subject_alt_names.push(rcgen::SanType::URI("spiffe://example.com/billing".try_into().unwrap()));
        let cert = params.self_signed(&key).unwrap();
        let id = ClientIdentity::of(cert.der()).unwrap();
        assert_eq!(id.subject, "CN=billing");
        assert_eq!(id.sans, ["DNS:client.example.com", "URI:spiffe://example.com/billing"]);
    }
}
