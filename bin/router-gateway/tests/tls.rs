//! TLS and VPCIngress through the real gateway: HTTPS listeners with SNI and
//! ALPN, refused old protocol versions, certificate hot reload under an open
//! connection, client certificate validation, misdirected requests, listener
//! conflicts, the internal HTTPS listener, and TLS/mTLS to upstreams.

use std::time::Duration;

use router_tests::{
    backend::{start_backends, start_tls_backends},
    client::Client,
    gateway::{GatewayProcess, free_port, route, service_on},
    tls::{KeyKind, Pki, TlsOptions, ca_secret, ingress, tls_connect, tls_secret},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn addr(port: u16) -> std::net::SocketAddr {
    ([127, 0, 0, 1], port).into()
}

async fn start(config: &str) -> GatewayProcess {
    GatewayProcess::start(BIN, config, &["--ingress-bind", "127.0.0.1"]).await
}

#[tokio::test]
async fn sni_picks_the_certificate_alpn_picks_the_protocol_and_routes_attach_by_ingress_ref() {
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("test-ca");
    let default = pki.server(&["default.example.com", "127.0.0.1"]);
    let api = pki.server_with(&["api.example.com"], KeyKind::RsaPkcs1);
    let wild = pki.server_with(&["*.apps.example.com"], KeyKind::Ed25519);
    let port = free_port();
    let config = service_on("web", "web", &[&backends[0]], "HTTP")
        + &tls_secret("default-cert", &default)
        + &tls_secret("api-cert", &api)
        + &tls_secret("wild-cert", &wild)
        + &ingress(
            "public",
            "web-vpc",
            &format!(
                "[{{name: https, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: default-cert}}, {{name: api-cert}}, {{name: wild-cert}}]}}}}]"
            ),
        )
        + &route(
            "external",
            "  ingressRefs: [{name: public}]\n  hostnames: [api.example.com, \"*.apps.example.com\"]\n  destinations: [{vpcServiceRef: {name: web}}]",
        )
        + &route("internal", "  hostnames: [internal.example.com]\n  destinations: [{vpcServiceRef: {name: web}}]");
    let gw = start(&config).await;

    let mut conn = tls_connect(addr(port), TlsOptions::new("api.example.com", &pki)).await.expect("handshake for api.example.com");
    assert_eq!(conn.server_cert, api.der, "SNI api.example.com gets the api certificate");
    assert_eq!(conn.alpn.as_deref(), Some(&b"h2"[..]), "ALPN negotiates h2");
    let r = conn.get("api.example.com", "/hello", &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");
    assert_eq!(r.backend(), Some("web"));

    let conn = tls_connect(addr(port), TlsOptions::new("shop.apps.example.com", &pki)).await.expect("wildcard handshake");
    assert_eq!(conn.server_cert, wild.der, "a wildcard certificate covers its subdomains");

    // An IP as server name sends no SNI: the first certificate is the default.
    let conn = tls_connect(addr(port), TlsOptions::new("127.0.0.1", &pki)).await.expect("handshake without SNI");
    assert_eq!(conn.server_cert, default.der);

    let mut h1 = TlsOptions::new("api.example.com", &pki);
    h1.alpn = &[b"http/1.1"];
    let mut conn = tls_connect(addr(port), h1).await.expect("http/1.1 handshake");
    assert_eq!(conn.alpn.as_deref(), Some(&b"http/1.1"[..]));
    assert_eq!(conn.get("api.example.com", "/", &[]).await.unwrap().status, 200);

    // Routes without ingressRefs are internal; routes with them are not served internally.
    let mut conn = tls_connect(addr(port), TlsOptions::new("api.example.com", &pki)).await.unwrap();
    let r = conn.get("internal.example.com", "/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (404, Some("no-route")));
    let internal = Client::http1();
    assert_eq!(internal.get(&gw.url("/"), &[("host", "internal.example.com")]).await.unwrap().status, 200);
    assert_eq!(internal.get(&gw.url("/"), &[("host", "api.example.com")]).await.unwrap().status, 404);

    assert!(gw.metric_sum("datum_router_tls_handshakes_total{alpn=\"h2\"").await >= 3);
}

const TLS12_ONLY: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];

/// A TLS 1.1 ClientHello (no supported_versions extension, client_version 3.2).
fn tls11_client_hello() -> Vec<u8> {
    let mut body = vec![0x03, 0x02]; // client_version TLS 1.1
    body.extend([7u8; 32]); // random
    body.push(0); // no session id
    // ECDHE-ECDSA-AES128-GCM-SHA256 (which the gateway has), ECDHE-RSA-AES128-SHA, AES128-SHA
    body.extend([0x00, 0x06, 0xc0, 0x2b, 0xc0, 0x13, 0x00, 0x2f]);
    body.extend([0x01, 0x00]); // null compression
    // signature_algorithms (ecdsa_secp256r1_sha256, rsa_pss_rsae_sha256): without it rustls refuses
    // even earlier, with handshake_failure; with it, the version itself is what is refused.
    body.extend([0x00, 0x0a, 0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x08, 0x04]);
    let mut handshake = vec![0x01, 0x00, 0x00, body.len() as u8];
    handshake.extend(body);
    let mut record = vec![0x16, 0x03, 0x01, 0x00, handshake.len() as u8];
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls_1_1_is_refused_and_min_version_1_3_is_honoured() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("test-ca");
    let cert = pki.server(&["api.example.com"]);
    let (modern, strict) = (free_port(), free_port());
    let config = service_on("web", "web", &[&backends[0]], "HTTP")
        + &tls_secret("cert", &cert)
        + &ingress(
            "public",
            "web-vpc",
            &format!(
                "[{{name: modern, port: {modern}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}, \
                 {{name: strict, port: {strict}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}], minVersion: \"1.3\"}}}}]"
            ),
        )
        + &route("external", "  ingressRefs: [{name: public}]\n  destinations: [{vpcServiceRef: {name: web}}]");
    let gw = start(&config).await;

    let mut tcp = tokio::net::TcpStream::connect(addr(modern)).await.unwrap();
    tcp.write_all(&tls11_client_hello()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(answer.len() >= 7, "the gateway answers a TLS 1.1 hello with an alert, got {answer:?}");
    assert_eq!((answer[0], answer[6]), (0x15, 70), "a fatal protocol_version alert, not a ServerHello: {answer:?}");

    let mut tls12 = TlsOptions::new("api.example.com", &pki);
    tls12.versions = TLS12_ONLY;
    let mut conn = tls_connect(addr(modern), tls12).await.expect("TLS 1.2 is accepted by default");
    assert_eq!(conn.version, Some(rustls::ProtocolVersion::TLSv1_2));
    assert_eq!(conn.get("api.example.com", "/", &[]).await.unwrap().status, 200);

    let mut tls12 = TlsOptions::new("api.example.com", &pki);
    tls12.versions = TLS12_ONLY;
    assert!(tls_connect(addr(strict), tls12).await.is_err(), "minVersion 1.3 refuses TLS 1.2");
    let conn = tls_connect(addr(strict), TlsOptions::new("api.example.com", &pki)).await.expect("TLS 1.3");
    assert_eq!(conn.version, Some(rustls::ProtocolVersion::TLSv1_3));
    assert!(gw.metric_sum("datum_router_tls_handshake_errors_total{reason=\"handshake\"}").await >= 2);
}

async fn config_json(gw: &GatewayProcess) -> serde_json::Value {
    Client::http1().get(&gw.admin_url("/config"), &[]).await.unwrap().json()
}

#[tokio::test]
async fn a_new_certificate_takes_effect_without_dropping_connections_and_a_broken_one_is_refused() {
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("test-ca");
    let first = pki.server(&["api.example.com"]);
    let second = pki.server_with(&["api.example.com"], KeyKind::EcdsaSec1);
    let port = free_port();
    let config = |secret: &str| {
        service_on("web", "web", &[&backends[0]], "HTTP")
            + secret
            + &ingress(
                "public",
                "web-vpc",
                &format!("[{{name: https, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}]"),
            )
            + &route("external", "  ingressRefs: [{name: public}]\n  destinations: [{vpcServiceRef: {name: web}}]")
    };
    let gw = start(&config(&tls_secret("cert", &first))).await;
    let mut open = tls_connect(addr(port), TlsOptions::new("api.example.com", &pki)).await.unwrap();
    assert_eq!(open.server_cert, first.der);
    assert_eq!(open.get("api.example.com", "/", &[]).await.unwrap().status, 200);

    gw.write_config(&config(&tls_secret("cert", &second)));
    router_tests::eventually("the new certificate on new handshakes", || async {
        tls_connect(addr(port), TlsOptions::new("api.example.com", &pki)).await.is_ok_and(|c| c.server_cert == second.der)
    })
    .await;
    assert_eq!(open.get("api.example.com", "/", &[]).await.expect("the open connection survives the reload").status, 200);

    let mut broken = second.clone();
    broken.cert_pem = first.cert_pem.clone(); // the key no longer matches the certificate
    gw.write_config(&config(&tls_secret("cert", &broken)));
    router_tests::eventually("the broken certificate reported", || async {
        config_json(&gw).await["listeners"]["default/public/https"]["problems"]
            .as_array()
            .is_some_and(|p| p.iter().any(|m| m.as_str().is_some_and(|m| m.contains("does not belong") && m.contains("still serving"))))
    })
    .await;
    let conn = tls_connect(addr(port), TlsOptions::new("api.example.com", &pki)).await.expect("still served");
    assert_eq!(conn.server_cert, second.der, "the last good certificate stays in service");
    assert_eq!(open.get("api.example.com", "/", &[]).await.unwrap().status, 200);
    assert!(!gw.log().contains("PRIVATE KEY"), "key material never reaches the log");
}

#[tokio::test]
async fn client_certificates_are_required_verified_and_passed_on_as_trusted_headers() {
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("server-ca");
    let clients = Pki::new("clients-ca");
    let rogue = Pki::new("rogue-ca");
    let cert = pki.server(&["secure.example.com", "open.example.com"]);
    let (secure, open) = (free_port(), free_port());
    let config = service_on("web", "web", &[&backends[0]], "HTTP")
        + &tls_secret("cert", &cert)
        + &ca_secret("clients-ca", &clients)
        + &ingress(
            "public",
            "web-vpc",
            &format!(
                "[{{name: mtls, port: {secure}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}], clientValidation: {{caCertificateRef: {{name: clients-ca}}}}}}}}, \
                 {{name: open, port: {open}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}]"
            ),
        )
        + &route("external", "  ingressRefs: [{name: public}]\n  destinations: [{vpcServiceRef: {name: web}}]");
    let _gw = start(&config).await;

    let attempt = |client: Option<router_tests::tls::Issued>| {
        let pki = &pki;
        async move {
            let mut options = TlsOptions::new("secure.example.com", pki);
            options.client_cert = client.as_ref();
            // With TLS 1.3 the server refuses the client's certificate after the client has finished: the first request fails.
            let mut conn = tls_connect(addr(secure), options).await?;
            conn.get("secure.example.com", "/", &[("x-datum-client-cert-subject", "CN=admin")]).await
        }
    };
    assert!(attempt(None).await.is_err(), "no client certificate, no request");
    assert!(
        attempt(Some(rogue.client("billing", "spiffe://example.com/billing"))).await.is_err(),
        "a certificate from another CA is refused"
    );
    let r = attempt(Some(clients.client("billing", "spiffe://example.com/billing"))).await.expect("a certificate from the CA is accepted");
    assert_eq!(r.status, 200);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-datum-client-cert-subject"], "CN=billing", "the verified subject, not what the client claimed");
    assert_eq!(seen["x-datum-client-cert-sans"], "URI:spiffe://example.com/billing");

    let mut conn = tls_connect(addr(open), TlsOptions::new("open.example.com", &pki)).await.unwrap();
    let r = conn.get("open.example.com", "/", &[("x-datum-client-cert-subject", "CN=admin")]).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"].get("x-datum-client-cert-subject").is_none(), "a forged identity header is stripped");
}

#[tokio::test]
async fn listeners_share_a_port_by_hostname_misdirected_requests_get_421_and_conflicts_are_reported() {
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("test-ca");
    let a = pki.server(&["a.example.com"]);
    let b = pki.server(&["b.example.com"]);
    let port = free_port();
    let gw_admin_port_listener = "{name: admin, port: ADMIN, protocol: HTTP}";
    let base = service_on("web", "web", &[&backends[0]], "HTTP")
        + &tls_secret("a-cert", &a)
        + &tls_secret("b-cert", &b)
        + &ingress(
            "public",
            "web-vpc",
            &format!(
                "[{{name: a, port: {port}, protocol: HTTPS, hostnames: [a.example.com], tls: {{certificateRefs: [{{name: a-cert}}]}}}}, \
                 {{name: b, port: {port}, protocol: HTTPS, hostnames: [b.example.com], tls: {{certificateRefs: [{{name: b-cert}}]}}}}]"
            ),
        )
        + &route("external", "  ingressRefs: [{name: public}]\n  destinations: [{vpcServiceRef: {name: web}}]");
    let gw = start(&base).await;

    let mut conn = tls_connect(addr(port), TlsOptions::new("a.example.com", &pki)).await.unwrap();
    assert_eq!(conn.server_cert, a.der);
    assert_eq!(conn.get("a.example.com", "/", &[]).await.unwrap().status, 200);
    let r = conn.get("b.example.com", "/", &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (421, Some("misdirected-request")), "b's host on a's connection");
    let mut conn = tls_connect(addr(port), TlsOptions::new("b.example.com", &pki)).await.unwrap();
    assert_eq!(conn.server_cert, b.der);
    assert_eq!(conn.get("b.example.com", "/", &[]).await.unwrap().status, 200);

    let late = ingress(
        "zz-late",
        "web-vpc",
        &format!(
            "[{{name: plain, port: {port}, protocol: HTTP}}, {{name: dup, port: {port}, protocol: HTTPS, hostnames: [a.example.com], \
             tls: {{certificateRefs: [{{name: a-cert}}]}}}}, {}]",
            gw_admin_port_listener.replace("ADMIN", &gw.admin.port().to_string())
        ),
    );
    gw.write_config(&(base.clone() + &late));
    router_tests::eventually("the conflicts reported", || async {
        let c = config_json(&gw).await;
        let problems = |l: &str| c["listeners"][l]["problems"].to_string();
        problems("default/zz-late/plain").contains("protocol conflict")
            && problems("default/zz-late/plain").contains("default/public/a")
            && problems("default/zz-late/dup").contains("hostname conflict")
            && problems("default/zz-late/admin").contains("used by the gateway itself")
            && c["listeners"]["default/public/a"]["programmed"] == true
    })
    .await;
    assert_eq!(conn.get("b.example.com", "/", &[]).await.unwrap().status, 200, "the winners keep serving");

    // A removed VPCIngress closes its port.
    gw.write_config(&service_on("web", "web", &[&backends[0]], "HTTP"));
    router_tests::eventually("the port closed", || async { tokio::net::TcpStream::connect(addr(port)).await.is_err() }).await;
}

#[tokio::test]
async fn router_tls_cert_and_key_serve_internal_routes_over_https_and_reload() {
    let backends = start_backends(&["web"]).await;
    let pki = Pki::new("test-ca");
    let first = pki.server(&["internal.example.com"]);
    let second = pki.server(&["internal.example.com"]);
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert, &first.cert_pem).unwrap();
    std::fs::write(&key, &first.key_pem).unwrap();
    let port = free_port();
    let config = service_on("web", "web", &[&backends[0]], "HTTP")
        + &route("internal", "  hostnames: [internal.example.com]\n  destinations: [{vpcServiceRef: {name: web}}]");
    let listen = addr(port).to_string();
    let _gw = GatewayProcess::start_with_env(
        BIN,
        &config,
        &["--tls-listen", &listen],
        &[("ROUTER_TLS_CERT", cert.to_str().unwrap()), ("ROUTER_TLS_KEY", key.to_str().unwrap())],
    )
    .await;
    let mut conn = tls_connect(addr(port), TlsOptions::new("internal.example.com", &pki)).await.unwrap();
    assert_eq!(conn.server_cert, first.der);
    let r = conn.get("internal.example.com", "/", &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["headers"]["x-forwarded-proto"], "https");

    // Replace both files the way a Secret volume update does: write aside, rename.
    for (path, pem) in [(&key, &second.key_pem), (&cert, &second.cert_pem)] {
        let tmp = dir.path().join(".tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }
    router_tests::eventually("the replaced PEM files in service", || async {
        tls_connect(addr(port), TlsOptions::new("internal.example.com", &pki)).await.is_ok_and(|c| c.server_cert == second.der)
    })
    .await;
}

#[tokio::test]
async fn upstream_tls_and_mtls_verify_the_endpoint_and_fail_cleanly_with_a_wrong_ca() {
    let upstream_ca = Pki::new("upstream-ca");
    let gateway_clients = Pki::new("gateway-clients");
    let rogue = Pki::new("rogue-ca");
    let backend_cert = upstream_ca.server(&["backend.internal"]);
    let backends = start_tls_backends(&["secure"], backend_cert.server_config(Some(&gateway_clients))).await;
    let gateway_cert = gateway_clients.client("router-gateway", "spiffe://datum/router-gateway");
    let tls_service = |name: &str, tls: &str| {
        format!(
            "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: {name}, namespace: default}}\n\
             spec: {{vpcAttachmentSelector: {{matchLabels: {{app: secure}}}}, port: {}, protocol: HTTPS, tls: {tls}}}\n---\n",
            backends[0].addr.port()
        )
    };
    let config = service_on("plain", "secure", &[&backends[0]], "HTTP")
        + &ca_secret("upstream-ca", &upstream_ca)
        + &ca_secret("rogue-ca", &rogue)
        + &tls_secret("gateway-client", &gateway_cert)
        + &tls_service(
            "secure",
            "{serverName: backend.internal, caCertificateRef: {name: upstream-ca}, clientCertificateRef: {name: gateway-client}}",
        )
        + &tls_service(
            "wrong-ca",
            "{serverName: backend.internal, caCertificateRef: {name: rogue-ca}, clientCertificateRef: {name: gateway-client}}",
        )
        + &tls_service(
            "wrong-name",
            "{serverName: other.internal, caCertificateRef: {name: upstream-ca}, clientCertificateRef: {name: gateway-client}}",
        )
        + &tls_service(
            "checked",
            "{serverName: backend.internal, caCertificateRef: {name: upstream-ca}, clientCertificateRef: {name: gateway-client}}, \
             healthCheck: {httpPath: /health, intervalSeconds: 2, timeoutSeconds: 1, healthyThreshold: 1}",
        )
        + &route("secure", "  matches: [{pathPrefix: /secure}]\n  destinations: [{vpcServiceRef: {name: secure}}]")
        + &route("wrong-ca", "  matches: [{pathPrefix: /wrong-ca}]\n  destinations: [{vpcServiceRef: {name: wrong-ca}}]")
        + &route("wrong-name", "  matches: [{pathPrefix: /wrong-name}]\n  destinations: [{vpcServiceRef: {name: wrong-name}}]")
        + &route("plain", "  matches: [{pathPrefix: /plain}]\n  destinations: [{vpcServiceRef: {name: plain}}]");
    let gw = start(&config).await;
    let client = Client::http1();

    let r = client.get(&gw.url("/secure/hello"), &[]).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.backend(), Some("secure"));
    assert_eq!(r.json()["version"], "HTTP/2.0", "ALPN settles on h2 with an HTTP/2-capable endpoint");
    for path in ["/wrong-ca", "/wrong-name"] {
        let r = client.get(&gw.url(path), &[]).await.unwrap();
        assert_eq!((r.status, r.header("x-datum-router-error")), (502, Some("upstream-tls-error")), "{path}");
    }
    let r = client.get(&gw.url("/plain"), &[]).await.unwrap();
    assert_eq!(r.status, 502, "cleartext to a TLS endpoint fails cleanly");
    assert!(gw.metric_sum("datum_router_upstream_errors_total{error=\"upstream-tls-error\",service=\"default/wrong-ca\"}").await >= 1);
    // Health checks of a TLS service speak TLS with the service's own material.
    router_tests::eventually("the TLS endpoint checked healthy", async || {
        gw.metrics().await.contains(&format!(r#"endpoint="{}",service="default/checked",state="healthy"}} 1"#, backends[0].addr))
    })
    .await;
}

#[tokio::test]
async fn a_grpc_error_from_an_https_service_counts_as_its_http_status_for_retries() {
    // An HTTPS service may settle on HTTP/2 by ALPN and carry gRPC: a trailers-only
    // UNAVAILABLE (grpc-status 14 in the head of a 200) is a 503 for the route's retries.
    let ca = Pki::new("grpc-ca");
    let backends = start_tls_backends(&["down", "up"], ca.server(&["grpc.internal"]).server_config(None)).await;
    backends[0].fail_grpc_with(Some(14));
    let config = service_on("grpc-plain", "grpc", &[&backends[0], &backends[1]], "HTTP")
        + &ca_secret("grpc-ca", &ca)
        + &format!(
            "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: grpc-tls, namespace: default}}\n\
             spec: {{vpcAttachmentSelector: {{matchLabels: {{app: grpc}}}}, port: {}, protocol: HTTPS, \
             tls: {{serverName: grpc.internal, caCertificateRef: {{name: grpc-ca}}}}}}\n---\n",
            backends[0].addr.port()
        )
        + &route(
            "grpc-tls",
            "  matches: [{pathPrefix: /}]\n  destinations: [{vpcServiceRef: {name: grpc-tls}}]\n  retries:\n    maxRetries: 1\n    retryOnStatus: [503]\n    nonIdempotent: true",
        );
    let gw = start(&config).await;
    let client = Client::http1();
    let mut retried = 0;
    for _ in 0..6 {
        let r = client.get(&gw.url("/pkg.Service/Call"), &[("content-type", "application/grpc")]).await.unwrap();
        assert_eq!((r.status, r.backend()), (200, Some("up")), "the UNAVAILABLE answer is never the one returned");
        retried += usize::from(r.header("x-datum-router-attempts") == Some("2"));
    }
    assert!(retried >= 1, "requests that met the failing endpoint first were retried");
    assert!(backends[0].hits() >= 1, "the failing endpoint was tried");
}
