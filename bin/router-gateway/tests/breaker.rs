//! Circuit breaking through the real gateway: a failing endpoint is ejected
//! after consecutive failures and probed back in, ejection never empties a
//! pool, maxRequests sheds load with a fast, labelled 503, and maxConnections
//! queues up to maxPendingRequests before shedding.

use std::time::Duration;

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn breaker_route(cb: &str) -> String {
    route("r", &format!("  destinations: [{{vpcServiceRef: {{name: svc}}}}]\n  circuitBreaker: {{{cb}}}"))
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_then_probed_back() {
    let b = start_backends(&["ok1", "ok2", "flaky"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0], &b[1], &b[2]], "HTTP"),
        breaker_route("consecutiveFailures: 3, openDuration: 1s, halfOpenRequests: 1"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[2].fail_with(Some(503));
    let c = Client::http1();
    let mut failures = 0;
    for _ in 0..60 {
        if c.get(&gw.url("/"), &[]).await.unwrap().status == 503 {
            failures += 1;
        }
    }
    assert_eq!(failures, 3, "three consecutive failures open the breaker, then the endpoint gets nothing");
    let flaky_hits = b[2].hits();

    // Recovered: after openDuration the breaker half-opens and one probe closes it.
    b[2].fail_with(None);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    for _ in 0..30 {
        assert_eq!(c.get(&gw.url("/"), &[]).await.unwrap().status, 200);
    }
    assert!(b[2].hits() >= flaky_hits + 8, "traffic is back on the recovered endpoint");
    let metrics = c.get(&gw.admin_url("/metrics"), &[]).await.unwrap().body;
    assert!(metrics.contains(r#"datum_router_breaker_transitions_total{route="default/r",state="open"} 1"#), "{metrics}");
    assert!(metrics.contains(r#"datum_router_breaker_transitions_total{route="default/r",state="closed"} 1"#), "{metrics}");
    let flaky = b[2].addr.to_string();
    assert!(
        metrics.contains(&format!(r#"datum_router_endpoint_breaker_state{{endpoint="{flaky}",route="default/r",state="closed"}} 1"#)),
        "{metrics}"
    );
}

#[tokio::test]
async fn ejection_never_empties_the_pool() {
    let b = start_backends(&["bad1", "bad2"]).await;
    let config = [service_on("svc", "svc", &[&b[0], &b[1]], "HTTP"), breaker_route("consecutiveFailures: 2, openDuration: 30s")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[0].fail_with(Some(500));
    b[1].fail_with(Some(500));
    let c = Client::http1();
    for _ in 0..20 {
        let r = c.get(&gw.url("/"), &[]).await.unwrap();
        assert_eq!(r.status, 500, "the upstream's answer, never no-healthy-upstream: {:?}", r.header("x-datum-router-error"));
    }
    // One of the two is ejected (50% cap); the other keeps answering.
    let (h0, h1) = (b[0].hits(), b[1].hits());
    assert!(h0.min(h1) <= 3 && h0.max(h1) >= 17, "hits {h0} / {h1}");
}

#[tokio::test]
async fn max_requests_sheds_excess_load_fast() {
    let b = start_backends(&["slow"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), breaker_route("maxRequests: 2")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[0].delay(Duration::from_millis(500));
    let c = Client::http1();
    let results = futures::future::join_all((0..5).map(|_| {
        let (c, url) = (c.clone(), gw.url("/"));
        async move { c.get(&url, &[]).await.unwrap() }
    }))
    .await;
    let shed: Vec<_> = results.iter().filter(|r| r.status == 503).collect();
    assert_eq!(shed.len(), 3, "two in flight, three shed");
    assert!(shed.iter().all(|r| r.header("x-datum-router-error") == Some("upstream-overflow")));
    assert_eq!(results.iter().filter(|r| r.status == 200).count(), 2);
}

#[tokio::test]
async fn max_connections_queues_up_to_max_pending_requests_and_sheds_the_rest() {
    let b = start_backends(&["slow"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), breaker_route("maxConnections: 2, maxPendingRequests: 1")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    b[0].delay(Duration::from_millis(600));
    let c = Client::http1();
    let results = futures::future::join_all((0..6).map(|_| {
        let (c, url) = (c.clone(), gw.url("/"));
        async move {
            let started = std::time::Instant::now();
            let r = c.get(&url, &[]).await.unwrap();
            (r, started.elapsed())
        }
    }))
    .await;
    let shed: Vec<_> = results.iter().filter(|(r, _)| r.status == 503).collect();
    assert_eq!(shed.len(), 3, "two connections busy, one request waiting, three shed");
    assert!(shed.iter().all(|(r, _)| r.header("x-datum-router-error") == Some("upstream-overflow")));
    let mut served: Vec<Duration> = results.iter().filter(|(r, _)| r.status == 200).map(|(_, t)| *t).collect();
    served.sort();
    assert_eq!(served.len(), 3);
    assert!(served[2] >= Duration::from_millis(1200), "the pending request waited for a connection: {served:?}");
    assert_eq!(b[0].hits(), 3, "the backend saw only what the limits admitted");
}

/// An h2c gRPC endpoint that answers every call with one message and then
/// `grpc-status` in real trailers (not a trailers-only answer).
async fn grpc_trailers_backend(ip: std::net::IpAddr, port: u16, name: &'static str, grpc_status: &'static str) -> std::net::SocketAddr {
    use bytes::Bytes;
    use http_body_util::StreamBody;
    use hyper::body::Frame;
    let listener = tokio::net::TcpListener::bind((ip, port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    let mut trailers = http::HeaderMap::new();
                    trailers.insert("grpc-status", http::HeaderValue::from_static(grpc_status));
                    let frames = vec![
                        Ok::<_, std::convert::Infallible>(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
                        Ok(Frame::trailers(trailers)),
                    ];
                    let body = StreamBody::new(futures::stream::iter(frames));
                    let r =
                        http::Response::builder().header("content-type", "application/grpc").header("x-backend", name).body(body).unwrap();
                    Ok::<_, std::convert::Infallible>(r)
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn grpc_errors_in_trailers_count_for_the_breaker() {
    use router_tests::{
        backend::{loopback_block, loopback_ip},
        gateway::{attachment, service, vpc},
    };
    let block = loopback_block();
    let bad = grpc_trailers_backend(loopback_ip(block, 1), 0, "bad", "14").await;
    // The same port on another address: a VPCService has one port.
    let good = grpc_trailers_backend(loopback_ip(block, 2), bad.port(), "good", "0").await;
    let config = [
        vpc("v"),
        attachment("a-bad", "v", &[bad.ip()], true, "grpc"),
        attachment("a-good", "v", &[good.ip()], true, "grpc"),
        service("svc", "grpc", bad.port(), "GRPC"),
        breaker_route("consecutiveFailures: 2, openDuration: 30s"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let c = Client::h2c();
    let mut backends = Vec::new();
    for _ in 0..12 {
        let r = c
            .send(
                http::Method::POST,
                &gw.url("/pkg.Svc/Call"),
                &[("content-type", "application/grpc"), ("te", "trailers")],
                Default::default(),
            )
            .await
            .unwrap();
        backends.push(r.backend().unwrap_or_default().to_owned());
    }
    assert!(backends[..6].contains(&"bad".to_owned()), "round robin reached the bad endpoint first: {backends:?}");
    assert!(backends[6..].iter().all(|b| b == "good"), "UNAVAILABLE in trailers ejected the bad endpoint: {backends:?}");
    assert!(gw.metric_sum(r#"datum_router_breaker_transitions_total{route="default/r",state="open"}"#).await >= 1);
}

#[tokio::test]
async fn waiting_for_a_connection_is_bounded_by_the_request_timeout() {
    let b = start_backends(&["slow"]).await;
    let route = route(
        "r",
        "  destinations: [{vpcServiceRef: {name: svc}}]\n  timeouts: {request: 2s}\n  circuitBreaker: {maxConnections: 1, maxPendingRequests: 5}",
    );
    let gw = GatewayProcess::start(BIN, &[service_on("svc", "svc", &[&b[0]], "HTTP"), route].concat(), &[]).await;
    b[0].delay(Duration::from_millis(1500));
    let (c, url) = (Client::http1(), gw.url("/"));
    let (first, second) = tokio::join!(c.get(&url, &[]), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.get(&url, &[]).await
    });
    assert_eq!(first.unwrap().status, 200);
    // The second waits 1.3 s for the only connection, then has 0.7 s of its 2 s left for a 1.5 s answer:
    // the request timeout covers the wait.
    let second = second.unwrap();
    assert_eq!((second.status, second.header("x-datum-router-error")), (504, Some("upstream-timeout")));
    assert_eq!(gw.metric_sum(r#"datum_router_timeouts_total{kind="request""#).await, 1);
}
