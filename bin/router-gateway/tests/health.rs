//! Active health checks through the real gateway: a dead endpoint leaves the
//! pool within the configured thresholds and traffic flows to the others; a
//! gRPC service reported NOT_SERVING is taken out; everything unhealthy still
//! serves (panic mode) rather than failing every request.

use std::time::{Duration, Instant};

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, attachment, route, vpc},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn checked_service(name: &str, label: &str, port: u16, protocol: &str, check: &str) -> String {
    format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: {label}}}}}, port: {port}, protocol: {protocol}, addressFamily: IPv4,\n\
         \x20 healthCheck: {{{check}, intervalSeconds: 2, timeoutSeconds: 1, healthyThreshold: 1, unhealthyThreshold: 2}}}}\n---\n"
    )
}

async fn wait_metric(gw: &GatewayProcess, needle: &str, within: Duration) -> Duration {
    let started = Instant::now();
    while started.elapsed() < within {
        if gw.metrics().await.contains(needle) {
            return started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("metric {needle} did not appear within {within:?}");
}

#[tokio::test]
async fn a_dead_endpoint_leaves_the_pool_and_traffic_flows_to_the_others() {
    let b = start_backends(&["h1", "h2", "h3"]).await;
    let mut config = vpc("hc-vpc");
    for x in &b {
        config += &attachment(&format!("hc-{}", x.name), "hc-vpc", &[x.addr.ip()], true, "hc");
    }
    config += &checked_service("svc", "hc", b[0].addr.port(), "HTTP", "httpPath: /status/200");
    config += &route("r", "  destinations: [{vpcServiceRef: {name: svc}}]");
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let dead = b[1].addr.to_string();
    wait_metric(&gw, &format!(r#"endpoint="{dead}",service="default/svc",state="healthy"}} 1"#), Duration::from_secs(10)).await;

    b[1].kill();
    let killed = Instant::now();
    let ejected =
        wait_metric(&gw, &format!(r#"endpoint="{dead}",service="default/svc",state="unhealthy"}} 1"#), Duration::from_secs(10)).await;
    // Two failed probes two seconds apart, plus jitter and the probe timeout.
    eprintln!("time to eject: {ejected:?}");
    assert!(ejected < Duration::from_secs(8), "ejected after {:?}", killed.elapsed());

    let c = Client::http1();
    for _ in 0..60 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!(r.status, 200, "no request reaches the dead endpoint once it is out: {}", r.body);
        assert_ne!(r.backend(), Some("h2"));
    }
    let config = c.get(&gw.admin_url("/config"), &[]).await.unwrap().json();
    let health: Vec<String> = config["services"]["default/svc"]["readyEndpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["health"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(health.iter().filter(|h| *h == "unhealthy").count(), 1, "{health:?}");
}

#[tokio::test]
async fn grpc_not_serving_is_unhealthy_and_all_unhealthy_still_serves() {
    // A real grpc.health.v1 server whose "users" service goes NOT_SERVING.
    let (addr, reporter) = router_tests::grpc::start_health_server().await;
    reporter.set_service_status("users", tonic_health::ServingStatus::Serving).await;

    let config = [
        vpc("g-vpc"),
        attachment("g-att", "g-vpc", &[addr.ip()], true, "g"),
        checked_service("users", "g", addr.port(), "GRPC", "grpcService: users"),
        route("users", "  match: {grpc: {service: grpc.health.v1.Health}}\n  destinations: [{vpcServiceRef: {name: users}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let endpoint = addr.to_string();
    wait_metric(&gw, &format!(r#"endpoint="{endpoint}",service="default/users",state="healthy"}} 1"#), Duration::from_secs(10)).await;
    reporter.set_service_status("users", tonic_health::ServingStatus::NotServing).await;
    wait_metric(&gw, &format!(r#"endpoint="{endpoint}",service="default/users",state="unhealthy"}} 1"#), Duration::from_secs(10)).await;
    assert!(
        Client::http1()
            .get(&gw.admin_url("/metrics"), &[])
            .await
            .unwrap()
            .body
            .contains(r#"datum_router_health_transitions_total{service="default/users",state="unhealthy"} 1"#)
    );

    // The only endpoint is unhealthy: panic mode still sends traffic to it.
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(gw.url("")).unwrap().connect().await.unwrap();
    let r = HealthClient::new(channel).check(HealthCheckRequest { service: "users".into() }).await.unwrap();
    assert_eq!(r.get_ref().status, tonic_health::pb::health_check_response::ServingStatus::NotServing as i32);
}

#[tokio::test]
async fn an_endpoint_failing_its_checks_leaves_and_comes_back() {
    let b = start_backends(&["x1", "x2"]).await;
    let mut config = vpc("rc-vpc");
    for x in &b {
        config += &attachment(&format!("rc-{}", x.name), "rc-vpc", &[x.addr.ip()], true, "rc");
    }
    config += &checked_service("svc", "rc", b[0].addr.port(), "HTTP", "httpPath: /health");
    config += &route("r", "  destinations: [{vpcServiceRef: {name: svc}}]");
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let sick = b[1].addr.to_string();
    let state = |s: &str| format!(r#"endpoint="{sick}",service="default/svc",state="{s}"}} 1"#);
    wait_metric(&gw, &state("healthy"), Duration::from_secs(10)).await;

    b[1].fail_with(Some(500));
    let ejected = wait_metric(&gw, &state("unhealthy"), Duration::from_secs(10)).await;
    let c = Client::http1();
    b[1].fail_with(None);
    let recovered = wait_metric(&gw, &state("healthy"), Duration::from_secs(10)).await;
    // unhealthyThreshold 2 and healthyThreshold 1 at a 2 s interval (±10% jitter).
    eprintln!("time to eject: {ejected:?}; time to recover: {recovered:?}");
    assert!(recovered < Duration::from_secs(5), "back after one passing probe: {recovered:?}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(c.get(&gw.url("/"), &[]).await.unwrap().backend().unwrap_or_default().to_owned());
    }
    assert!(seen.contains("x2"), "traffic returns to the recovered endpoint: {seen:?}");
}

#[tokio::test]
async fn under_steady_load_a_killed_endpoint_costs_nothing_with_retries_and_checks() {
    let b = start_backends(&["s1", "s2", "s3"]).await;
    let mut config = vpc("sl-vpc");
    for x in &b {
        config += &attachment(&format!("sl-{}", x.name), "sl-vpc", &[x.addr.ip()], true, "sl");
    }
    config += &checked_service("svc", "sl", b[0].addr.port(), "HTTP", "httpPath: /health");
    config += &route(
        "r",
        "  destinations: [{vpcServiceRef: {name: svc}}]\n  retries: {maxRetries: 2, retryOn: [connect-failure, reset], \
         budget: {percent: 100, minPerSecond: 100}}",
    );
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let dead = b[1].addr.to_string();
    wait_metric(&gw, &format!(r#"endpoint="{dead}",service="default/svc",state="healthy"}} 1"#), Duration::from_secs(10)).await;

    // Four clients send requests back to back for eight seconds; one endpoint dies after the first.
    let url = gw.url("/");
    let started = Instant::now();
    let load = (0..4).map(|_| {
        let (c, url) = (Client::http1(), url.clone());
        async move {
            let mut outcomes = Vec::new();
            while started.elapsed() < Duration::from_secs(8) {
                let r = c.get(&url, &[]).await;
                let at = started.elapsed();
                outcomes.push((
                    at,
                    r.as_ref().map_or(0, |r| r.status),
                    r.ok().and_then(|r| r.header("x-datum-router-attempts").map(str::to_owned)),
                ));
            }
            outcomes
        }
    });
    let killer = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        b[1].kill();
    };
    let (results, ()) = tokio::join!(futures::future::join_all(load), killer);
    let all: Vec<_> = results.into_iter().flatten().collect();
    let ok = all.iter().filter(|(_, s, _)| *s == 200).count();
    let ejected =
        wait_metric(&gw, &format!(r#"endpoint="{dead}",service="default/svc",state="unhealthy"}} 1"#), Duration::from_secs(1)).await;
    // After ejection (two failed probes 2 s apart, plus jitter and the 1 s probe timeout: within 6 s of the kill), no request needs a retry.
    let late_retries = all.iter().filter(|(at, _, attempts)| *at > Duration::from_secs(7) && attempts.as_deref() != Some("1")).count();
    eprintln!("steady load with one of three killed: {ok}/{} succeeded; {late_retries} retried after ejection", all.len());
    assert!(ok * 1000 >= all.len() * 999, "at least 99.9% succeed: {ok}/{}", all.len());
    assert_eq!(late_retries, 0, "once ejected, the dead endpoint is not even tried (ejected; check took {ejected:?})");
}
