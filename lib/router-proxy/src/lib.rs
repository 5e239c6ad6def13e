//! The request path of router-gateway.
//!
//! ```text
//! listener ─► HTTP/1.1 | h2c server ─► route lookup ─► filters ─► destination split
//!          ─► endpoint pick ─► pooled upstream connection ─► streamed response
//! ```
//!
//! * [`config`]: where snapshots come from (standalone files, reloaded on change)
//!   and the [`config::SnapshotCell`] they are swapped into atomically.
//! * [`server`]: listeners, connection limits and graceful drain.
//! * [`request`]: the per-request handler, as named stages (route, filters,
//!   destination, forward, attempts, response, record); [`http`] its pure
//!   header and filter logic; [`local`] and [`outcome`] the gateway's own
//!   answers and what a request leaves for logs and metrics.
//! * [`egress`]: the gateway as the HTTP proxy of VPC clients, under VPCEgress.
//! * [`mirror`]: fire-and-forget copies of requests to another service.
//! * [`health`]: active health checks, one loop per endpoint, following the snapshots.
//! * [`upstream`]: the gateway's HTTP/1.1 pool and pooled HTTP/2 and TLS clients, and the bodies they carry.
//! * [`tls`]: TLS termination (SNI, ALPN, client certificates) and TLS to upstreams, from Secrets.
//! * [`listeners`]: the VPCIngress ports, opened and closed as snapshots change.
//! * [`telemetry`]: Prometheus metrics, access log and W3C trace context.
//! * [`admin`]: /metrics, /healthz, /readyz and /config on their own port.
#![forbid(unsafe_code)]

pub mod admin;
pub mod config;
pub mod egress;
pub mod error;
pub mod health;
pub mod http;
pub mod listeners;
pub mod local;
pub mod mirror;
pub mod outcome;
pub mod request;
pub mod server;
pub mod telemetry;
pub mod tls;
pub mod upstream;
