//! HTTP/1.1 abuse against the real binary, as raw bytes on sockets:
//! pipelining, responses nobody reads, thousands of idle connections, the
//! connection limit, and a body that trickles in a byte at a time.

use std::{sync::atomic::Ordering, time::Duration};

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
    probe::Probe,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

fn config(b: &router_tests::backend::Backend) -> String {
    [service_on("svc", "svc", &[b], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat()
}

/// Reads from `conn` until `count` complete responses (each with Content-Length) have arrived.
async fn read_responses(conn: &mut TcpStream, count: usize) -> Vec<u16> {
    let mut buf = Vec::new();
    let mut statuses = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut at = 0;
    while statuses.len() < count {
        let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut chunk)).await.expect("responses keep coming").expect("read");
        assert!(n > 0, "connection closed after {} responses", statuses.len());
        buf.extend_from_slice(&chunk[..n]);
        // Walk every complete response in what has arrived.
        while let Some(end) = buf[at..].windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[at..at + end]).to_ascii_lowercase();
            let length: usize =
                head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).expect("content-length");
            if buf.len() < at + end + 4 + length {
                break;
            }
            statuses.push(head[9..12].parse().expect("status"));
            at += end + 4 + length;
        }
    }
    statuses
}

#[tokio::test]
async fn a_thousand_pipelined_requests_in_one_write_are_all_answered_in_order() {
    let b = start_backends(&["pipe"]).await;
    let gw = GatewayProcess::start(BIN, &config(&b[0]), &["--access-log", "off"]).await;
    let mut conn = TcpStream::connect(gw.addr).await.unwrap();
    let one = b"GET /pipelined HTTP/1.1\r\nHost: x\r\n\r\n";
    conn.write_all(&one.repeat(1000)).await.unwrap();
    let statuses = read_responses(&mut conn, 1000).await;
    assert!(statuses.iter().all(|&s| s == 200), "every pipelined request answered 200");
    assert_eq!(b[0].hits.load(Ordering::SeqCst), 1000, "each reached the backend once");
}

