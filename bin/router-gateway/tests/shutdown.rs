//! Graceful shutdown: on SIGTERM the gateway reports not ready, stops
//! accepting, lets in-flight requests finish and exits 0.

use std::time::Duration;

use router_tests::{
    backend::start_backends,
    client::Client,
    gateway::{GatewayProcess, route, service_on},
};

const BIN: &str = env!("CARGO_BIN_EXE_router-gateway");

#[tokio::test]
async fn sigterm_drains_in_flight_requests() {
    let b = start_backends(&["slow"]).await;
    let config = [service_on("svc", "svc", &[&b[0]], "HTTP"), route("r", "  destinations: [{vpcServiceRef: {name: svc}}]")].concat();
    let mut gw = GatewayProcess::start(BIN, &config, &["--drain-timeout-secs", "10"]).await;
    let c = Client::http1();
    let in_flight = tokio::spawn({
        let (c, url) = (c.clone(), gw.url("/slow/1500"));
        async move { c.get(&url, &[]).await }
    });
    // An HTTP/2 stream in flight too: its connection gets GOAWAY, the stream still finishes.
    let h2_in_flight = tokio::spawn({
        let url = gw.url("/slow/1500");
        async move { Client::h2c().get(&url, &[]).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    gw.terminate();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(c.get(&gw.admin_url("/readyz"), &[]).await.unwrap().status, 503, "not ready while draining");
    assert!(tokio::net::TcpStream::connect(gw.addr).await.is_err(), "no new connections while draining");
    let r = in_flight.await.unwrap().expect("the in-flight request completes");
    assert_eq!(r.status, 200);
    let r = h2_in_flight.await.unwrap().expect("the in-flight HTTP/2 stream completes");
    assert_eq!(r.status, 200);
    assert_eq!(gw.wait_exit(Duration::from_secs(10)).await, Some(0));
}
