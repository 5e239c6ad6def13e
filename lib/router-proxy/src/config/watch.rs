//! Reload on change: a filesystem watch on the configuration path (and on the
//! internal listener's PEM files), debounced so an editor's
//! write-rename-chmod burst is one reload. A configuration that fails to read
//! or validate is logged and the last good snapshot stays.

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use router_api::schema::SchemaValidator;
use router_core::EndpointStore;
use tokio::sync::mpsc;

use super::{SnapshotCell, log_problems, standalone};
use crate::{telemetry::Metrics, tls::TlsBuilder};

/// Everything a standalone reload needs.
pub struct Reloader {
    pub path: PathBuf,
    pub schemas: Arc<SchemaValidator>,
    pub store: Arc<EndpointStore>,
    pub cell: Arc<SnapshotCell>,
    pub metrics: Arc<Metrics>,
    pub tls: Arc<TlsBuilder>,
    /// The gateway's own ports, which VPCIngress listeners may not claim.
    pub reserved_ports: Vec<u16>,
    /// Where the gateway is (`--locality`).
    pub locality: Option<router_api::datum::Locality>,
    /// The documents of the last load, so a reload parses only what changed.
    pub documents: std::sync::Mutex<standalone::Documents>,
    /// What the last load compiled, so a reload compiles only what changed.
    pub builder: std::sync::Mutex<router_core::SnapshotBuilder>,
}

impl Reloader {
    /// Reads the configuration, builds a snapshot and publishes it. Returns whether it was published.
    pub fn reload(&self) -> bool {
        let path = &self.path;
        let started = std::time::Instant::now();
        let mut documents = self.documents.lock().unwrap_or_else(|p| p.into_inner());
        match standalone::read(path, &self.schemas, &mut documents) {
            Ok(mut objects) => {
                for ignored in &objects.ignored {
                    tracing::debug!(object = %ignored, "not used by the gateway in standalone mode");
                }
                let mut builder = self.builder.lock().unwrap_or_else(|p| p.into_inner());
                let mut snapshot = standalone::build(&mut objects, &mut builder, &self.store, &self.reserved_ports, self.locality.as_ref());
                drop(builder);
                let tls = self.tls.build(&mut snapshot, &objects.secrets);
                log_problems(&snapshot.report);
                self.metrics.record_snapshot(&snapshot);
                let routes = snapshot.route_count;
                let services = snapshot.services.len();
                let listeners = snapshot.ingress.ports.values().map(|p| p.listeners.len()).sum::<usize>();
                let generation = self.cell.publish(snapshot, tls);
                let took = started.elapsed();
                self.metrics.record_load(took);
                let (parsed, reused, ms) = (documents.parsed, documents.reused, took.as_millis());
                tracing::info!(generation, routes, services, listeners, parsed, reused, ms, path = %path.display(), "configuration loaded");
                true
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                tracing::error!(error = %e, path = %path.display(), "configuration rejected; keeping the last good one");
                false
            }
        }
    }

    /// Watches the configuration and reloads on every change until the process ends.
    pub async fn watch(self: Arc<Self>) -> notify::Result<()> {
        use notify::{RecursiveMode, Watcher};
        let (tx, mut rx) = mpsc::unbounded_channel();
        // The files named on the command line count whatever their names.
        let mut named = vec![self.path.clone()];
        if let Some(files) = self.tls.default_certificate() {
            named.extend([files.cert.clone(), files.key.clone()]);
        }
        let named: Vec<_> = named.iter().filter_map(|p| p.file_name().map(ToOwned::to_owned)).collect();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = |p: &PathBuf| may_be_configuration(p) || p.file_name().is_some_and(|n| named.iter().any(|m| m == n));
            if event.is_ok_and(|e| !e.kind.is_access() && e.paths.iter().any(relevant)) {
                let _ = tx.send(());
            }
        })?;
        let mut watched = vec![directory_of(&self.path)];
        if let Some(files) = self.tls.default_certificate() {
            watched.extend([directory_of(&files.cert), directory_of(&files.key)]);
        }
        watched.sort();
        watched.dedup();
        for dir in &watched {
            watcher.watch(dir, RecursiveMode::NonRecursive)?;
        }
        while rx.recv().await.is_some() {
            // Debounce: wait for the burst to settle, then drain what queued meanwhile.
            tokio::time::sleep(Duration::from_millis(150)).await;
            while rx.try_recv().is_ok() {}
            let this = self.clone();
            // Parsing and compiling are CPU work: keep them off the request threads.
            let _ = tokio::task::spawn_blocking(move || this.reload()).await;
        }
        Ok(())
    }
}

/// Whether a change to `path` can change the configuration: YAML files, PEM
/// files (the default certificate), and Kubernetes volume updates, which swap
/// `..data`-style entries. Anything else in a watched directory (a log file, an
/// editor's swap file) must not trigger reloads — a log written beside the
/// configuration would otherwise reload it forever, each reload's own log line
/// triggering the next.
fn may_be_configuration(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    name.starts_with("..")
        || Path::new(name).extension().and_then(|e| e.to_str()).is_some_and(|e| matches!(e, "yaml" | "yml" | "pem" | "crt" | "key"))
}

/// The directory to watch for a path: editors and Kubernetes volume updates replace files by rename.
fn directory_of(path: &Path) -> PathBuf {
    if path.is_dir() {
        path.to_owned()
    } else {
        path.parent().filter(|p| !p.as_os_str().is_empty()).map_or_else(|| PathBuf::from("."), PathBuf::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configuration_files_trigger_reloads() {
        for yes in ["/c/routes.yaml", "/c/a.yml", "/c/..data", "/c/..2026_12_01_10_00_00.123", "/tls/cert.pem", "/tls/tls.key"] {
            assert!(may_be_configuration(Path::new(yes)), "{yes}");
        }
        for no in ["/c/gateway.log", "/c/.routes.yaml.swp", "/c/routes.yaml~", "/c/notes.txt"] {
            assert!(!may_be_configuration(Path::new(no)), "{no}");
        }
    }
}
