//! The pure model of Datum Router's data plane.
//!
//! * [`route_table`]: VPCRoutes compiled into a [`RouteTable`] whose lookup
//!   cost depends on the request, not on how many routes exist, with Gateway
//!   API precedence.
//! * [`conditions`]: the per-request checks of a match (method, headers,
//!   query, gRPC).
//! * [`balance`]: the destination split and endpoint selection strategies.
//! * [`egress`]: VPCEgress policies for clients that use the gateway as their proxy.
//! * [`ingress`]: VPCIngress listeners, hostname intersection and route attachment.
//! * [`breaker`]: per-endpoint circuit breaking (passive outlier detection).
//! * [`health`]: the per-endpoint state machine of active health checks.
//! * [`retry`]: retry classification, backoff with jitter and the retry budget.
//! * [`objects`]: the API objects a snapshot reads, owned or shared.
//! * [`snapshot`]: one immutable, self-contained routing configuration built
//!   from API objects; the gateway swaps whole snapshots atomically, and
//!   builds each from the last one's compiled parts that still hold.
//!
//! Nothing here does I/O, so all of it is tested with plain unit tests.
#![forbid(unsafe_code)]

pub mod balance;
pub mod breaker;
pub mod conditions;
pub mod egress;
pub mod endpoint;
pub mod health;
pub mod ingress;
pub mod objects;
pub mod retry;
pub mod route_table;
pub mod snapshot;

pub use endpoint::{EndpointState, EndpointStore};
pub use objects::Objects;
pub use route_table::{RequestView, RouteTable, normalize_host};
pub use snapshot::{RouteCheck, RouteChecker, RouteKey, ServiceKey, Snapshot, SnapshotBuilder, SnapshotInput, SnapshotReport};
