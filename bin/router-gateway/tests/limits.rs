//! Client-side limits: oversized or too many headers get a clear 431, a
//! client that never finishes its request head is cut off, and none of it
//! disturbs other clients.

use std::time::{Duration, Instant};

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

async fn gateway() -> (GatewayProcess, Vec<router_tests::backend::Backend>) {
    let b = start_backends(&["l"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw =
        GatewayProcess::start(BIN, &config, &["--max-headers", "20", "--max-header-bytes", "16384", "--header-read-timeout-secs", "1"])
            .await;
    (gw, b)
}

#[tokio::test]
async fn too_many_or_too_large_headers_get_431() {
    let (gw, _b) = gateway().await;
    let c = Client::http1();
    let many: Vec<(String, String)> = (0..40).map(|i| (format!("x-h{i}"), "v".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    assert_eq!(c.get(&gw.url("/"), &many).await.unwrap().status, 431);
    let big = "v".repeat(32 * 1024);
    assert_eq!(c.get(&gw.url("/"), &[("x-big", big.as_str())]).await.unwrap().status, 431);
    // A request line longer than any header budget (the http crate will not even build such a URI).
    let mut long = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    long.write_all(format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024)).as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(5), long.read(&mut buf)).await.unwrap().unwrap();
    let head = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(head.starts_with("HTTP/1.1 414") || head.starts_with("HTTP/1.1 431"), "an over-long request line is refused: {head}");
    assert_eq!(c.get(&gw.url("/"), &[]).await.unwrap().status, 200, "normal requests still pass");
}

#[tokio::test]
async fn a_slow_request_head_is_cut_off() {
    let (gw, _b) = gateway().await;
    let mut slow = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
    let started = Instant::now();
    // Meanwhile other clients are served.
    assert_eq!(Client::http1().get(&gw.url("/"), &[]).await.unwrap().status, 200);
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the gateway closed the slow connection");
    assert!(started.elapsed() >= Duration::from_millis(900), "not before the header read timeout");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");
}

#[tokio::test]
async fn malformed_requests_get_400_and_the_gateway_keeps_serving() {
    let (gw, _b) = gateway().await;
    let mut bad = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    bad.write_all(b"NOT A REQUEST\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), bad.read_to_end(&mut buf)).await;
    assert!(String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 400"), "{}", String::from_utf8_lossy(&buf));
    // HTTP/1.1 requires Host (RFC 9112 §3.2): without it, 400.
    let mut no_host = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    no_host.write_all(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), no_host.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 400") && text.contains("bad-request"), "{text}");
    // HTTP/1.0 may omit it: such a request is served by routes without hostnames.
    let mut old = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    old.write_all(b"GET / HTTP/1.0\r\n\r\n").await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), old.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.0 200"), "{text}");
    assert_eq!(Client::http1().get(&gw.url("/"), &[]).await.unwrap().status, 200);
}
