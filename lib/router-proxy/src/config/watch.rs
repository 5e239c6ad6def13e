//! Reload on change: a filesystem watch on the configuration path, debounced
//! so an editor's write-rename-chmod burst is one reload. A configuration
//! that fails to read or validate is logged and the last good snapshot stays.

use std::{path::PathBuf, sync::Arc, time::Duration};

use router_api::schema::SchemaValidator;
use router_core::EndpointStore;
use tokio::sync::mpsc;

use super::{SnapshotCell, standalone};
use crate::telemetry::Metrics;

/// Reads `path`, builds a snapshot and publishes it. Returns whether it was published.
pub fn reload(path: &std::path::Path, schemas: &SchemaValidator, store: &EndpointStore, cell: &SnapshotCell, metrics: &Metrics) -> bool {
    match standalone::read(path, schemas) {
        Ok(objects) => {
            for ignored in &objects.ignored {
                tracing::debug!(object = %ignored, "not used by the gateway in standalone mode");
            }
            let snapshot = standalone::build(objects, store);
            for (route, problems) in &snapshot.report.routes {
                for p in problems {
                    tracing::warn!(%route, problem = %p, "VPCRoute");
                }
            }
            for (service, problems) in &snapshot.report.services {
                for p in problems {
                    tracing::warn!(%service, problem = %p, "VPCService");
                }
            }
            metrics.record_snapshot(&snapshot);
            let routes = snapshot.route_count;
            let services = snapshot.services.len();
            let generation = cell.publish(snapshot);
            metrics.reloads.with_label_values(&["success"]).inc();
            tracing::info!(generation, routes, services, path = %path.display(), "configuration loaded");
            true
        }
        Err(e) => {
            metrics.reloads.with_label_values(&["failure"]).inc();
            tracing::error!(error = %e, path = %path.display(), "configuration rejected; keeping the last good one");
            false
        }
    }
}

/// Watches `path` and reloads on every change until the process ends.
pub async fn watch_and_reload(
    path: PathBuf,
    schemas: Arc<SchemaValidator>,
    store: Arc<EndpointStore>,
    cell: Arc<SnapshotCell>,
    metrics: Arc<Metrics>,
) -> notify::Result<()> {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = mpsc::unbounded_channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok_and(|e| !e.kind.is_access()) {
            let _ = tx.send(());
        }
    })?;
    // Watch the directory holding a single file: editors replace files by rename.
    let watched = if path.is_file() { path.parent().map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".")) } else { path.clone() };
    watcher.watch(&watched, RecursiveMode::NonRecursive)?;
    while rx.recv().await.is_some() {
        // Debounce: wait for the burst to settle, then drain what queued meanwhile.
        tokio::time::sleep(Duration::from_millis(150)).await;
        while rx.try_recv().is_ok() {}
        let (path, schemas, store, cell, metrics) = (path.clone(), schemas.clone(), store.clone(), cell.clone(), metrics.clone());
        // Parsing and compiling are CPU work: keep them off the request threads.
        let _ = tokio::task::spawn_blocking(move || reload(&path, &schemas, &store, &cell, &metrics)).await;
    }
    Ok(())
}
