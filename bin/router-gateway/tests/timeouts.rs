//! Stream timeouts through the real gateway: `timeouts.idle` cuts a response
//! that goes quiet, while `timeouts.request` (which covers reaching the
//! response head) never cuts a stream that keeps sending.

use std::time::{Duration, Instant};

use router_tests::{
    backend::{loopback_block, loopback_ip, raw_backend},
    client::Client,
    gateway::{GatewayProcess, attachment, route, service, vpc},
};
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

/// A raw HTTP/1.1 backend that answers with a chunked body: `chunks` chunks `gap` apart, then
/// (when `stall`) nothing more, forever.
async fn streaming_backend(chunks: usize, gap: Duration, stall: bool) -> std::net::SocketAddr {
    raw_backend((loopback_ip(loopback_block(), 1), 0).into(), move |mut s| async move {
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").await;
        for _ in 0..chunks {
            let _ = s.write_all(b"5\r\nchunk\r\n").await;
            tokio::time::sleep(gap).await;
        }
        if stall {
            tokio::time::sleep(Duration::from_secs(60)).await;
        }
        let _ = s.write_all(b"0\r\n\r\n").await;
    })
    .await
}

fn config(addr: std::net::SocketAddr, timeouts: &str) -> String {
    [
        vpc("t-vpc"),
        attachment("t-att", "t-vpc", &[addr.ip()], true, "t"),
        service("svc", "t", addr.port(), "HTTP"),
        route("r", &format!("  destinations: [{{vpcServiceRef: {{name: svc}}}}]\n  timeouts: {{{timeouts}}}")),
    ]
    .concat()
}

#[tokio::test]
async fn a_quiet_stream_is_cut_after_the_idle_timeout() {
    let addr = streaming_backend(1, Duration::ZERO, true).await;
    let gw = GatewayProcess::start(BIN, &config(addr, "idle: 300ms"), &[]).await;
    let started = Instant::now();
    let r = Client::http1().get(&gw.url("/"), &[]).await;
    assert!(r.is_err(), "the truncated stream is an error, not a clean end: {r:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "cut after {:?}", started.elapsed());
    assert_eq!(gw.metric_sum(r#"datum_router_timeouts_total{kind="idle""#).await, 1, "counted as an idle timeout");
}

#[tokio::test]
async fn a_long_stream_outlives_the_request_timeout() {
    // Ten chunks 100 ms apart: one second of streaming against a 300 ms request timeout.
    let addr = streaming_backend(10, Duration::from_millis(100), false).await;
    let gw = GatewayProcess::start(BIN, &config(addr, "request: 300ms, idle: 1s"), &[]).await;
    let r = Client::http1().get(&gw.url("/"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body, "chunk".repeat(10));
}

#[tokio::test]
async fn a_request_that_never_gets_a_connection_times_out_waiting_for_one() {
    // A three-second stream holds the only connection (a started stream outlives the request timeout).
    let addr = streaming_backend(15, Duration::from_millis(200), false).await;
    let config = [
        vpc("t-vpc"),
        attachment("t-att", "t-vpc", &[addr.ip()], true, "t"),
        service("svc", "t", addr.port(), "HTTP"),
        route(
            "r",
            "  destinations: [{vpcServiceRef: {name: svc}}]\n  timeouts: {request: 1s}\n  circuitBreaker: {maxConnections: 1, maxPendingRequests: 5}",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let (c, url) = (Client::http1(), gw.url("/"));
    let (first, second) = tokio::join!(c.get(&url, &[]), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        c.get(&url, &[]).await
    });
    assert_eq!(first.unwrap().body, "chunk".repeat(15));
    let second = second.unwrap();
    assert_eq!((second.status, second.header("x-datum-router-error")), (504, Some("upstream-timeout")));
    assert_eq!(gw.metric_sum(r#"datum_router_timeouts_total{kind="pending""#).await, 1, "it timed out waiting for the connection");
}
