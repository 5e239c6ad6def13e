//! The whole path with the real binaries on 127.0.0.x: client → router-gateway
//! → tunnel-gateway serve → Iroh tunnel → tunnel-gateway connect → origin.
//! router-gateway and serve read the same configuration directory: a VPC
//! whose attachment is serve's listen address, VPCServices on the tunnel
//! ports, TunnelBindings, and VPCRoutes. router-gateway needs no change.

use std::{
    net::SocketAddr,
    path::Path,
    time::{Duration, Instant},
};

use futures::{SinkExt, StreamExt};
use router_tests::{
    backend::{loopback_block, loopback_ip, start_backends, start_tls_backends},
    client::Client,
    gateway::{GatewayProcess, attachment, free_port, route, vpc},
    tls::{Pki, ca_secret},
    tunnel::{TunnelProcess, endpoint_id, tunnel_binding},
};
use tokio_tungstenite::tungstenite::Message;

const TUNNEL: &str = env!("CARGO_BIN_EXE_tunnel-gateway");

/// The router-gateway binary, built beside this one.
fn router_gateway() -> String {
    let dir = Path::new(TUNNEL).parent().expect("target dir");
    let bin = dir.join("router-gateway");
    if !bin.exists() {
        let status = std::process::Command::new(env!("CARGO"))
            .args(["build", "-p", "router-gateway"])
            .current_dir(router_tests::workspace_root())
            .status()
            .expect("cargo build");
        assert!(status.success(), "router-gateway builds");
    }
    bin.display().to_string()
}

/// A VPCService the tunnel serves on `port` of the serve replicas (attachments labelled app=tunnel).
fn tunnel_service(name: &str, port: u16, protocol: &str, extra: &str) -> String {
    format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: {name}, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: tunnel}}}}, port: {port}, protocol: {protocol}{extra}}}\n---\n"
    )
}

/// Addresses of one test: serve's VPC address, and connector UDP addresses.
struct Net {
    serve_ip: std::net::IpAddr,
    block: [u8; 2],
}

impl Net {
    fn new() -> Self {
        let block = loopback_block();
        Self { serve_ip: loopback_ip(block, 200), block }
    }

    fn connector_addr(&self, host: u8) -> SocketAddr {
        SocketAddr::new(loopback_ip(self.block, host), free_port())
    }
}

async fn start_connector(dir: &Path, name: &str, key: &Path, bind: SocketAddr, gateway: &str, targets: &[SocketAddr]) -> TunnelProcess {
    let mut args = vec!["connect".to_owned(), "--secret-key-file".into(), key.display().to_string(), "--bind".into(), bind.to_string()];
    args.extend(["--allow-gateway".into(), gateway.to_owned()]);
    for t in targets {
        args.extend(["--target".into(), t.to_string()]);
    }
    TunnelProcess::start(TUNNEL, name, &args, dir).await
}

async fn start_serve(dir: &Path, config_dir: &Path, key: &Path, net: &Net) -> TunnelProcess {
    let args = [
        "serve",
        "--config",
        &config_dir.display().to_string(),
        "--secret-key-file",
        &key.display().to_string(),
        "--bind",
        &format!("{}:0", net.serve_ip),
        "--listen-address",
        &net.serve_ip.to_string(),
    ]
    .map(str::to_owned);
    TunnelProcess::start(TUNNEL, "serve", &args, dir).await
}

/// Waits until `check` holds, up to `limit`; returns how long it took.
async fn within(what: &str, limit: Duration, mut check: impl AsyncFnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check().await {
            return start.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what}: not within {limit:?}");
}

