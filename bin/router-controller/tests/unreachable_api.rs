//! Without an API server the controller stays up, unready, retrying every watch.

#[tokio::test]
async fn without_an_api_server_the_controller_is_alive_not_ready_and_retrying() {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_router-controller"));
    // Ten kinds are watched: the five router kinds, VPC, VPCAttachment, Service, Pod, EndpointSlice.
    router_tests::cluster::check_survives_unreachable_api(bin, &[], "datum_router_controller_watch_restarts_total", 10).await;
}
