//! Certificates made at test time (rcgen), Secret and VPCIngress YAML for
//! them, and a TLS client that reports what was negotiated: ALPN, protocol
//! version and the certificate the server chose.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType};
use rustls::{ClientConfig, RootCertStore, ServerConfig, SupportedProtocolVersion, server::WebPkiClientVerifier};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, pem::PemObject};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::client::Reply;

/// Keys a test certificate can have, and the PEM encoding the gateway is given.
#[derive(Debug, Clone, Copy)]
pub enum KeyKind {
    /// RSA 2048, handed over as PKCS#1 (`BEGIN RSA PRIVATE KEY`).
    RsaPkcs1,
    /// ECDSA P-256, handed over as SEC1 (`BEGIN EC PRIVATE KEY`).
    EcdsaSec1,
    /// Ed25519, PKCS#8.
    Ed25519,
}

fn fixture_key(name: &str) -> String {
    let path = crate::workspace_root().join("tests/fixtures/keys").join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A test certificate authority.
pub struct Pki {
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

/// A certificate and its key, as PEM and DER.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new(name: &str) -> Self {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let cert = params.self_signed(&key).expect("CA certificate");
        Self { ca_pem: cert.pem(), issuer: Issuer::new(params, key) }
    }

    /// A server certificate for `names` with an ECDSA P-256 key.
    pub fn server(&self, names: &[&str]) -> Issued {
        self.issue(names, None, KeyPair::generate().expect("key"))
    }

    /// A server certificate with a key of `kind`, whose PEM is in the encoding `kind` names.
    pub fn server_with(&self, names: &[&str], kind: KeyKind) -> Issued {
        let (pkcs8, given) = match kind {
            KeyKind::RsaPkcs1 => (fixture_key("rsa-2048.pkcs8.pem"), Some(fixture_key("rsa-2048.pkcs1.pem"))),
            KeyKind::EcdsaSec1 => (fixture_key("ec-p256.pkcs8.pem"), Some(fixture_key("ec-p256.sec1.pem"))),
            KeyKind::Ed25519 => (KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("key").serialize_pem(), None),
        };
        let mut issued = self.issue(names, None, KeyPair::from_pem(&pkcs8).expect("fixture key"));
        if let Some(pem) = given {
            issued.key_pem = pem;
        }
        issued
    }

    /// A client certificate with subject CN=`cn` and the given URI SAN.
    pub fn client(&self, cn: &str, uri: &str) -> Issued {
        self.issue(&[], Some((cn, uri)), KeyPair::generate().expect("key"))
    }

    fn issue(&self, names: &[&str], client: Option<(&str, &str)>, key: KeyPair) -> Issued {
        let mut params = CertificateParams::new(names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>()).expect("params");
        if let Some((cn, uri)) = client {
            params.distinguished_name.push(DnType::CommonName, cn);
            params.subject_alt_names.push(SanType::URI(uri.try_into().expect("URI")));
        }
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem(), der: cert.der().to_vec() }
    }

    pub fn roots(&self) -> RootCertStore {
        let mut roots = RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(c.expect("CA PEM")).expect("CA");
        }
        roots
    }
}

impl Issued {
    fn chain(&self) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes()).collect::<Result<_, _>>().expect("certificate PEM")
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).expect("key PEM")
    }

    /// A server configuration for a TLS backend, requiring client certificates from `client_ca` if given.
    pub fn server_config(&self, client_ca: Option<&Pki>) -> Arc<ServerConfig> {
        let builder = ServerConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().expect("versions");
        let builder = match client_ca {
            Some(ca) => builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider()).build().expect("verifier"),
            ),
            None => builder.with_no_client_auth(),
        };
        let mut config = builder.with_single_cert(self.chain(), self.key()).expect("server certificate");
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

fn indent(pem: &str) -> String {
    pem.lines().map(|l| format!("    {l}\n")).collect()
}

/// A `kubernetes.io/tls` Secret.
pub fn tls_secret(name: &str, issued: &Issued) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}---\n",
        indent(&issued.cert_pem),
        indent(&issued.key_pem)
    )
}

