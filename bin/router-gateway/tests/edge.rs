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

    // Content-Length with chunked (request smuggling's shape), alone or after a pipelined request
    // that is served: 400 ambiguous-framing, and the connection closes.
    let answer = exchange(&gw, b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400"), "CL+TE: {answer}");
    assert!(answer.to_ascii_lowercase().contains("x-datum-router-error: ambiguous-framing"), "{answer}");
    let hits = b[0].hits.load(Ordering::SeqCst);
    let answer = exchange(
        &gw,
        b"GET /first HTTP/1.1\r\nHost: x\r\n\r\nPOST /second HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\nGET /never HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "the request before it is served: {answer}");
    assert_eq!(answer.matches("HTTP/1.1 400").count(), 1, "then the ambiguous one is refused: {answer}");
    assert_eq!(answer.matches("HTTP/1.1 ").count(), 2, "and nothing after it is read: {answer}");
    assert_eq!(b[0].hits.load(Ordering::SeqCst), hits + 1, "only /first reached the backend");

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

#[tokio::test]
async fn malformed_http2_requests_are_reset_or_refused_and_never_forwarded() {
    use router_tests::h2frames::{END_HEADERS, END_STREAM, HEADERS, PROTOCOL_ERROR, Peer, frame, get, header_block};

    let b = start_backends(&["edge-h2"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let mut peer = Peer::connect(gw.addr).await;
    let userinfo = header_block(&[(":method", "GET"), (":scheme", "http"), (":path", "/"), (":authority", "user:pw@x.example")]);
    let mut requests = Vec::new();
    // RFC 9113 §8.2.2: connection-specific fields are malformed, and `te` may only say trailers.
    requests.extend(get(1, "/", &[("connection", "keep-alive")]));
    requests.extend(get(3, "/", &[("te", "gzip")]));
    requests.extend(get(5, "/", &[("transfer-encoding", "chunked")]));
    requests.extend(frame(HEADERS, END_STREAM | END_HEADERS, 7, &userinfo));
    requests.extend(get(9, "/", &[("te", "trailers")]));
    peer.write.write_all(&requests).await.unwrap();
    let frames = peer.frames(Duration::from_secs(2)).await;
    for stream in [1, 3, 5] {
        let reset = frames.iter().find(|f| f.stream == stream && f.reset_code().is_some());
        assert_eq!(reset.and_then(|f| f.reset_code()), Some(PROTOCOL_ERROR), "stream {stream} is reset as malformed: {frames:?}");
    }
    let status = |stream| frames.iter().find(|f| f.stream == stream).and_then(|f| f.status());
    assert_eq!(status(7), Some(400), "userinfo in :authority: 400 invalid-authority");
    assert_eq!(status(9), Some(200), "te: trailers is allowed");

    // §8.2.1: uppercase field names are malformed: a stream error, the connection goes on.
    let mut peer = Peer::connect(gw.addr).await;
    peer.write.write_all(&get(1, "/", &[("X-Upper", "v")])).await.unwrap();
    peer.write.write_all(&get(3, "/", &[])).await.unwrap();
    let frames = peer.frames(Duration::from_secs(2)).await;
    assert!(frames.iter().any(|f| f.stream == 1 && f.reset_code() == Some(PROTOCOL_ERROR)), "an uppercase name is refused: {frames:?}");
    assert_eq!(frames.iter().find(|f| f.stream == 3).and_then(|f| f.status()), Some(200), "the next stream is served: {frames:?}");
    assert_eq!(b[0].hits.load(Ordering::SeqCst), 2, "only the well-formed requests reached the backend");
}
