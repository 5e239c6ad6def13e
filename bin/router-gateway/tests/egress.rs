//! The gateway as the HTTP proxy of VPC clients: CONNECT tunnels and
//! absolute-form requests, allowed or refused by the client's VPCEgress.

use router_tests::{
    backend::{Backend, start_backends},
    client::Client,
    gateway::{GatewayProcess, route, service_on},
    h2frames::{self, DATA, END_HEADERS, END_STREAM, HEADERS, Peer, frame, header_block},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

/// Sends raw bytes on a new connection and reads until the peer closes.
async fn raw(gw: &GatewayProcess, request: String) -> String {
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A route to `backend` under /internal, and a VPCEgress for the clients' VPC
/// (127.0.0.1, where the tests connect from) that allows only `backend`'s address and port.
fn egress_config(backend: &Backend) -> String {
    let target = backend.addr;
    // The test client connects from 127.0.0.1: that address is the client VPC's network.
    [
        service_on("internal", "internal", &[backend], "HTTP"),
        route("internal", "  match: {pathPrefix: /internal}\n  destinations: [{vpcServiceRef: {name: internal}}]"),
        "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPC\nmetadata: {name: clients, namespace: default}\n\
         spec: {networks: [127.0.0.1/32]}\nstatus: {ready: true, identifier: 00000000abcd}\n---\n"
            .to_owned(),
        format!(
            "apiVersion: router.datum.net/v1alpha1\nkind: VPCEgress\nmetadata: {{name: egress, namespace: default}}\n\
             spec:\n  vpcRef: {{name: clients}}\n  defaultAction: Deny\n  rules:\n\
             \x20   - {{name: no-evil, to: {{hosts: [evil.example.com]}}, action: Deny}}\n\
             \x20   - {{name: partner, to: {{cidrs: [{}/32]}}, ports: [{}], action: Allow}}\n",
            target.ip(),
            target.port()
        ),
    ]
    .concat()
}

#[tokio::test]
async fn vpc_clients_reach_only_what_their_egress_policy_allows() {
    let b = start_backends(&["outside"]).await;
    let target = b[0].addr;
    let gw = GatewayProcess::start(BIN, &egress_config(&b[0]), &[]).await;

    // An allowed CONNECT opens a tunnel the client speaks HTTP through.
    let tunnel = raw(
        &gw,
        format!(
            "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\nGET /through-tunnel HTTP/1.1\r\nHost: partner\r\nConnection: close\r\n\r\n"
        ),
    )
    .await;
    assert!(tunnel.starts_with("HTTP/1.1 200"), "{tunnel}");
    assert!(tunnel.contains("x-backend: outside") && tunnel.contains("/through-tunnel"), "{tunnel}");

    // The same address on another port falls to defaultAction.
    let other_port = format!("{}:{}", target.ip(), target.port().wrapping_add(1).max(1));
    let denied = raw(&gw, format!("CONNECT {other_port} HTTP/1.1\r\nHost: {other_port}\r\nConnection: close\r\n\r\n")).await;
    assert!(denied.starts_with("HTTP/1.1 403"), "{denied}");
    assert!(
        denied.contains("x-datum-router-error: egress-denied") && denied.contains("x-datum-router-egress-rule: default/egress/default"),
        "{denied}"
    );

    // Absolute-form requests: allowed ones are forwarded, named denials say which rule.
    let allowed = raw(&gw, format!("GET http://{target}/absolute HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")).await;
    assert!(allowed.starts_with("HTTP/1.1 200") && allowed.contains("/absolute"), "{allowed}");
    let evil = raw(&gw, "GET http://evil.example.com/ HTTP/1.1\r\nHost: evil.example.com\r\nConnection: close\r\n\r\n".into()).await;
    assert!(evil.starts_with("HTTP/1.1 403") && evil.contains("x-datum-router-egress-rule: default/egress/no-evil"), "{evil}");

    // Ordinary requests are still routed.
    assert_eq!(Client::http1().get(&gw.url("/internal/x"), &[]).await.unwrap().backend(), Some("outside"));

    let metrics = Client::http1().get(&gw.admin_url("/metrics"), &[]).await.unwrap().body;
    for line in [
        r#"datum_router_egress_decisions_total{action="allow",policy="default/egress",rule="partner"} 2"#,
        r#"datum_router_egress_decisions_total{action="deny",policy="default/egress",rule="default"} 1"#,
        r#"datum_router_egress_decisions_total{action="deny",policy="default/egress",rule="no-evil"} 1"#,
    ] {
        assert!(metrics.contains(line), "missing {line}\n{metrics}");
    }
}

#[tokio::test]
async fn connect_without_a_policy_is_refused() {
    let b = start_backends(&["x"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let gw = GatewayProcess::start(BIN, &config, &[]).await;
    let target = b[0].addr;
    let r = raw(&gw, format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\nConnection: close\r\n\r\n")).await;
    assert!(r.starts_with("HTTP/1.1 403") && r.contains("egress-denied"), "{r}");
}

#[tokio::test]
async fn an_http2_client_tunnels_through_connect_as_well() {
    let b = start_backends(&["outside"]).await;
    let target = b[0].addr.to_string();
    let gw = GatewayProcess::start(BIN, &egress_config(&b[0]), &[]).await;
    let mut peer = Peer::connect(gw.addr).await;
    // RFC 9113 §8.5: CONNECT carries only :method and :authority; the stream becomes the tunnel.
    let open = frame(HEADERS, END_HEADERS, 1, &header_block(&[(":method", "CONNECT"), (":authority", &target)]));
    peer.write.write_all(&open).await.unwrap();
    let request = "GET /through-h2-tunnel HTTP/1.1\r\nHost: partner\r\nConnection: close\r\n\r\n";
    peer.write.write_all(&frame(DATA, 0, 1, request.as_bytes())).await.unwrap();
    let mut answer = Vec::new();
    let mut status = None;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    while let Ok(Ok(f)) = tokio::time::timeout_at(deadline, h2frames::read_frame(&mut peer.read)).await {
        match f.kind {
            HEADERS if f.stream == 1 => status = f.status(),
            DATA if f.stream == 1 => {
                answer.extend_from_slice(&f.payload);
                if f.flags & END_STREAM != 0 {
                    break;
                }
            }
            _ => {}
        }
    }
    let answer = String::from_utf8_lossy(&answer);
    assert_eq!(status, Some(200), "the tunnel is open: {answer}");
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.contains("x-backend: outside") && answer.contains("/through-h2-tunnel"),
        "{answer}"
    );

    // A target the policy does not allow is refused on its stream, the connection goes on.
    let other = format!("{}:{}", b[0].addr.ip(), b[0].addr.port().wrapping_add(1).max(1));
    peer.write
        .write_all(&frame(HEADERS, END_HEADERS | END_STREAM, 3, &header_block(&[(":method", "CONNECT"), (":authority", &other)])))
        .await
        .unwrap();
    let frames = peer.frames(std::time::Duration::from_secs(1)).await;
    assert_eq!(frames.iter().find(|f| f.stream == 3 && f.kind == HEADERS).and_then(|f| f.status()), Some(403), "{frames:?}");
}
