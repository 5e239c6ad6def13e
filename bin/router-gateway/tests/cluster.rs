//! Cluster mode without a reachable API server: the gateway starts, says it
//! is alive but not ready (it has nothing to serve until a first full sync),
//! counts its failing watches, and keeps trying. The end-to-end tests under
//! tests/ cover cluster mode against a real API server.

use router_tests::gateway::free_port;

#[tokio::test]
async fn without_an_api_server_the_gateway_is_alive_not_ready_and_keeps_retrying() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_router-gateway"));
    let listen = format!("127.0.0.1:{}", free_port());
    // VPC, VPCService, VPCRoute, VPCIngress and VPCEgress.
    router_tests::cluster::check_survives_unreachable_api(bin, &["--listen", &listen], "datum_router_watch_restarts_total", 5).await;
}
