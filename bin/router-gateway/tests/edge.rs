//! Request validation at the edge, sent as raw bytes the way a hostile client
//! would: each shape is refused with its status and `x-datum-router-error`
//! label, never reaches the backend, and the gateway keeps serving.

use std::{sync::atomic::Ordering, time::Duration};

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

/// Sends `raw` on a new connection and returns everything the gateway answers until it closes.
async fn exchange(gw: &GatewayProcess, raw: &[u8]) -> String {
    let mut conn = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    conn.write_all(raw).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut buf)).await;
    String::from_utf8_lossy(&buf).into_owned()
}

#[tokio::test]
async fn malformed_framing_and_targets_are_refused_before_routing() {
    let b = start_backends(&["edge"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &["--header-read-timeout-secs", "2"]).await;

    let cases: &[(&str, &[u8], &str)] = &[
        ("two Host lines", b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"),
        ("an ftp target", b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"),
        ("userinfo in the target", b"GET http://u:p@x/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"),
        ("a quote in the path", b"GET /a\"b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"),
        ("a bad percent escape", b"GET /a%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "HTTP/1.1 400"),
        (
            "a gzip transfer coding",
            b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
            "HTTP/1.1 501",
        ),
        ("a signed Content-Length", b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\nConnection: close\r\n\r\nhello", "HTTP/1.1 400"),
    ];
    for (what, raw, status) in cases {
        let answer = exchange(&gw, raw).await;
        assert!(answer.starts_with(status), "{what}: {answer}");
        assert!(!answer.starts_with("HTTP/1.1 2"), "{what} was served: {answer}");
    }
    // The gateway's own verdicts carry their label (hyper refuses some shapes before the gateway sees them).
    for (raw, label) in [
        (
            &b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n0\r\n\r\n"[..],
            "unsupported-transfer-encoding",
        ),
        (b"GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\nConnection: close\r\n\r\n", "duplicate-host"),
        (b"GET ftp://example.com/ HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", "unsupported-scheme"),
        (b"GET /a\"b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "invalid-request-target"),
    ] {
        let answer = exchange(&gw, raw).await.to_ascii_lowercase();
        assert!(answer.contains(&format!("x-datum-router-error: {label}")), "{label}: {answer}");
    }
    assert_eq!(b[0].hits.load(Ordering::SeqCst), 0, "nothing refused reached the backend");

    // Content-Length with chunked: hyper reads the body as chunked and closes the connection after;
    // the upstream never sees both framings.
    let answer = exchange(&gw, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
    let lower = answer.to_ascii_lowercase();
    assert!(!lower.contains("\"content-length\":\"5\""), "the upstream did not get the client's Content-Length: {answer}");

    // A chunked body whose chunk size is not hex is the client's error, not the upstream's.
    let answer =
        exchange(&gw, b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n")
            .await;
    assert!(answer.starts_with("HTTP/1.1 400"), "bad chunk size: {answer}");
    assert!(answer.to_ascii_lowercase().contains("client-body-error"), "{answer}");
    let metrics = gw.metrics().await;
    assert!(
        !metrics.contains("datum_router_upstream_errors_total{"),
        "a client's broken body is not counted against the upstream:\n{metrics}"
    );

    // The absolute-form authority wins over a disagreeing Host, and the upstream sees it.
    let answer = exchange(&gw, b"GET http://right.example/echo HTTP/1.1\r\nHost: wrong.example\r\nConnection: close\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"host\":\"right.example\""), "Host rewritten to the target's authority: {answer}");

    assert_eq!(Client::http1().get(&gw.url("/"), &[]).await.unwrap().status, 200, "normal requests still pass");
}
