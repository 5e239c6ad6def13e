//! `--bind-vrf`: upstream sockets are bound to the VPC's VRF device
//! (`G<base62 identifier>V`). This machine has no such device, so with the
//! flag the connect must fail (ENODEV) where it succeeds without — proof that
//! the binding is applied, and that its failure is a clean 502.

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn upstream_sockets_bind_to_the_vpc_vrf_device_when_asked() {
    let b = start_backends(&["vrf"]).await;
    // service_on's VPC has identifier 0a1b2c3d4e5f: device G039D3dguPV.
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let plain = GatewayProcess::start(BIN, &config, &[]).await;
    assert_eq!(Client::http1().get(&plain.url("/"), &[]).await.unwrap().status, 200);

    let bound = GatewayProcess::start(BIN, &config, &["--bind-vrf"]).await;
    let r = Client::http1().get(&bound.url("/"), &[]).await.unwrap();
    assert_eq!((r.status, r.header("x-datum-router-error")), (502, Some("upstream-connect-error")));
    assert_eq!(b[0].hits(), 1, "only the unbound gateway reached the backend");
}

#[tokio::test]
async fn tcp_health_probes_bind_to_the_vrf_device_too() {
    use router_tests::gateway::{attachment, vpc};
    let b = start_backends(&["probed"]).await;
    let service = format!(
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: svc, namespace: default}}\n\
         spec: {{vpcAttachmentSelector: {{matchLabels: {{app: probed}}}}, port: {}, protocol: HTTP, \
         healthCheck: {{tcp: {{}}, intervalSeconds: 2, timeoutSeconds: 1, unhealthyThreshold: 1}}}}\n---\n",
        b[0].addr.port()
    );
    let config = [vpc("v"), attachment("a", "v", &[b[0].addr.ip()], true, "probed"), service].concat();
    let endpoint = b[0].addr.to_string();
    let state = |s: &str| format!(r#"endpoint="{endpoint}",service="default/svc",state="{s}"}} 1"#);
    let plain = GatewayProcess::start(BIN, &config, &[]).await;
    router_tests::eventually("healthy without binding", async || plain.metrics().await.contains(&state("healthy"))).await;
    // With binding, the probe's socket goes out of a device this machine lacks: the probe fails.
    let bound = GatewayProcess::start(BIN, &config, &["--bind-vrf"]).await;
    router_tests::eventually("unhealthy with binding", async || bound.metrics().await.contains(&state("unhealthy"))).await;
}
