//! Reading objects from YAML the way `kubectl apply -f` does: many documents
//! per file, each identified by apiVersion and kind. Router kinds are
//! validated against their CRD schema before they are typed, so a bad object
//! is reported with the field that is wrong and never half-accepted.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use serde_json::Value;

use crate::{
    datum::{self, Location},
    galactic::{self, VPC, VPCAttachment},
    schema::{InvalidObject, SchemaValidator},
    v1alpha1::{self, ServiceBinding, TunnelBinding, VPCEgress, VPCIngress, VPCRoute, VPCService},
};

/// The namespace of objects that name none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// The YAML files of `path`: the file itself, or a directory's `*.yaml` / `*.yml`
/// (sorted, not recursive), as `kubectl apply -f` reads them.
pub fn yaml_files(path: &std::path::Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    if path.is_file() {
        return Ok(vec![path.to_owned()]);
    }
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(path)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    files.sort();
    Ok(files)
}

/// (namespace, name) of an object; [`DEFAULT_NAMESPACE`] for one that names none.
pub fn object_key(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> (String, String) {
    (meta.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()), meta.name.clone().unwrap_or_default())
}

/// An object this project understands. VPCServices and VPCRoutes, the
/// objects a configuration has thousands of, are shared: a standalone
/// gateway keeps the last load's objects and rebuilds only from those that
/// are new (`router_core::SnapshotBuilder` knows an unchanged one by its `Arc`).
#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Object {
    Vpc(VPC),
    VpcAttachment(VPCAttachment),
    VpcService(Arc<VPCService>),
    VpcRoute(Arc<VPCRoute>),
    ServiceBinding(ServiceBinding),
    VpcIngress(VPCIngress),
    VpcEgress(VPCEgress),
    TunnelBinding(TunnelBinding),
    Location(Location),
    Secret(Secret),
    /// Any other kind (a Service, a Pod, ...): kept by name so callers can say they ignored it.
    Other {
        api_version: String,
        kind: String,
        name: String,
    },
}

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{origin}: not valid YAML: {message}")]
    Yaml { origin: String, message: String },
    #[error("{origin}: {bytes} bytes, more than the {} MiB a configuration file may have; split it into several files of the directory", MAX_FILE_BYTES / 1024 / 1024)]
    TooLarge { origin: String, bytes: usize },
    #[error("{origin}: document {index}: {message}")]
    Shape { origin: String, index: usize, message: String },
    #[error("{origin}: {kind} {name}: {source}")]
    Invalid { origin: String, kind: String, name: String, source: InvalidObject },
}

/// The largest configuration file read. A file of 10,000 routes is about 3 MiB;
/// a bigger configuration is split over several files of one directory.
pub const MAX_FILE_BYTES: usize = 64 * 1024 * 1024;

/// The YAML parser's limits for `text`. Counts (documents, nodes, events,
/// scalar bytes) grow with the input, since each needs at least a byte of it,
/// so a large real file always passes; what stops a hostile file is what
/// does not grow with its size: nesting depth and alias expansion (the
/// "billion laughs"), at serde-saphyr's defaults, and [`MAX_FILE_BYTES`].
fn parser_options(text: &str) -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    let n = text.len();
    budget.max_documents = budget.max_documents.max(n);
    budget.max_nodes = budget.max_nodes.max(n);
    budget.max_events = budget.max_events.max(n.saturating_mul(2));
    budget.max_total_scalar_bytes = budget.max_total_scalar_bytes.max(n);
    let mut options = serde_saphyr::Options::default();
    options.budget = Some(budget);
    options
}

/// Parses every document of `text`; `origin` (a file name) prefixes errors.
/// Empty documents are skipped; objects without a namespace get `default`. The first invalid document fails the whole
/// text: a half-read file would be a configuration nobody wrote.
pub fn parse_documents(text: &str, origin: &str, schemas: &SchemaValidator) -> Result<Vec<Object>, ManifestError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(ManifestError::TooLarge { origin: origin.to_owned(), bytes: text.len() });
    }
    let docs: Vec<Value> = serde_saphyr::from_multiple_with_options(text, parser_options(text)).map_err(|e| ManifestError::Yaml {
        origin: origin.to_owned(),
        message: match e.to_string() {
            m if m.contains("budget breached") => {
                format!("{m} (nesting deeper than 64 levels or alias expansion beyond the parser's limits: not a configuration)")
            }
            m => m,
        },
    })?;
    let mut out = Vec::with_capacity(docs.len());
    for (index, doc) in docs.into_iter().enumerate() {
        if doc.is_null() {
            continue;
        }
        out.push(parse_object(doc, origin, index, schemas)?);
    }
    Ok(out)
}

