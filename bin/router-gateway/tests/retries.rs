//! Retries and timeouts through the real gateway, under injected faults:
//! a dead endpoint, one answering 503, a hanging one; non-idempotent requests
//! are not replayed; the budget stops retries from multiplying load.

use std::time::{Duration, Instant};

use bytes::Bytes;
use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn retrying_route(extra: &str) -> String {
    route(
        "r",
        &format!(
            "  destinations: [{{vpcServiceRef: {{name: svc}}}}]\n  retries:\n    maxRetries: 2\n    retryOnStatus: [503]\n    \
             retryOn: [connect-failure, reset, timeout]\n    backoff: {{base: 5ms, max: 20ms}}\n{extra}"
        ),
    )
}

#[tokio::test]
async fn requests_succeed_when_one_of_three_endpoints_dies() {
    let b = start_backends(&["a", "b", "c"]).await;
    let config =
        [service_on("svc", "svc", &[&b[0], &b[1], &b[2]], "HTTP"), retrying_route("    budget: {percent: 100, minPerSecond: 100}")]
            .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[1].kill();
    let c = Client::http1();
    let (mut ok, mut retried) = (0, 0);
    for _ in 0..300 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        if r.status == 200 {
            ok += 1;
        }
        if r.header("x-datum-router-attempts") == Some("2") {
            retried += 1;
        }
    }
    assert_eq!(ok, 300, "every request succeeded");
    assert!(retried >= 90, "about a third were retried after a connect failure: {retried}");
    assert!(gw.metric_sum(r#"datum_router_retries_total{outcome="retried",reason="connect-failure""#).await >= 90);
}

#[tokio::test]
async fn a_503_is_retried_on_another_endpoint_but_not_for_post() {
    let b = start_backends(&["good", "bad"]).await;
    let config =
        [service_on("svc", "svc", &[&b[0], &b[1]], "HTTP"), retrying_route("    budget: {percent: 100, minPerSecond: 100}")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[1].fail_with(Some(503));
    let c = Client::http1();
    for _ in 0..40 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!((r.status, r.backend()), (200, Some("good")));
    }
    // POST is not idempotent: the 503 is passed on, not replayed.
    let mut posts_503 = 0;
    for _ in 0..40 {
        let r = c.send(http::Method::POST, &gw.url("/"), &[], Bytes::from_static(b"order")).await.unwrap();
        if r.status == 503 {
            posts_503 += 1;
            assert_eq!(r.header("x-datum-router-attempts"), Some("1"));
        }
    }
    assert_eq!(posts_503, 20, "round robin sends half the POSTs to the failing endpoint");
    // PUT bodies are buffered and replayed whole.
    let r = c.send(http::Method::PUT, &gw.url("/"), &[], Bytes::from(vec![b'p'; 10_000])).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 10_000);
}

