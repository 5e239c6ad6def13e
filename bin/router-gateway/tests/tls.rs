//! TLS and VPCIngress through the real gateway: HTTPS listeners with SNI and
//! ALPN, refused old protocol versions, certificate hot reload under an open
//! connection, client certificate validation, misdirected requests, listener
//! conflicts, the internal HTTPS listener, and TLS/mTLS to upstreams.

use std::time::{Duration, Instant};

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

/// Waits until `check` holds, polling; panics with `what` after 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
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
        + &route("external", "  ingressRefs: [{name: public}]\n  hostnames: [api.example.com, \"*.apps.example.com\"]\n  destinations: [{vpcServiceRef: {name: web}}]")
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
