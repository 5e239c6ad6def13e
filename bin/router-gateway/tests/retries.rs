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
