//! Without an API server service-discovery stays up, unready, retrying every watch.

#[tokio::test]
async fn without_an_api_server_discovery_is_alive_not_ready_and_retrying() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_service-discovery"));
    // VPC, VPCAttachment, VPCService and ServiceBinding.
    router_tests::cluster::check_survives_unreachable_api(bin, &[], "datum_router_discovery_watch_restarts_total", 4).await;
}