#[tokio::test]
async fn responses_nobody_reads_hold_bounded_memory() {
    let b = start_backends(&["unread"]).await;
    let gw = GatewayProcess::start(BIN, &config(&b[0]), &["--access-log", "off"]).await;
    let rss_idle = gw.rss_kib();
    let probe = Probe::start(gw.url("/"));
    // 100 clients each ask for 1 MiB and never read a byte of it.
    let mut conns = Vec::new();
    for _ in 0..100 {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(b"GET /bytes/1048576 HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        conns.push(conn);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let per_conn_kib = gw.rss_kib().saturating_sub(rss_idle) / 100;
    let report = probe.finish().await;
    println!("100 unread 1 MiB responses: {per_conn_kib} KiB of gateway memory each; other client p99 {:?}", report.p99);
    assert!(report.failed.is_empty(), "other clients are served: {:?}", report.failed);
    // Backpressure: what the socket does not take stays in the upstream's socket, not in the gateway.
    assert!(per_conn_kib < 384, "{per_conn_kib} KiB per unread response");
    drop(conns);
    assert_eq!(Client::http1().get(&gw.url("/"), &[]).await.unwrap().status, 200);
}

/// How many idle connections the test opens: 10,000 where the file-descriptor limit allows.
fn idle_count() -> usize {
    let limit = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| l.lines().find(|l| l.starts_with("Max open files")).and_then(|l| l.split_whitespace().nth(3)?.parse::<usize>().ok()))
        .unwrap_or(1024);
    10_000.min(limit.saturating_sub(512))
}

#[tokio::test]
async fn ten_thousand_idle_connections_cost_little_and_do_not_stop_service() {
    let b = start_backends(&["idle"]).await;
    let gw = GatewayProcess::start(BIN, &config(&b[0]), &["--access-log", "off", "--max-connections", "0"]).await;
    let rss_before = gw.rss_kib();
    let count = idle_count();
    let mut idle = Vec::with_capacity(count);
    for _ in 0..count {
        idle.push(TcpStream::connect(gw.addr).await.expect("connect"));
    }
    // Half of them started a request and stopped mid-head.
    for conn in idle.iter_mut().step_by(2) {
        conn.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let grown_kib = gw.rss_kib().saturating_sub(rss_before);
    println!("{count} idle connections: gateway RSS {rss_before} KiB → +{grown_kib} KiB ({:.1} KiB each)", grown_kib as f64 / count as f64);
    assert_eq!(Client::http1().get(&gw.url("/"), &[]).await.unwrap().status, 200, "served beside {count} idle connections");
    assert!(grown_kib / (count as u64) < 32, "{grown_kib} KiB for {count} idle connections");
}

#[tokio::test]
async fn a_connection_that_never_sends_a_byte_is_closed_at_the_header_read_timeout() {
    let b = start_backends(&["silent"]).await;
    let gw = GatewayProcess::start(BIN, &config(&b[0]), &["--header-read-timeout-secs", "1"]).await;
    let mut silent = TcpStream::connect(gw.addr).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "closed, not held open: {read:?}");
    assert!(started.elapsed() < Duration::from_secs(3), "closed at the 1 s timeout, took {:?}", started.elapsed());
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_with_503_and_a_label() {
    let b = start_backends(&["limit"]).await;
    let gw = GatewayProcess::start(BIN, &config(&b[0]), &["--max-connections", "20"]).await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(gw.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut over = TcpStream::connect(gw.addr).await.unwrap();
    over.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), over.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("x-datum-router-error: connection-limit"), "{answer}");
    assert!(answer.contains("retry-after: 1"), "{answer}");
    assert_eq!(b[0].hits.load(Ordering::SeqCst), 0);
    assert!(gw.metric_sum("datum_router_connections_refused_total{reason=\"max-connections\"}").await >= 1, "counted");
    // A closed connection frees its slot; the admin port was never counted.
    drop(held.pop());
    router_tests::eventually("a freed slot to be taken", async || {
        Client::http1().get(&gw.url("/"), &[("connection", "close")]).await.is_ok_and(|r| r.status == 200)
    })
    .await;
}

#[tokio::test]
async fn a_body_trickling_in_a_byte_at_a_time_is_cut_off_with_408() {
    let b = start_backends(&["slow-body"]).await;
    let config = [
        service_on("svc", "svc", &[&b[0]], "HTTP"),
        route("streamed", "  hostnames: [streamed.example]\n  destinations: [{vpcServiceRef: {name: svc}}]"),
        route(
            "retried",
            "  hostnames: [retried.example]\n  destinations: [{vpcServiceRef: {name: svc}}]\n  retries: {maxRetries: 1, retryOn: [reset]}",
        ),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &["--request-body-timeout-secs", "2"]).await;
    for host in ["streamed.example", "retried.example"] {
        let mut conn = TcpStream::connect(gw.addr).await.unwrap();
        conn.write_all(format!("POST /upload HTTP/1.1\r\nHost: {host}\r\nContent-Length: 1000\r\n\r\n").as_bytes()).await.unwrap();
        let started = std::time::Instant::now();
        let mut answer = Vec::new();
        let mut chunk = [0u8; 4096];
        // One byte every 250 ms, for as long as the gateway listens.
        'trickle: for _ in 0..60 {
            if conn.write_all(b"x").await.is_err() {
                break;
            }
            let deadline = tokio::time::Instant::now() + Duration::from_millis(250);
            while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, conn.read(&mut chunk)).await {
                if n == 0 {
                    break 'trickle;
                }
                answer.extend_from_slice(&chunk[..n]);
            }
            if answer.windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        let answer = String::from_utf8_lossy(&answer).to_ascii_lowercase();
        assert!(answer.starts_with("http/1.1 408"), "{host}: {answer}");
        assert!(answer.contains("x-datum-router-error: request-body-timeout"), "{host}: {answer}");
        let took = started.elapsed();
        assert!(took < Duration::from_secs(10), "{host}: cut off by the body timeout, not the trickle's end ({took:?})");
    }
    let metrics = gw.metrics().await;
    assert!(!metrics.contains("datum_router_upstream_errors_total{"), "a slow client is not the upstream's error:\n{metrics}");
    // A body that keeps up passes.
    let reply = Client::http1()
        .send(http::Method::POST, &gw.url("/upload"), &[("host", "streamed.example")], bytes::Bytes::from(vec![b'x'; 200_000]))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["body_len"], 200_000);
}
