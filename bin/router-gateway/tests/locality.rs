//! Locality-aware routing through the real gateway: a gateway in zone a of
//! region r1 in front of a PreferClose service with endpoints in zone a, zone
//! b (same region) and zone c (another region). All traffic stays in zone a
//! while it is healthy; as zone a's endpoints fail their health checks the
//! traffic spills to zone b by the overprovisioning rule, never across the
//! region; when they recover it comes back. No request fails on the way.

use std::{collections::HashMap, net::IpAddr};

use router_tests::{
    backend::{Backend, start_backends},
    client::Client,
    eventually,
    gateway::{GatewayProcess, route, vpc},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn located_attachment(name: &str, ip: IpAddr, region: &str, zone: &str) -> String {
    format!(
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata:\n  name: {name}\n  namespace: default\n  labels:\n    \
         app: loc\n    topology.kubernetes.io/region: {region}\n    topology.kubernetes.io/zone: {zone}\n\
         spec: {{vpc: {{name: loc-vpc}}, interface: {{name: galactic0, addresses: [{ip}/8]}}}}\nstatus: {{ready: true, identifier: 1f2e}}\n---\n"
    )
}

/// Which backend answered each of `n` requests; every one must be a 200.
async fn spread(gw: &GatewayProcess, n: usize) -> HashMap<String, usize> {
    let client = Client::http1();
    let mut seen = HashMap::new();
    for _ in 0..n {
        let r = client.get(&gw.url("/"), &[]).await.expect("answered");
        assert_eq!(r.status, 200, "no request fails: {}", r.body);
        *seen.entry(r.backend().unwrap_or("?").to_owned()).or_default() += 1;
    }
    seen
}

async fn wait_health(gw: &GatewayProcess, b: &Backend, state: &str) {
    let needle = format!(r#"endpoint="{}",service="default/svc",state="{state}"}} 1"#, b.addr);
    eventually(&format!("{} {state}", b.name), async || gw.metrics().await.contains(&needle)).await;
}

#[tokio::test]
async fn traffic_stays_in_the_zone_and_spills_over_by_health() {
    let b = start_backends(&["a1", "a2", "b1", "b2", "c1"]).await;
    let mut config = vpc("loc-vpc");
    for (x, (region, zone)) in b.iter().zip([("r1", "a"), ("r1", "a"), ("r1", "b"), ("r1", "b"), ("r2", "c")]) {
        config += &located_attachment(&format!("loc-{}", x.name), x.addr.ip(), region, zone);
    }
    config += &format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: svc, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: loc}}}}, port: {}, protocol: HTTP, addressFamily: IPv4,\n\
         \x20 trafficDistribution: PreferClose,\n\
         \x20 healthCheck: {{httpPath: /status/200, intervalSeconds: 2, timeoutSeconds: 1, healthyThreshold: 1, unhealthyThreshold: 1}}}}\n---\n",
        b[0].addr.port()
    );
    config += &route(
        "r",
        "  destinations: [{vpcServiceRef: {name: svc}}]\n  retries: {maxRetries: 3, retryOn: [connect-failure, reset], retryOnStatus: [503]}",
    );
    let gw = GatewayProcess::start(BIN, &config, &["--locality", "region=r1,zone=a"]).await;
    for x in &b {
        wait_health(&gw, x, "healthy").await;
    }

    let seen = spread(&gw, 200).await;
    assert_eq!(seen.get("a1").copied().unwrap_or(0) + seen.get("a2").copied().unwrap_or(0), 200, "all in zone a: {seen:?}");
    assert_eq!(gw.metric_sum("datum_router_locality_requests_total{level=\"zone\"").await, 200);
    let config_json = Client::http1().get(&gw.admin_url("/config"), &[]).await.unwrap().json();
    assert_eq!(config_json["locality"], "region=r1,zone=a");
    let levels: Vec<String> = config_json["services"]["default/svc"]["readyEndpoints"]
        .as_array()
        .expect("endpoints")
        .iter()
        .map(|e| e["level"].as_str().unwrap_or("").to_owned())
        .collect();
    assert_eq!(levels.iter().filter(|l| *l == "zone").count(), 2, "/config shows the levels: {levels:?}");
    assert_eq!(levels.iter().filter(|l| *l == "region").count(), 2);
    assert_eq!(levels.iter().filter(|l| *l == "any").count(), 1);

    // One of zone a's two fails: 1/2 × 1.4 = 70 % stays on a2, 30 % goes to zone b, none to region r2.
    b[0].fail_with(Some(503));
    wait_health(&gw, &b[0], "unhealthy").await;
    let seen = spread(&gw, 1000).await;
    let zone_a = seen.get("a2").copied().unwrap_or(0);
    let zone_b = seen.get("b1").copied().unwrap_or(0) + seen.get("b2").copied().unwrap_or(0);
    // Binomial(1000, 0.7): a standard deviation is 14.5; ±5 of them.
    assert!((628..=772).contains(&zone_a), "≈ 70 % in zone a: {seen:?}");
    assert_eq!(zone_a + zone_b, 1000, "the rest in zone b, nothing beyond the region: {seen:?}");
    assert!(!seen.contains_key("a1"), "the unhealthy endpoint is skipped: {seen:?}");

    // Both of zone a fail: the region takes everything.
    b[1].fail_with(Some(503));
    wait_health(&gw, &b[1], "unhealthy").await;
    let seen = spread(&gw, 200).await;
    assert_eq!(seen.get("b1").copied().unwrap_or(0) + seen.get("b2").copied().unwrap_or(0), 200, "all in zone b: {seen:?}");
    assert!(gw.metric_sum("datum_router_locality_requests_total{level=\"region\"").await >= 200);

    // Zone a recovers: the traffic comes back.
    b[0].fail_with(None);
    b[1].fail_with(None);
    wait_health(&gw, &b[0], "healthy").await;
    wait_health(&gw, &b[1], "healthy").await;
    let seen = spread(&gw, 200).await;
    assert_eq!(seen.get("a1").copied().unwrap_or(0) + seen.get("a2").copied().unwrap_or(0), 200, "back in zone a: {seen:?}");
    assert_eq!(seen.get("c1"), None, "region r2 never saw a request");
}

