//! Standalone mode: the same YAML router-gateway reads (TunnelBinding,
//! VPCService, and whatever else is there, ignored), validated the same way,
//! polled for changes. A configuration that does not read or validate is
//! logged and the last good one keeps being served.

use std::{path::Path, sync::Arc, time::Duration, time::SystemTime};

use router_api::{
    manifest::{Object, parse_documents, yaml_files},
    schema::SchemaValidator,
};
use router_kube::admin::Readiness;
use router_tunnel::{plan::Plan, serve::Tunnels};
use tokio::sync::watch;

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(500);

/// Names, sizes and modification times: any edit, rename or removal changes it.
fn fingerprint(path: &Path) -> Vec<(std::path::PathBuf, u64, Option<SystemTime>)> {
    yaml_files(path)
        .unwrap_or_default()
        .into_iter()
        .map(|f| {
            let meta = std::fs::metadata(&f).ok();
            let (len, modified) = meta.map_or((0, None), |m| (m.len(), m.modified().ok()));
            (f, len, modified)
        })
        .collect()
}

fn read(path: &Path, schemas: &SchemaValidator) -> Result<Plan, String> {
    let files = yaml_files(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    if files.is_empty() {
        return Err(format!("{}: no YAML files found", path.display()));
    }
    let (mut bindings, mut services) = (Vec::new(), Vec::new());
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| format!("reading {}: {e}", file.display()))?;
        for object in parse_documents(&text, &file.display().to_string(), schemas).map_err(|e| e.to_string())? {
            match object {
                Object::TunnelBinding(b) => bindings.push(b),
                Object::VpcService(s) => services.push(Arc::unwrap_or_clone(s)),
                _ => {}
            }
        }
    }
    Ok(Plan::build(&bindings, &services))
}

/// Serves the configuration at `path`, reloading on change, until `stop` turns true.
pub async fn run(path: &Path, tunnels: &Arc<Tunnels>, ready: &Readiness, mut stop: watch::Receiver<bool>) {
    let schemas = match SchemaValidator::for_router_kinds() {
        Ok(s) => s,
        Err(e) => return tracing::error!(error = %e, "the router's CRD schemas do not compile"),
    };
    let mut seen = None;
    loop {
        let now = fingerprint(path);
        if seen.as_ref() != Some(&now) {
            match read(path, &schemas) {
                Ok(plan) => {
                    for (binding, problems) in &plan.problems {
                        for p in problems {
                            tracing::warn!(%binding, problem = %p, "TunnelBinding");
                        }
                    }
                    tracing::info!(bindings = plan.bindings.len(), path = %path.display(), "configuration loaded");
                    tunnels.apply(plan);
                    ready.set(true);
                }
                Err(e) => tracing::error!(error = %e, "configuration rejected; keeping the last good one"),
            }
            seen = Some(now);
        }
        tokio::select! {
            () = tokio::time::sleep(POLL) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