/// A Secret holding a CA bundle in `ca.crt`.
pub fn ca_secret(name: &str, pki: &Pki) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\nstringData:\n  ca.crt: |\n{}---\n",
        indent(&pki.ca_pem)
    )
}

/// A VPCIngress into `vpc` with the given listeners (a YAML flow sequence).
pub fn ingress(name: &str, vpc: &str, listeners: &str) -> String {
    format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCIngress\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{vpcRef: {{name: {vpc}}}, listeners: {listeners}}}\n---\n"
    )
}

/// How a test client connects.
pub struct TlsOptions<'a> {
    pub server_name: &'a str,
    pub roots: RootCertStore,
    pub alpn: &'a [&'a [u8]],
    pub client_cert: Option<&'a Issued>,
    pub versions: &'a [&'static SupportedProtocolVersion],
}

impl<'a> TlsOptions<'a> {
    pub fn new(server_name: &'a str, ca: &Pki) -> Self {
        Self { server_name, roots: ca.roots(), alpn: &[b"h2", b"http/1.1"], client_cert: None, versions: rustls::DEFAULT_VERSIONS }
    }
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// One client TLS connection, with what the handshake settled.
pub struct TlsConnection {
    pub alpn: Option<Vec<u8>>,
    pub version: Option<rustls::ProtocolVersion>,
    /// The DER of the certificate the server presented.
    pub server_cert: Vec<u8>,
    sender: Sender,
}

/// Connects and completes the handshake (and, with TLS 1.3, waits for the
/// server's first flight so a refused client certificate shows up here).
pub async fn tls_connect(addr: SocketAddr, options: TlsOptions<'_>) -> Result<TlsConnection, String> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(options.versions)
        .map_err(|e| e.to_string())?
        .with_root_certificates(options.roots);
    let mut config = match options.client_cert {
        Some(c) => builder.with_client_auth_cert(c.chain(), c.key()).map_err(|e| e.to_string())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = options.alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let name = ServerName::try_from(options.server_name.to_owned()).map_err(|e| e.to_string())?;
    let stream = tokio::time::timeout(Duration::from_secs(10), TlsConnector::from(Arc::new(config)).connect(name, tcp))
        .await
        .map_err(|_| "handshake timed out".to_owned())?
        .map_err(|e| format!("handshake: {e}"))?;
    let (_, conn) = stream.get_ref();
    let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
    let version = conn.protocol_version();
    let server_cert = conn.peer_certificates().and_then(|c| c.first()).map(|c| c.to_vec()).unwrap_or_default();
    let io = TokioIo::new(stream);
    let sender = if alpn.as_deref() == Some(b"h2") {
        let (sender, conn) = http2::handshake(TokioExecutor::new(), io).await.map_err(|e| format!("h2: {e}"))?;
        tokio::spawn(conn);
        Sender::H2(sender)
    } else {
        let (sender, conn) = http1::handshake(io).await.map_err(|e| format!("http/1.1: {e}"))?;
        tokio::spawn(conn);
        Sender::H1(sender)
    };
    Ok(TlsConnection { alpn, version, server_cert, sender })
}

impl TlsConnection {
    /// GET `path` for `host` on this connection.
    pub async fn get(&mut self, host: &str, path: &str, headers: &[(&str, &str)]) -> Result<Reply, String> {
        let mut req = match &self.sender {
            Sender::H1(_) => Request::builder().method(Method::GET).uri(path).header("host", host),
            Sender::H2(_) => Request::builder().method(Method::GET).uri(format!("https://{host}{path}")),
        };
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::new())).map_err(|e| e.to_string())?;
        let response = match &mut self.sender {
            Sender::H1(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
            Sender::H2(s) => {
                s.ready().await.map_err(|e| e.to_string())?;
                s.send_request(req).await
            }
        };
        let (parts, body) = response.map_err(|e| format!("{e:?}"))?.into_parts();
        let body = body.collect().await.map_err(|e| e.to_string())?.to_bytes();
        Ok(Reply { status: parts.status.as_u16(), headers: parts.headers, body: String::from_utf8_lossy(&body).into_owned() })
    }
}