#[tokio::test]
async fn http1_h2c_grpc_websocket_and_upstream_tls_cross_the_tunnel() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let web = start_backends(&["laptop"]).await;
    let (grpc, reporter) = router_tests::grpc::start_health_server().await;
    reporter.set_service_status("laptop.v1.Api", tonic_health::ServingStatus::Serving).await;
    let ca = Pki::new("laptop-ca");
    let secure = start_tls_backends(&["laptop-tls"], ca.server(&["laptop.internal"]).server_config(None)).await;

    let (gw_key, c_key) = (dir.path().join("gateway.key"), dir.path().join("connector.key"));
    let (gw_id, c_id) = (endpoint_id(TUNNEL, &gw_key), endpoint_id(TUNNEL, &c_key));
    let c_addr = net.connector_addr(50);
    let _connector = start_connector(dir.path(), "connector", &c_key, c_addr, &gw_id, &[web[0].addr, grpc, secure[0].addr]).await;

    let ports = [free_port(), free_port(), free_port(), free_port()];
    let c = [(c_id.clone(), c_addr)];
    let config = [
        vpc("tunnel-vpc"),
        attachment("serve-0", "tunnel-vpc", &[net.serve_ip], true, "tunnel"),
        tunnel_service("web", ports[0], "HTTP", ""),
        tunnel_binding("web", "web", web[0].addr, &c),
        tunnel_service("web-h2", ports[1], "HTTP2", ""),
        tunnel_binding("web-h2", "web-h2", web[0].addr, &c),
        tunnel_service("grpc", ports[2], "GRPC", ""),
        tunnel_binding("grpc", "grpc", grpc, &c),
        ca_secret("laptop-ca", &ca),
        tunnel_service("secure", ports[3], "HTTPS", ", tls: {serverName: laptop.internal, caCertificateRef: {name: laptop-ca}}"),
        tunnel_binding("secure", "secure", secure[0].addr, &c),
        route("web", "  matches: [{pathPrefix: /web}, {pathPrefix: /ws}]\n  destinations: [{vpcServiceRef: {name: web}}]"),
        route("web-h2", "  matches: [{pathPrefix: /h2}]\n  destinations: [{vpcServiceRef: {name: web-h2}}]"),
        route("grpc", "  match: {grpc: {service: grpc.health.v1.Health}}\n  destinations: [{vpcServiceRef: {name: grpc}}]"),
        route("secure", "  matches: [{pathPrefix: /secure}]\n  destinations: [{vpcServiceRef: {name: secure}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(&router_gateway(), &config, &[]).await;
    let serve = start_serve(dir.path(), gw.config_path().parent().unwrap(), &gw_key, &net).await;
    let http = Client::http1();
    within("the tunnel serving", Duration::from_secs(15), async || {
        http.get(&gw.url("/web/hello"), &[]).await.is_ok_and(|r| r.status == 200)
    })
    .await;

    // HTTP/1.1: the origin answers, and sees the path router-gateway forwarded.
    let r = http.get(&gw.url("/web/hello"), &[]).await.unwrap();
    assert_eq!((r.status, r.backend()), (200, Some("laptop")));
    assert_eq!(r.json()["path"], "/web/hello");

    // h2c to the origin: HTTP/2 frames cross the splice untouched.
    let r = Client::h2c().get(&gw.url("/h2/x"), &[]).await.unwrap();
    assert_eq!((r.status, r.json()["version"].as_str()), (200, Some("HTTP/2.0")));

    // gRPC, trailers included.
    use tonic_health::pb::{HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient};
    let channel = tonic::transport::Endpoint::from_shared(gw.url("")).unwrap().connect().await.unwrap();
    let mut health = HealthClient::new(channel);
    let ok = health.check(HealthCheckRequest { service: "laptop.v1.Api".into() }).await.unwrap();
    assert_eq!(ok.get_ref().status, ServingStatus::Serving as i32);
    assert_eq!(health.check(HealthCheckRequest { service: "nope".into() }).await.unwrap_err().code(), tonic::Code::NotFound);

    // A WebSocket upgrade, then messages both ways.
    let (mut ws, response) = tokio_tungstenite::connect_async(format!("ws://{}/ws", gw.addr)).await.unwrap();
    assert_eq!(response.status(), 101);
    ws.send(Message::text("through the tunnel")).await.unwrap();
    let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(echoed.into_text().unwrap().as_str(), "through the tunnel");
    ws.close(None).await.unwrap();

    // TLS from router-gateway to the origin, opaque to the tunnel, verified against the origin's CA.
    let r = http.get(&gw.url("/secure/x"), &[]).await.unwrap();
    assert_eq!((r.status, r.backend()), (200, Some("laptop-tls")), "{}", r.body);

    let metrics = serve.metrics().await;
    assert!(metrics.contains(r#"datum_tunnel_connections_total{binding="default/web",result="ok"}"#), "{metrics}");
    assert!(metrics.contains(r#"datum_tunnel_dials_total{result="ok"} 1"#), "one warm connection to the one connector: {metrics}");
    let config = serve.config().await;
    assert_eq!(config.as_array().unwrap().len(), 4, "{config}");
    assert!(config.to_string().contains(&c_id), "/config names the connector: {config}");
}

#[tokio::test]
async fn killing_one_of_two_connectors_under_load_fails_nothing_beyond_retries() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let web = start_backends(&["laptop"]).await;
    let gw_key = dir.path().join("gateway.key");
    let gw_id = endpoint_id(TUNNEL, &gw_key);
    let keys = [dir.path().join("a.key"), dir.path().join("b.key")];
    let ids = [endpoint_id(TUNNEL, &keys[0]), endpoint_id(TUNNEL, &keys[1])];
    let addrs = [net.connector_addr(51), net.connector_addr(52)];
    let mut a = start_connector(dir.path(), "connector-a", &keys[0], addrs[0], &gw_id, &[web[0].addr]).await;
    let _b = start_connector(dir.path(), "connector-b", &keys[1], addrs[1], &gw_id, &[web[0].addr]).await;
    let port = free_port();
    let config = [
        vpc("tunnel-vpc"),
        attachment("serve-0", "tunnel-vpc", &[net.serve_ip], true, "tunnel"),
        tunnel_service("web", port, "HTTP", ""),
        tunnel_binding("web", "web", web[0].addr, &[(ids[0].clone(), addrs[0]), (ids[1].clone(), addrs[1])]),
        route("web", "  destinations: [{vpcServiceRef: {name: web}}]\n  retries: {maxRetries: 3, retryOn: [connect-failure, reset]}"),
    ]
    .concat();
    let gw = GatewayProcess::start(&router_gateway(), &config, &[]).await;
    let serve = start_serve(dir.path(), gw.config_path().parent().unwrap(), &gw_key, &net).await;
    let http = Client::http1();
    within("both connectors up", Duration::from_secs(15), async || {
        serve.config().await[0]["connectors"].as_array().is_some_and(|c| c.iter().all(|c| c["up"] == true))
    })
    .await;

    // Four clients for 10 s; connector a is killed after 2 s.
    let url = gw.url("/load");
    let started = Instant::now();
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while started.elapsed() < Duration::from_secs(10) {
                    match http.get(&url, &[]).await {
                        Ok(r) if r.status == 200 => ok += 1,
                        Ok(r) => failed.push(format!("{} {:?}", r.status, r.header("x-datum-router-error"))),
                        Err(e) => failed.push(e),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    a.kill();
    let mut total = 0;
    let mut failures = Vec::new();
    for c in clients {
        let (ok, failed) = c.await.unwrap();
        total += ok;
        failures.extend(failed);
    }
    eprintln!("one of two connectors killed under load: {total} requests succeeded, {} failed", failures.len());
    assert!(failures.is_empty(), "failed: {failures:?}");
    assert!(total > 100, "the load ran: {total}");
    let up = within("the killed connector reported down", Duration::from_secs(15), async || {
        serve.config().await[0]["connectors"].as_array().unwrap().iter().filter(|c| c["up"] == true).count() == 1
    })
    .await;
    eprintln!("the killed connector was seen down {up:?} after the load ended");
}

#[tokio::test]
async fn a_restarted_connector_carries_traffic_again_and_without_one_the_port_is_closed() {
    let dir = tempfile::tempdir().unwrap();
    let net = Net::new();
    let web = start_backends(&["laptop"]).await;
    let (gw_key, c_key) = (dir.path().join("gateway.key"), dir.path().join("connector.key"));
    let (gw_id, c_id) = (endpoint_id(TUNNEL, &gw_key), endpoint_id(TUNNEL, &c_key));
    let c_addr = net.connector_addr(53);
    let mut connector = start_connector(dir.path(), "connector", &c_key, c_addr, &gw_id, &[web[0].addr]).await;
    let port = free_port();
    let config = [
        vpc("tunnel-vpc"),
        attachment("serve-0", "tunnel-vpc", &[net.serve_ip], true, "tunnel"),
        tunnel_service("web", port, "HTTP", ""),
        tunnel_binding("web", "web", web[0].addr, &[(c_id, c_addr)]),
        route("web", "  destinations: [{vpcServiceRef: {name: web}}]"),
    ]
    .concat();
    let gw = GatewayProcess::start(&router_gateway(), &config, &[]).await;
    let serve = start_serve(dir.path(), gw.config_path().parent().unwrap(), &gw_key, &net).await;
    let http = Client::http1();
    within("served", Duration::from_secs(15), async || http.get(&gw.url("/a"), &[]).await.is_ok_and(|r| r.status == 200)).await;

    // Traffic crossed, so /config (rendered when asked) shows the listener.
    assert!(serve.config().await[0]["listening"].is_string());
    connector.kill();
    let tunnel_port = SocketAddr::new(net.serve_ip, port);
    let closed = within("the listener closed once the connector is gone", Duration::from_secs(20), async || {
        serve.config().await[0]["listening"].is_null()
            && std::net::TcpStream::connect_timeout(&tunnel_port, Duration::from_secs(1)).is_err()
    })
    .await;
    eprintln!("connector killed: listener closed (connection refused) after {closed:?}");
    let r = http.get(&gw.url("/a"), &[]).await.unwrap();
    assert_eq!(r.status, 502, "router-gateway answers itself");
    assert_eq!(r.header("x-datum-router-error"), Some("upstream-connect-error"));

    // Same key, same address: the gateway redials it and traffic is back.
    let restarted = Instant::now();
    let _connector = start_connector(dir.path(), "connector-again", &c_key, c_addr, &gw_id, &[web[0].addr]).await;
    within("traffic back after the restart", Duration::from_secs(15), async || {
        http.get(&gw.url("/a"), &[]).await.is_ok_and(|r| r.status == 200)
    })
    .await;
    eprintln!("connector restarted: traffic back after {:?}", restarted.elapsed());
}
