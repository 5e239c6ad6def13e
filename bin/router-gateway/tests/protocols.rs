//! Protocols end to end through the real gateway: h2c from clients, h2c and
//! gRPC (a real tonic server, trailers included) to upstreams, WebSocket
//! upgrades, and bodies streamed both ways.

use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, attachment, route, service, service_on, vpc},
};
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
    let r = Client::http1().send(http::Method::POST, &gw.url("/upload"), &[], body).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["body_len"], 8 * 1024 * 1024);
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
