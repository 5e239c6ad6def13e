//! Routing decisions through the real gateway binary: hosts, paths, methods,
//! headers, query parameters, precedence, weights, load balancing and the
//! gateway's own error answers.

use std::collections::HashMap;

use router_tests::{
    backend::{Backend, start_backends},
    client::Client,
    gateway::{GatewayProcess, attachment, route, service, service_on, vpc},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

async fn count_backends(gw: &GatewayProcess, path: &str, headers: &[(&str, &str)], n: usize) -> HashMap<String, usize> {
    let client = Client::http1();
    let mut counts = HashMap::new();
    for _ in 0..n {
        let r = client.get(&gw.url(path), headers).await.unwrap();
        assert_eq!(r.status, 200, "{}", r.body);
        *counts.entry(r.backend().unwrap().to_owned()).or_default() += 1;
    }
    counts
}

#[tokio::test]
async fn host_path_method_header_and_query_select_the_route() {
    let b = start_backends(&["api", "web", "admin", "canary", "v2"]).await;
    let svc = |name: &str, backend: &Backend| service_on(name, name, &[backend], "HTTP");
    let config = [
        svc("api", &b[0]),
        svc("web", &b[1]),
        svc("admin", &b[2]),
        svc("canary", &b[3]),
        svc("v2", &b[4]),
        route("api", "  hostnames: [api.example.com]\n  match: {pathPrefix: /api}\n  destinations: [{vpcServiceRef: {name: api}}]"),
        route("web", "  hostnames: ['*.example.com']\n  destinations: [{vpcServiceRef: {name: web}}]"),
        route("admin-exact", "  match: {path: /admin, methods: [POST]}\n  destinations: [{vpcServiceRef: {name: admin}}]"),
        route(
            "canary",
            "  hostnames: [api.example.com]\n  match: {pathPrefix: /api, headers: [{name: x-canary, value: 'true'}]}\n  destinations: [{vpcServiceRef: {name: canary}}]",
        ),
        route(
            "v2",
            "  hostnames: [api.example.com]\n  match: {pathPrefix: /api, queryParams: [{name: version, value: '2'}]}\n  destinations: [{vpcServiceRef: {name: v2}}]",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    let get = |host: &'static str, path: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let (c, url) = (c.clone(), gw.url(path));
        async move {
            let mut h = vec![("host", host)];
            h.extend(headers);
            c.get(&url, &h).await.unwrap()
        }
    };
    assert_eq!(get("api.example.com", "/api/users", vec![]).await.backend(), Some("api"));
    assert_eq!(get("API.Example.com:8080", "/api", vec![]).await.backend(), Some("api"), "host is case-insensitive, port ignored");
    assert_eq!(
        get("api.example.com", "/apix", vec![]).await.backend(),
        Some("web"),
        "prefix is segment-aware: falls to the wildcard route"
    );
    assert_eq!(get("shop.example.com", "/api/users", vec![]).await.backend(), Some("web"));
    assert_eq!(get("api.example.com", "/api/x", vec![("x-canary", "true")]).await.backend(), Some("canary"));
    assert_eq!(get("api.example.com", "/api/x?version=2", vec![]).await.backend(), Some("v2"));
    assert_eq!(
        get("api.example.com", "/api/x?version=2", vec![("x-canary", "true")]).await.backend(),
        Some("canary"),
        "header matches outrank query matches"
    );

    let post = c.send(http::Method::POST, &gw.url("/admin"), &[("host", "other.org")], bytes::Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(post.backend(), Some("admin"));
    let wrong_method = get("other.org", "/admin", vec![]).await;
    assert_eq!(wrong_method.status, 404);
    assert_eq!(wrong_method.header("x-datum-router-error"), Some("no-route"));
    assert!(wrong_method.header("x-request-id").is_some());
}

#[tokio::test]
async fn oldest_route_wins_a_tie_and_exact_beats_prefix() {
    let b = start_backends(&["old", "new", "exact"]).await;
    let config = [
        service_on("old", "old", &[&b[0]], "HTTP"),
        service_on("new", "new", &[&b[1]], "HTTP"),
        service_on("exact", "exact", &[&b[2]], "HTTP"),
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {name: zzz-old, namespace: default, creationTimestamp: '2024-01-01T00:00:00Z'}\n\
         spec: {match: {pathPrefix: /p}, destinations: [{vpcServiceRef: {name: old}}]}\n---\n"
            .to_owned(),
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {name: aaa-new, namespace: default, creationTimestamp: '2025-01-01T00:00:00Z'}\n\
         spec: {match: {pathPrefix: /p}, destinations: [{vpcServiceRef: {name: new}}]}\n---\n"
            .to_owned(),
        route("exact", "  match: {path: /p/exact}\n  destinations: [{vpcServiceRef: {name: exact}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    assert_eq!(c.get(&gw.url("/p/x"), &[]).await.unwrap().backend(), Some("old"));
    assert_eq!(c.get(&gw.url("/p/exact"), &[]).await.unwrap().backend(), Some("exact"));
}

#[tokio::test]
async fn weights_split_traffic_and_round_robin_spreads_it() {
    let b = start_backends(&["a1", "a2", "a3", "b1"]).await;
    let config = [
        service_on("svc-a", "svc-a", &[&b[0], &b[1], &b[2]], "HTTP"),
        service_on("svc-b", "svc-b", &[&b[3]], "HTTP"),
        route(
            "split",
            "  destinations:\n    - {vpcServiceRef: {name: svc-a}, weight: 75}\n    - {vpcServiceRef: {name: svc-b}, weight: 25}\n  loadBalancing: round-robin",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let counts = count_backends(&gw, "/", &[], 400).await;
    let a: usize = ["a1", "a2", "a3"].iter().map(|n| counts.get(*n).copied().unwrap_or(0)).sum();
    // Smooth weighted round robin gives exact shares over every window of 100.
    assert_eq!((a, counts["b1"]), (300, 100), "{counts:?}");
    for n in ["a1", "a2", "a3"] {
        assert_eq!(counts[n], 100, "round robin: {counts:?}");
    }
}

#[tokio::test]
async fn consistent_hash_keeps_a_user_on_one_endpoint() {
    let b = start_backends(&["h1", "h2", "h3", "h4"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0], &b[1], &b[2], &b[3]], "HTTP"),
        route("sticky", "  destinations: [{vpcServiceRef: {name: svc}}]\n  loadBalancing: consistent-hash\n  hashOn: {header: x-user}"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let mut seen_backends = std::collections::HashSet::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let counts = count_backends(&gw, "/", &[("x-user", &user)], 5).await;
        assert_eq!(counts.len(), 1, "{user} moved between endpoints: {counts:?}");
        seen_backends.extend(counts.into_keys());
    }
    assert!(seen_backends.len() >= 3, "users spread over endpoints: {seen_backends:?}");
}

#[tokio::test]
async fn error_answers_are_labelled() {
    let b = start_backends(&["up", "dead"]).await;
    let dead_addr = b[1].addr;
    b[1].kill();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    let config = [
        service_on("up", "up", &[&b[0]], "HTTP"),
        // An attachment that Galactic has not made ready yet: no ready endpoints.
        vpc("pending-vpc"),
        attachment("pending", "pending-vpc", &[b[0].addr.ip()], false, "pending"),
        service("pending", "pending", b[0].addr.port(), "HTTP"),
        vpc("dead-vpc"),
        attachment("dead", "dead-vpc", &[dead_addr.ip()], true, "dead"),
        service("dead", "dead", dead_addr.port(), "HTTP"),
        route("half-missing", "  match: {pathPrefix: /half}\n  destinations:\n    - {vpcServiceRef: {name: up}, weight: 1}\n    - {vpcServiceRef: {name: nope}, weight: 1}"),
        route("pending", "  match: {pathPrefix: /pending}\n  destinations: [{vpcServiceRef: {name: pending}}]"),
        route("dead", "  match: {pathPrefix: /dead}\n  destinations: [{vpcServiceRef: {name: dead}}]"),
        route("slow", "  match: {pathPrefix: /slow}\n  destinations: [{vpcServiceRef: {name: up}}]\n  timeouts: {request: 200ms}"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();

    // The unresolved destination keeps its share as 500s: exactly half with smooth weighting.
    let mut statuses = HashMap::new();
    for _ in 0..10 {
        let r = c.get(&gw.url("/half"), &[]).await.unwrap();
        if r.status == 500 {
            assert_eq!(r.header("x-datum-router-error"), Some("destination-unresolved"));
        }
        *statuses.entry(r.status).or_insert(0) += 1;
    }
    assert_eq!(statuses, HashMap::from([(200, 5), (500, 5)]));

    let r = c.get(&gw.url("/pending"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (503, Some("no-healthy-upstream")));
    let r = c.get(&gw.url("/dead"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (502, Some("upstream-connect-error")));
    let r = c.get(&gw.url("/slow/2000"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (504, Some("upstream-timeout")));
    let r = c.get(&gw.url("/slow/10"), &[]).await.unwrap();
    assert_eq!(r.status, 200, "within the timeout");

    // The access log says which error each was.
    let labels = ["destination-unresolved", "no-healthy-upstream", "upstream-connect-error", "upstream-timeout"];
    router_tests::eventually("every error in the access log", async || {
        let log = gw.access_log().join("\n");
        labels.iter().all(|label| log.contains(&format!("\"error\":\"{label}\"")))
    })
    .await;
    let log = gw.access_log().join("\n");
    for label in labels {
        assert!(log.contains(&format!("\"error\":\"{label}\"")), "access log lacks {label}:\n{log}");
    }
}