#[tokio::test]
async fn a_hanging_endpoint_costs_at_most_the_per_try_timeout() {
    let b = start_backends(&["fast", "hung"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0], &b[1]], "HTTP"),
        retrying_route("    budget: {percent: 100, minPerSecond: 100}\n  timeouts: {perTry: 200ms, request: 2s}"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[1].delay(Duration::from_secs(5));
    let c = Client::http1();
    for _ in 0..6 {
        let started = Instant::now();
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!((r.status, r.backend()), (200, Some("fast")));
        assert!(started.elapsed() < Duration::from_millis(1500), "took {:?}", started.elapsed());
    }
    assert!(gw.metric_sum(r#"datum_router_retries_total{outcome="retried",reason="timeout""#).await >= 2);
    assert!(gw.metric_sum(r#"datum_router_timeouts_total{kind="per-try""#).await >= 2, "per-try timeouts are counted by kind");
}

#[tokio::test]
async fn concurrent_retries_are_capped_by_max_retries() {
    let b = start_backends(&["failing", "slow"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0], &b[1]], "HTTP"),
        retrying_route("    budget: {percent: 100, minPerSecond: 100}\n  circuitBreaker: {maxRetries: 1, consecutiveFailures: 100}"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[0].fail_with(Some(503));
    b[1].delay(Duration::from_millis(800));
    let c = Client::http1();
    // Twelve at once: about half start on the failing endpoint and want a retry, which takes 800 ms;
    // only one of those retries may be in flight.
    let url = gw.url("/");
    let replies = futures::future::join_all((0..12).map(|_| c.get(&url, &[]))).await;
    let refused = replies.iter().map(|r| r.as_ref().unwrap()).filter(|r| r.status == 503).count();
    assert!(refused >= 2, "requests whose retry would exceed maxRetries get the upstream's 503: {refused}");
    assert!(gw.metric_sum(r#"datum_router_retries_total{outcome="overflow""#).await >= 2);
}

#[tokio::test]
async fn retries_stop_when_the_budget_is_spent() {
    let b = start_backends(&["x", "y"]).await;
    let config = [service_on("svc", "svc", &[&b[0], &b[1]], "HTTP"), retrying_route("    budget: {percent: 0, minPerSecond: 3}")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[0].fail_with(Some(503));
    b[1].fail_with(Some(503));
    let c = Client::http1();
    let started = Instant::now();
    let mut attempts = 0;
    for _ in 0..50 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!(r.status, 503);
        attempts += r.header("x-datum-router-attempts").unwrap().parse::<u32>().unwrap();
    }
    let seconds = started.elapsed().as_secs() + 1;
    // 50 requests may add at most 3 retries per second of the test (plus one window's slack).
    assert!(attempts <= 50 + 3 * (seconds as u32 + 1), "{attempts} attempts in {seconds}s");
    assert!(gw.metric_sum(r#"datum_router_retries_total{outcome="budget-exhausted""#).await >= 40);
    assert_eq!(b[0].hits() + b[1].hits(), attempts as usize, "the backends saw exactly the attempts reported");
}

#[tokio::test]
async fn resets_are_retried_for_idempotent_requests_only() {
    let b = start_backends(&["good"]).await;
    let good = b[0].addr;
    let std::net::IpAddr::V4(ip) = good.ip() else { unreachable!("test backends are IPv4") };
    let [a, x, y, _] = ip.octets();
    let bad = std::net::SocketAddr::from(([a, x, y, 200], good.port()));
    // Reads each request and drops the connection unanswered: it ends mid-request.
    router_tests::backend::raw_backend(bad, |stream| async move { drop(stream) }).await;
    let mut config = router_tests::gateway::vpc("rst-vpc");
    config += &router_tests::gateway::attachment("rst-good", "rst-vpc", &[good.ip()], true, "svc");
    config += &router_tests::gateway::attachment("rst-bad", "rst-vpc", &[bad.ip()], true, "svc");
    config += &router_tests::gateway::service("svc", "svc", good.port(), "HTTP");
    config += &retrying_route("    budget: {percent: 100, minPerSecond: 100}");
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    for _ in 0..20 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!((r.status, r.backend()), (200, Some("good")));
    }
    let mut post_failures = 0;
    for _ in 0..20 {
        let r = c.send(http::Method::POST, &gw.url("/"), &[], Bytes::from_static(b"x")).await.unwrap();
        if r.status == 502 {
            post_failures += 1;
            assert_eq!(r.header("x-datum-router-error"), Some("upstream-protocol-error"));
        }
    }
    assert_eq!(post_failures, 10, "a POST that may have reached the upstream is not replayed");
    assert!(gw.metric_sum(r#"datum_router_retries_total{outcome="retried",reason="reset""#).await >= 10);
}

#[tokio::test]
async fn a_flapping_endpoint_is_invisible_to_clients() {
    let b = start_backends(&["s1", "s2", "flap"]).await;
    let config =
        [service_on("svc", "svc", &[&b[0], &b[1], &b[2]], "HTTP"), retrying_route("    budget: {percent: 100, minPerSecond: 100}")]
            .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::http1();
    let (mut total, mut ok) = (0, 0);
    // Three seconds of traffic while the endpoint flips between 503 and healthy every 300 ms.
    let started = Instant::now();
    let mut failing = false;
    let mut last_flip = Instant::now();
    while started.elapsed() < Duration::from_secs(3) {
        if last_flip.elapsed() >= Duration::from_millis(300) {
            failing = !failing;
            b[2].fail_with(failing.then_some(503));
            last_flip = Instant::now();
        }
        total += 1;
        if c.get(&gw.url("/"), &[]).await.unwrap().status == 200 {
            ok += 1;
        }
    }
    eprintln!("flapping endpoint: {ok}/{total} succeeded");
    assert!(total > 100, "load was applied: {total}");
    assert_eq!(ok, total, "retries hide the flapping endpoint");
}
