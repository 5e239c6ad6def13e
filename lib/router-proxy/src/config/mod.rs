//! Where routing snapshots come from and how they are published.
//!
//! The request path only ever reads [`SnapshotCell`]; sources (standalone
//! files here, the Kubernetes registry later) build whole snapshots and swap
//! them in. A source that fails keeps the last good snapshot in place.

mod cell;
pub mod standalone;
mod watch;

pub use cell::SnapshotCell;
pub use watch::Reloader;
