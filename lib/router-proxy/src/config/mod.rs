//! Where routing snapshots come from and how they are published.
//!
//! The request path only ever reads [`SnapshotCell`]; sources (standalone
//! files, or the Kubernetes registry in cluster mode) build whole snapshots
//! and swap them in. A source that fails keeps the last good snapshot in place.

mod cell;
pub mod cluster;
mod documents;
pub mod standalone;
mod watch;

pub use cell::SnapshotCell;
pub use cluster::ClusterSource;
pub use watch::Reloader;

/// Logs what a snapshot build found wrong, object by object.
fn log_problems(report: &router_core::SnapshotReport) {
    for (route, problems) in &report.routes {
        for p in problems {
            tracing::warn!(%route, problem = %p, "VPCRoute");
        }
    }
    for (service, problems) in &report.services {
        for p in problems {
            tracing::warn!(%service, problem = %p, "VPCService");
        }
    }
    for (ingress, problems) in &report.ingresses {
        for p in problems {
            tracing::warn!(%ingress, problem = %p, "VPCIngress");
        }
    }
    for (egress, problems) in &report.egress {
        for p in problems {
            tracing::warn!(%egress, problem = %p, "VPCEgress");
        }
    }
    for (listener, r) in &report.listeners {
        for p in &r.problems {
            tracing::warn!(%listener, problem = %p, "listener");
        }
    }
}
