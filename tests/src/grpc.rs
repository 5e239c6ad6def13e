//! A real gRPC peer: tonic's `grpc.health.v1` server on a fresh loopback address.

use std::net::SocketAddr;

use tonic_health::server::HealthReporter;

use crate::backend::{loopback_block, loopback_ip};

/// Starts the server; the reporter sets what each service reports.
pub async fn start_health_server() -> (SocketAddr, HealthReporter) {
    let listener = tokio::net::TcpListener::bind((loopback_ip(loopback_block(), 1), 0)).await.expect("bind gRPC server");
    let addr = listener.local_addr().expect("bound");
    let (reporter, service) = tonic_health::server::health_reporter();
    let incoming = futures::stream::unfold(listener, |l| async move { Some((l.accept().await.map(|(s, _)| s), l)) });
    tokio::spawn(tonic::transport::Server::builder().add_service(service).serve_with_incoming(incoming));
    (addr, reporter)
}