#[tokio::test]
async fn without_prefer_close_or_a_gateway_locality_nothing_changes() {
    let b = start_backends(&["near", "far"]).await;
    let mut config = vpc("loc-vpc");
    for (x, zone) in b.iter().zip(["a", "z"]) {
        config += &located_attachment(&format!("loc-{}", x.name), x.addr.ip(), "r1", zone);
    }
    config += &format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: svc, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: loc}}}}, port: {}, protocol: HTTP, addressFamily: IPv4}}\n---\n",
        b[0].addr.port()
    );
    // The route's destination asks for PreferClose on its own; a second route leaves the service's default (Any).
    config +=
        &route("close", "  hostnames: [close.example]\n  destinations: [{vpcServiceRef: {name: svc}, trafficDistribution: PreferClose}]");
    config += &route("any", "  hostnames: [any.example]\n  destinations: [{vpcServiceRef: {name: svc}}]");
    let gw = GatewayProcess::start(BIN, &config, &["--locality", "zone=a"]).await;
    let client = Client::http1();
    let mut close = HashMap::<String, usize>::new();
    let mut any = HashMap::<String, usize>::new();
    for _ in 0..100 {
        let r = client.get(&gw.url("/"), &[("host", "close.example")]).await.unwrap();
        *close.entry(r.backend().unwrap_or("?").to_owned()).or_default() += 1;
        let r = client.get(&gw.url("/"), &[("host", "any.example")]).await.unwrap();
        *any.entry(r.backend().unwrap_or("?").to_owned()).or_default() += 1;
    }
    assert_eq!(close.get("near"), Some(&100), "the destination's own PreferClose: {close:?}");
    assert_eq!(any.get("near"), Some(&50), "round-robin as before: {any:?}");

    // A gateway that does not know where it is balances as before, PreferClose or not.
    let nowhere = GatewayProcess::start(BIN, &config, &[]).await;
    let mut seen = HashMap::<String, usize>::new();
    for _ in 0..100 {
        let r = client.get(&nowhere.url("/"), &[("host", "close.example")]).await.unwrap();
        *seen.entry(r.backend().unwrap_or("?").to_owned()).or_default() += 1;
    }
    assert_eq!(seen.get("near"), Some(&50), "{seen:?}");
}
