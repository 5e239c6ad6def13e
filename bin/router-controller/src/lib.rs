//! router-controller: reconciles VPCService, VPCRoute, ServiceBinding,
//! VPCIngress, VPCEgress and TunnelBinding — resolves their references, syncs
//! ServiceBindings from pods, and writes conditions.
//!
//! Reflectors keep a cache of every kind the statuses depend on; any change
//! wakes one pass ([`plan`]) that recomputes every status from the whole
//! picture (a change to a VPCService reaches the routes naming it, a Secret
//! the VPCIngresses using it); what depends on specs alone (the routing
//! snapshot's report, each route's check and match keys) is kept from one
//! pass to the next by object generation ([`memo`]). The pass is pure (its cost at 1,000 and
//! 10,000 routes is in docs/performance.md, "Control plane"); what differs from the controller's
//! own last word goes to the status queue (`router_kube::status_queue`),
//! which coalesces, rate-limits and retries. Replicas elect a leader on a
//! Lease; all keep warm caches, only the leader writes.
//!
//! The binary is `main.rs`; this library is what it and the benchmarks share.

mod binding;
pub mod discovery_wait;
mod events;
pub mod memo;
mod objects;
pub mod plan;
mod routes;
pub mod world;

#[cfg(test)]
mod replay_tests;
#[cfg(test)]
mod tests;
