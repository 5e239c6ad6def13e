//! Protocols end to end through the real gateway: h2c from clients, h2c and
//! gRPC (a real tonic server, trailers included) to upstreams, WebSocket
//! upgrades, bodies streamed both ways, and HTTP/1.1 upstreams that answer
//! with untrustworthy framing or before reading the upload.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, attachment, route, service, service_on, vpc},
    h2frames::{DATA, END_HEADERS, END_STREAM, HEADERS, Peer, frame, header_block},
};
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn h2c_clients_and_h2c_upstreams() {
    let b = start_backends(&["h1-backend", "h2-backend"]).await;
    let config = [
        service_on("plain", "plain", &[&b[0]], "HTTP"),
        service_on("multiplexed", "multiplexed", &[&b[1]], "HTTP2"),
        route("plain", "  match: {pathPrefix: /plain}\n  destinations: [{vpcServiceRef: {name: plain}}]"),
        route("multiplexed", "  match: {pathPrefix: /mux}\n  destinations: [{vpcServiceRef: {name: multiplexed}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;

    let h2 = Client::h2c();
    let r = h2.get(&gw.url("/plain/x"), &[]).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["version"], "HTTP/1.1", "h2 client, HTTP/1.1 upstream");
    let r = Client::http1().get(&gw.url("/mux/x"), &[("host", "api.example.com")]).await.unwrap();
    assert_eq!(r.json()["version"], "HTTP/2.0", "HTTP/1.1 client, h2c upstream");
    assert_eq!(r.json()["headers"]["host"], "api.example.com", "the logical host reaches an h2 upstream");

    // Many concurrent streams over one client connection.
    let futs: Vec<_> = (0..50)
        .map(|i| {
            let (h2, url) = (h2.clone(), gw.url(&format!("/mux/{i}")));
            async move { h2.get(&url, &[]).await.unwrap().status }
        })
        .collect();
    assert!(futures::future::join_all(futs).await.into_iter().all(|s| s == 200));
}

#[tokio::test]
async fn large_bodies_stream_both_ways() {
    let b = start_backends(&["echo"]).await;
    let config = [service_on("echo", "echo", &[&b[0]], "HTTP"), route("all", "  destinations: [{vpcServiceRef: {name: echo}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let body = Bytes::from(vec![b'x'; 8 * 1024 * 1024]);
    for client in [Client::http1(), Client::h2c()] {
        // Over HTTP/2, 8 MiB up is eight times the windows the gateway gives, and 1 MiB down
        // many times the client's: both go on only as the other side gives its window back.
        let r = client.send(http::Method::POST, &gw.url("/upload"), &[], body.clone()).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["body_len"], 8 * 1024 * 1024);
        let r = client.get(&gw.url("/bytes/1048576"), &[]).await.unwrap();
        assert_eq!((r.status, r.body.len()), (200, 1024 * 1024));
    }
    // Many streams at once on one HTTP/2 connection, each answered in full.
    let h2 = Client::h2c();
    let all = futures::future::join_all((0..64).map(|i| {
        let (h2, url) = (h2.clone(), gw.url(&format!("/bytes/{}", 1000 + i)));
        async move { h2.get(&url, &[]).await.map(|r| (r.status, r.body.len())) }
    }))
    .await;
    for (i, r) in all.into_iter().enumerate() {
        assert_eq!(r.unwrap(), (200, 1000 + i), "stream {i}");
    }
}

#[tokio::test]
async fn grpc_end_to_end_with_trailers() {
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    // A real gRPC server: tonic's grpc.health.v1 implementation.
    let (addr, reporter) = router_tests::grpc::start_health_server().await;
    reporter.set_service_status("users.v1.Users", tonic_health::ServingStatus::Serving).await;

    let config = [
        vpc("grpc-vpc"),
        attachment("grpc-att", "grpc-vpc", &[addr.ip()], true, "grpc"),
        service("health", "grpc", addr.port(), "GRPC"),
        route("health", "  match: {grpc: {service: grpc.health.v1.Health}}\n  destinations: [{vpcServiceRef: {name: health}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let channel = tonic::transport::Endpoint::from_shared(gw.url("")).unwrap().connect().await.unwrap();
    let mut client = HealthClient::new(channel);

    let ok = client.check(HealthCheckRequest { service: "users.v1.Users".into() }).await.unwrap();
    assert_eq!(ok.get_ref().status, ServingStatus::Serving as i32);
    // An error status travels in trailers (grpc-status 5) and reaches the client intact.
    let err = client.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // Server streaming: the first message arrives through the gateway.
    let mut stream = client.watch(HealthCheckRequest { service: "users.v1.Users".into() }).await.unwrap().into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), stream.message()).await.unwrap().unwrap().unwrap();
    assert_eq!(first.status, ServingStatus::Serving as i32);

    // A plain HTTP request does not match the gRPC route.
    let r = Client::http1().get(&gw.url("/grpc.health.v1.Health/Check"), &[]).await.unwrap();
    assert_eq!(r.status, 404);
}

#[tokio::test]
async fn websocket_upgrades_pass_through() {
    let b = start_backends(&["ws"]).await;
    let config = [service_on("ws", "ws", &[&b[0]], "HTTP"), route("ws", "  destinations: [{vpcServiceRef: {name: ws}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await.unwrap();
    assert_eq!(response.status(), 101);
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}"))).await.unwrap();
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(echoed.into_text().unwrap().as_str(), format!("hello {i}"));
    }
    ws.close(None).await.unwrap();
}

/// An upstream on 127.0.0.1 that reads each request head and answers `answer`, keeping the connection open.
async fn raw_upstream(answer: &'static [u8]) -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut chunk = [0u8; 4096];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    addr
}

fn raw_service(name: &str, addr: std::net::SocketAddr) -> String {
    [
        vpc(&format!("{name}-vpc")),
        attachment(&format!("{name}-a"), &format!("{name}-vpc"), &[addr.ip()], true, name),
        service(name, name, addr.port(), "HTTP"),
        route(name, &format!("  match: {{pathPrefix: /{name}}}\n  destinations: [{{vpcServiceRef: {{name: {name}}}}}]")),
    ]
    .concat()
}

#[tokio::test]
async fn an_upstream_answer_with_ambiguous_framing_is_a_502_and_an_early_answer_ends_the_upload() {
    let ambiguous =
        raw_upstream(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n").await;
    let refusing = raw_upstream(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 8\r\n\r\ntoo big\n").await;
    let config = [raw_service("ambiguous", ambiguous), raw_service("refusing", refusing)].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let http = Client::http1();

    let r = http.get(&gw.url("/ambiguous"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (502, Some("upstream-protocol-error")), "never forwarded: {}", r.body);

    // The upstream answers after the head and never reads the body: the answer reaches the client.
    let body = Bytes::from(vec![b'x'; 256 * 1024]);
    let r = tokio::time::timeout(Duration::from_secs(10), http.send(http::Method::POST, &gw.url("/refusing"), &[], body))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (413, "too big\n"));
}

#[tokio::test]
async fn an_http2_client_that_expects_100_continue_is_told_to_go_on() {
    let b = start_backends(&["echo"]).await;
    let config = [service_on("echo", "echo", &[&b[0]], "HTTP"), route("all", "  destinations: [{vpcServiceRef: {name: echo}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let mut peer = Peer::connect(gw.addr).await;
    let head = [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/up"),
        (":authority", "x"),
        ("content-length", "5"),
        ("expect", "100-continue"),
    ];
    peer.write.write_all(&frame(HEADERS, END_HEADERS, 1, &header_block(&head))).await.unwrap();
    let frames = peer.frames(Duration::from_secs(1)).await;
    let statuses: Vec<_> = frames.iter().filter(|f| f.stream == 1).filter_map(|f| f.status()).collect();
    assert_eq!(statuses, [100], "100 Continue once the request path waits for the body, nothing final yet: {frames:?}");
    peer.write.write_all(&frame(DATA, END_STREAM, 1, b"hello")).await.unwrap();
    let frames = peer.frames(Duration::from_secs(1)).await;
    let reply = frames.iter().find(|f| f.stream == 1 && f.kind == HEADERS).and_then(|f| f.status());
    assert_eq!(reply, Some(200), "{frames:?}");
    let body: Vec<u8> = frames.iter().filter(|f| f.stream == 1 && f.kind == DATA).flat_map(|f| f.payload.clone()).collect();
    assert!(String::from_utf8_lossy(&body).contains("\"body_len\":5"), "{}", String::from_utf8_lossy(&body));
}
