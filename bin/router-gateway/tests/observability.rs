//! What operators see: metrics with bounded labels, W3C trace propagation,
//! request ids, the access log and the admin endpoints.

use std::time::Duration;

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn metrics_count_requests_by_route_service_and_status_class() {
    let b = start_backends(&["m"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route(
            "metered",
            "  match: {pathPrefix: /m}\n  filters: {urlRewrite: {path: {replacePrefixMatch: /}}}\n  destinations: [{vpcServiceRef: {name: svc}}]",
        )].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    for i in 0..5 {
        c.get(&gw.url(&format!("/m/unique-{i}")), &[]).await.unwrap();
    }
    c.get(&gw.url("/m/status/503"), &[]).await.unwrap();
    c.get(&gw.url("/nowhere"), &[]).await.unwrap();
    let metrics = c.get(&gw.admin_url("/metrics"), &[]).await.unwrap().body;
    assert!(
        metrics.contains(r#"datum_router_requests_total{method="GET",route="default/metered",service="default/svc",status_class="2xx"} 5"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"datum_router_requests_total{method="GET",route="default/metered",service="default/svc",status_class="5xx"} 1"#)
    );
    assert!(metrics.contains(r#"datum_router_requests_total{method="GET",route="none",service="none",status_class="4xx"} 1"#));
    assert!(metrics.contains(r#"datum_router_service_endpoints{service="default/svc",state="ready"} 1"#));
    assert!(metrics.contains(r#"datum_router_config_reloads_total{result="success"} 1"#));
    assert!(metrics.contains("datum_router_config_build_seconds_count 1"), "the one load was timed");
    assert!(metrics.contains("datum_router_request_duration_seconds_bucket"));
    assert!(!metrics.contains("unique-"), "raw paths are never labels");
}

#[tokio::test]
async fn trace_context_and_request_id_propagate() {
    let b = start_backends(&["t"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("traced", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    let parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let r = c.get(&gw.url("/t"), &[("traceparent", parent), ("tracestate", "vendor=1"), ("x-request-id", "req-123")]).await.unwrap();
    let seen = r.json();
    let tp = seen["headers"]["traceparent"].as_str().unwrap();
    assert!(tp.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {tp}");
    assert!(!tp.contains("00f067aa0ba902b7"), "a new span for the upstream attempt: {tp}");
    assert_eq!(seen["headers"]["tracestate"], "vendor=1");
    assert_eq!(seen["headers"]["x-request-id"], "req-123");
    assert_eq!(r.header("x-request-id"), Some("req-123"));

    // Without a traceparent the gateway starts a trace; with a broken one, too.
    for headers in [vec![], vec![("traceparent", "garbage")]] {
        let seen = c.get(&gw.url("/t"), &headers).await.unwrap().json();
        let tp = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
        assert_eq!(tp.len(), 55, "{tp}");
        assert_ne!(&tp[3..35], "00000000000000000000000000000000");
    }

    // The access log is written in the background, every 50 ms.
    router_tests::eventually("the access log line", async || gw.access_log().iter().any(|l| l.contains("req-123"))).await;
    let line = gw.access_log().into_iter().find(|l| l.contains("req-123")).expect("access log line");
    let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(entry["route"], "default/traced");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(entry["upstream"], b[0].addr.to_string());
}

/// The forwarding fields reach an HTTP/1.1 upstream (written by the gateway's
/// own client), an HTTP/2 one (through hyper's), and a route's request header
/// modifier can override them but not the request id.
#[tokio::test]
async fn forwarding_headers_and_hop_by_hop() {
    let b = start_backends(&["f", "f2"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0]], "HTTP"),
        service_on("mux", "mux", &[&b[1]], "HTTP2"),
        route("f", "  match: {pathPrefix: /f}\n  destinations: [{vpcServiceRef: {name: svc}}]"),
        route("h2", "  match: {pathPrefix: /h2}\n  destinations: [{vpcServiceRef: {name: mux}}]"),
        route(
            "modified",
            "  match: {pathPrefix: /modified}\n  filters:\n    requestHeaders: {set: {x-forwarded-host: internal.example, x-request-id: forged}}\n  \
             destinations: [{vpcServiceRef: {name: svc}}]",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let headers = [
        ("host", "api.example.com"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "req-7"),
        ("connection", "x-drop-me"),
        ("x-drop-me", "1"),
    ];
    for path in ["/f", "/h2"] {
        let seen = Client::http1().get(&gw.url(path), &headers).await.unwrap().json();
        let h = &seen["headers"];
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1", "{path}");
        assert_eq!(h["x-forwarded-proto"], "http", "{path}: clients cannot claim https");
        assert_eq!(h["x-forwarded-host"], "api.example.com", "{path}");
        assert_eq!(h["forwarded"], "for=127.0.0.1;proto=http;host=api.example.com", "{path}");
        assert_eq!(h["x-request-id"], "req-7", "{path}");
        assert_eq!(h["traceparent"].as_str().map(str::len), Some(55), "{path}");
        assert!(h.get("x-drop-me").is_none(), "{path}: headers named by Connection are hop-by-hop");
    }
    let seen = Client::http1().get(&gw.url("/modified"), &headers).await.unwrap().json();
    let h = &seen["headers"];
    assert_eq!(h["x-forwarded-host"], "internal.example", "the route's modifier applies after the forwarding fields");
    assert_eq!(h["x-forwarded-for"], "203.0.113.7, 127.0.0.1");
    assert_eq!(h["x-request-id"], "req-7", "the request id is the gateway's, whatever the modifier says");
}

#[tokio::test]
async fn admin_endpoints_are_on_their_own_port() {
    let b = start_backends(&["a"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0]], "HTTP"),
        route("r", "  destinations: [{vpcServiceRef: {name: svc}}, {vpcServiceRef: {name: ghost}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    assert_eq!(c.get(&gw.admin_url("/healthz"), &[]).await.unwrap().status, 200);
    assert_eq!(c.get(&gw.admin_url("/readyz"), &[]).await.unwrap().status, 200);
    let config = c.get(&gw.admin_url("/config"), &[]).await.unwrap().json();
    assert_eq!(config["routesServed"], 1);
    assert_eq!(config["services"]["default/svc"]["readyEndpoints"][0]["address"], b[0].addr.to_string());
    let problems = config["routes"]["default/r"]["problems"].to_string();
    assert!(problems.contains("VPCService default/ghost not found"), "{problems}");
    // The data port does not serve admin paths: /metrics there is routed like any other path.
    let data = c.get(&gw.url("/metrics"), &[]).await.unwrap();
    assert!(!data.body.contains("datum_router_requests_total"));
}

#[tokio::test]
async fn spans_are_exported_over_otlp_when_configured() {
    use router_tests::otlp::Collector;
    let collector = Collector::start().await;
    let b = start_backends(&["o"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("traced", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let endpoint = format!("http://{}", collector.addr);
    let gw = GatewayProcess::start_with_env(
        BIN,
        &config,
        &["--otlp-endpoint", &endpoint, "--otel-service-name", "gw-under-test"],
        &[("OTEL_BSP_SCHEDULE_DELAY", "100")],
    )
    .await;
    let c = Client::http1();
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let seen = c.get(&gw.url("/with-parent"), &[("traceparent", caller)]).await.unwrap().json();
    let upstream_tp = seen["headers"]["traceparent"].as_str().unwrap().to_owned();
    let gateway_span_id = upstream_tp.split('-').nth(2).unwrap().to_owned();
    let fresh = c.get(&gw.url("/no-parent"), &[]).await.unwrap().json();
    let fresh_trace = fresh["headers"]["traceparent"].as_str().unwrap().split('-').nth(1).unwrap().to_owned();
    // An unsampled caller is not overruled: no span for it.
    c.get(&gw.url("/unsampled"), &[("traceparent", "00-aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-00f067aa0ba902b7-00")]).await.unwrap();

    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while collector.spans().len() < 2 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let spans = collector.spans();
    let span = spans.iter().find(|s| s.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736").expect("the span of the traced request");
    assert_eq!(span.span_id, gateway_span_id, "the upstream's parent is the gateway's span");
    assert_eq!(span.parent_span_id, "00f067aa0ba902b7", "the gateway's parent is the caller's span");
    assert_eq!(span.name, "GET default/traced");
    assert_eq!(span.service_name.as_deref(), Some("gw-under-test"));
    let attr = |k: &str| span.attributes.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    assert_eq!(attr("http.response.status_code").as_deref(), Some("200"));
    assert_eq!(attr("http.route").as_deref(), Some("default/traced"));
    assert_eq!(attr("server.address"), Some(b[0].addr.ip().to_string()));
    assert!(spans.iter().any(|s| s.trace_id == fresh_trace && s.parent_span_id.is_empty()), "a root span for the untraced request");
    assert!(!spans.iter().any(|s| s.trace_id == "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"), "unsampled callers are not exported");
}
