//! Gateway API filters through the real gateway: header changes, URL
//! rewrites, redirects, CORS and request mirroring.

use std::time::Duration;

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn header_modifiers_and_rewrites() {
    let b = start_backends(&["api"]).await;
    let config = [
        service_on("api", "api", &[&b[0]], "HTTP"),
        route(
            "rewrite",
            "  match: {pathPrefix: /old}\n  filters:\n    requestHeaders: {set: {x-env: prod}, add: {x-tag: a}, remove: [x-secret]}\n    \
             responseHeaders: {set: {x-served-by: datum}, remove: [x-backend-internal]}\n    \
             urlRewrite: {hostname: internal.api, path: {replacePrefixMatch: /new}}\n  destinations: [{vpcServiceRef: {name: api}}]",
        ),
        route("full", "  match: {path: /health-check}\n  filters: {urlRewrite: {path: {replaceFullPath: /healthz}}}\n  destinations: [{vpcServiceRef: {name: api}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    let r = c.get(&gw.url("/old/users?id=7"), &[("x-secret", "s3cr3t"), ("x-env", "dev"), ("x-tag", "z")]).await.unwrap();
    let seen = r.json();
    assert_eq!(seen["path"], "/new/users");
    assert_eq!(seen["query"], "id=7");
    assert_eq!(seen["headers"]["host"], "internal.api");
    assert_eq!(seen["headers"]["x-env"], "prod");
    assert!(seen["headers"].get("x-secret").is_none());
    assert_eq!(r.header("x-served-by"), Some("datum"));
    let r = c.get(&gw.url("/health-check"), &[]).await.unwrap();
    assert_eq!(r.json()["path"], "/healthz");
}

#[tokio::test]
async fn redirects_answer_without_a_destination() {
    let config = route("to-https", "  hostnames: [www.example.com]\n  filters: {redirect: {scheme: https, statusCode: 301}}");
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let r = Client::http1().get(&gw.url("/a/b?c=d"), &[("host", "www.example.com:8080")]).await.unwrap();
    assert_eq!(r.status, 301);
    assert_eq!(r.header("location"), Some("https://www.example.com/a/b?c=d"));
}

#[tokio::test]
async fn cors_preflight_is_answered_by_the_gateway() {
    let b = start_backends(&["api"]).await;
    let config = [
        service_on("api", "api", &[&b[0]], "HTTP"),
        route(
            "cors",
            "  filters: {cors: {allowOrigins: ['https://app.example.com'], allowMethods: [GET, PUT], allowHeaders: [x-token], maxAgeSeconds: 600}}\n  \
             destinations: [{vpcServiceRef: {name: api}}]",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    let pre = c
        .send(
            http::Method::OPTIONS,
            &gw.url("/items"),
            &[("origin", "https://app.example.com"), ("access-control-request-method", "PUT")],
            bytes::Bytes::new(),
        )
        .await
        .unwrap();
    assert_eq!(pre.status, 204);
    assert_eq!(pre.header("access-control-allow-origin"), Some("https://app.example.com"));
    assert_eq!(pre.header("access-control-allow-methods"), Some("GET, PUT"));
    assert_eq!(pre.header("access-control-max-age"), Some("600"));
    assert_eq!(b[0].hits(), 0, "preflight never reaches the backend");

    let actual = c.get(&gw.url("/items"), &[("origin", "https://app.example.com")]).await.unwrap();
    assert_eq!(actual.header("access-control-allow-origin"), Some("https://app.example.com"));
    let foreign = c.get(&gw.url("/items"), &[("origin", "https://evil.example")]).await.unwrap();
    assert_eq!(foreign.status, 200);
    assert!(foreign.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn mirror_copies_requests_and_bodies_and_ignores_the_mirror_answer() {
    let b = start_backends(&["primary", "shadow"]).await;
    let config = [
        service_on("primary", "primary", &[&b[0]], "HTTP"),
        service_on("shadow", "shadow", &[&b[1]], "HTTP"),
        route(
            "mirrored",
            "  filters: {mirror: {vpcServiceRef: {name: shadow}, percent: 100}}\n  destinations: [{vpcServiceRef: {name: primary}}]",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    for _ in 0..10 {
        let r = c.get(&gw.url("/status/200"), &[]).await.unwrap();
        assert_eq!(r.backend(), Some("primary"));
    }
    // The shadow answers 500 for this path; the client still sees the primary's 200.
    let r = c.get(&gw.url("/x"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    // Bodies are teed to the mirror as they stream.
    let body = bytes::Bytes::from(vec![b'm'; 1024 * 1024]);
    let r = c.send(http::Method::POST, &gw.url("/upload"), &[], body).await.unwrap();
    assert_eq!(r.json()["body_len"], 1024 * 1024);
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The mirror counts a request when it arrives and its body once read: wait for both.
    let mirrored = || b[1].body_bytes.load(std::sync::atomic::Ordering::Relaxed);
    while (b[1].hits() < 12 || mirrored() < 1024 * 1024) && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(b[1].hits(), 12, "every request was mirrored");
    assert_eq!(b[0].hits(), 12);
    assert_eq!(mirrored(), 1024 * 1024, "the mirror got the whole body");
    let metrics = c.get(&gw.admin_url("/metrics"), &[]).await.unwrap().body;
    assert!(metrics.contains(r#"datum_router_mirrored_requests_total{outcome="sent"} 12"#), "{metrics}");
}
