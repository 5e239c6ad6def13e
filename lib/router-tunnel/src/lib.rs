//! Iroh tunnel endpoints and stream forwarding for services that are not on a
//! Galactic VPC.
//!
//! Nothing is implemented yet: no issue schedules the tunnel work, and an
//! empty crate says so more honestly than a stub that pretends. The crate
//! exists so the workspace layout matches docs/architecture.md.
#![forbid(unsafe_code)]