fn parse_object(mut doc: Value, origin: &str, index: usize, schemas: &SchemaValidator) -> Result<Object, ManifestError> {
    let shape = |message: String| ManifestError::Shape { origin: origin.to_owned(), index, message };
    let api_version = doc.get("apiVersion").and_then(Value::as_str).ok_or_else(|| shape("apiVersion is missing".into()))?.to_owned();
    let kind = doc.get("kind").and_then(Value::as_str).ok_or_else(|| shape("kind is missing".into()))?.to_owned();
    let name =
        doc.pointer("/metadata/name").and_then(Value::as_str).ok_or_else(|| shape(format!("{kind}: metadata.name is missing")))?.to_owned();
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    // Like `kubectl apply` with the default context: objects without a namespace land in "default".
    if let Some(meta) = doc.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.entry("namespace").or_insert_with(|| Value::String(DEFAULT_NAMESPACE.to_owned()));
    }

    if group == v1alpha1::GROUP && schemas.knows(&kind) {
        schemas.validate(&kind, &doc).map_err(|source| ManifestError::Invalid {
            origin: origin.to_owned(),
            kind: kind.clone(),
            name: name.clone(),
            source,
        })?;
    }
    let typed = |r: Result<Object, serde_json::Error>| r.map_err(|e| shape(format!("{kind} {name}: {e}")));
    match (api_version.as_str(), kind.as_str()) {
        (v, "VPC") if v == api(galactic::GROUP, galactic::VERSION) => typed(serde_json::from_value(doc).map(Object::Vpc)),
        (v, "VPCAttachment") if v == api(galactic::GROUP, galactic::VERSION) => {
            typed(serde_json::from_value(doc).map(Object::VpcAttachment))
        }
        (v, "Location") if v == api(datum::GROUP, datum::VERSION) => typed(serde_json::from_value(doc).map(Object::Location)),
        (v, k) if v == api(v1alpha1::GROUP, v1alpha1::VERSION) => match k {
            "VPCService" => typed(serde_json::from_value(doc).map(|s| Object::VpcService(Arc::new(s)))),
            "VPCRoute" => typed(serde_json::from_value(doc).map(|r| Object::VpcRoute(Arc::new(r)))),
            "ServiceBinding" => typed(serde_json::from_value(doc).map(Object::ServiceBinding)),
            "VPCIngress" => typed(serde_json::from_value(doc).map(Object::VpcIngress)),
            "VPCEgress" => typed(serde_json::from_value(doc).map(Object::VpcEgress)),
            "TunnelBinding" => typed(serde_json::from_value(doc).map(Object::TunnelBinding)),
            _ => Err(shape(format!("{api_version} has no kind {kind}"))),
        },
        ("v1", "Secret") => typed(serde_json::from_value(doc).map(Object::Secret)),
        _ => Ok(Object::Other { api_version, kind, name }),
    }
}

fn api(group: &str, version: &str) -> String {
    format!("{group}/{version}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schemas() -> SchemaValidator {
        SchemaValidator::for_router_kinds().unwrap()
    }

    #[test]
    fn a_file_with_thousands_of_documents_loads() {
        // Past serde-saphyr's default of 1,024 documents, which refused a 10,000-route file.
        let text: String = (0..3000)
            .map(|i| {
                format!(
                    "---\napiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: r{i}}}\n\
                     spec: {{hostnames: [h{}.example.com], matches: [{{pathPrefix: /p{i}}}], destinations: [{{vpcServiceRef: {{name: s{}}}}}]}}\n",
                    i % 500,
                    i % 100
                )
            })
            .collect();
        assert_eq!(parse_documents(&text, "many.yaml", &schemas()).unwrap().len(), 3000);
    }

    #[test]
    fn hostile_files_are_refused_naming_the_limit() {
        let deep = format!("a: {}1{}", "[".repeat(200), "]".repeat(200));
        let err = parse_documents(&deep, "deep.yaml", &schemas()).unwrap_err().to_string();
        assert!(err.starts_with("deep.yaml: not valid YAML"), "{err}");
        let laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\nc: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n\
                      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\ne: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n\
                      g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n";
        assert!(parse_documents(laughs, "laughs.yaml", &schemas()).is_err(), "alias expansion is bounded");
        let huge = " ".repeat(MAX_FILE_BYTES + 1);
        let err = parse_documents(&huge, "huge.yaml", &schemas()).unwrap_err().to_string();
        assert!(err.contains("64 MiB") && err.contains("split it"), "{err}");
    }
}
