//! Standalone mode: the same YAML objects a cluster would hold, read from a
//! file or a directory, resolved in-process with the library code that
//! service-discovery uses, and turned into a snapshot.

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    sync::Arc,
};

use router_api::{
    datum::{Locality, Location},
    galactic::{VPC, VPCAttachment},
    manifest::{DEFAULT_NAMESPACE, ManifestError, Object},
    schema::SchemaValidator,
    v1alpha1::{VPCEgress, VPCIngress, VPCRoute, VPCService, VPCServiceStatus},
};
use router_core::{EndpointStore, ServiceKey, Snapshot, SnapshotBuilder, SnapshotInput};

pub use super::documents::Documents;
use crate::tls::secrets::Secrets;

/// Why a configuration was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Manifest(#[from] ManifestError),
    #[error("{path}: no YAML files found")]
    Empty { path: PathBuf },
    #[error("{kind} {namespace}/{name} is defined twice")]
    Duplicate { kind: String, namespace: String, name: String },
}

/// The objects of a standalone configuration. VPCServices and VPCRoutes are
/// shared with the documents of the load (see [`Documents`]), so those of
/// unchanged documents are the very objects the last build compiled.
#[derive(Debug, Default)]
pub struct Objects {
    pub vpcs: Vec<VPC>,
    pub attachments: Vec<VPCAttachment>,
    pub services: Vec<Arc<VPCService>>,
    pub routes: Vec<Arc<VPCRoute>>,
    pub egress: Vec<VPCEgress>,
    pub ingresses: Vec<VPCIngress>,
    /// Datum Locations that attachments name for their topology.
    pub locations: Vec<Location>,
    /// TLS material of listeners and services (`kubernetes.io/tls` and CA Secrets).
    pub secrets: Secrets,
    /// Objects read but not used by the gateway (kind namespace/name).
    pub ignored: Vec<String>,
    /// Kind, namespace and name of every object added, to refuse duplicates.
    seen: BTreeSet<(&'static str, String, String)>,
}

/// The YAML files of `path`: the file itself, or a directory's *.yaml / *.yml (sorted, not recursive).
pub fn files(path: &Path) -> Result<Vec<PathBuf>, LoadError> {
    let files = router_api::manifest::yaml_files(path).map_err(|source| LoadError::Read { path: path.to_owned(), source })?;
    if files.is_empty() {
        return Err(LoadError::Empty { path: path.to_owned() });
    }
    Ok(files)
}

/// Reads and validates every object under `path`, parsing only the documents
/// `documents` does not hold from the last load (see [`Documents`]).
pub fn read(path: &Path, schemas: &SchemaValidator, documents: &mut Documents) -> Result<Objects, LoadError> {
    let mut objects = Objects::default();
    documents.begin();
    for file in files(path)? {
        let text = std::fs::read_to_string(&file).map_err(|source| LoadError::Read { path: file.clone(), source })?;
        objects.add(documents.objects(&text, &file.display().to_string(), schemas)?)?;
    }
    documents.commit();
    Ok(objects)
}

impl Objects {
    /// Adds parsed, validated objects; an object already added is refused as a duplicate.
    pub fn add(&mut self, parsed: Vec<Object>) -> Result<(), LoadError> {
        for object in parsed {
            let (kind, meta) = match &object {
                Object::Vpc(o) => ("VPC", &o.metadata),
                Object::VpcAttachment(o) => ("VPCAttachment", &o.metadata),
                Object::VpcService(o) => ("VPCService", &o.metadata),
                Object::VpcRoute(o) => ("VPCRoute", &o.metadata),
                Object::ServiceBinding(o) => ("ServiceBinding", &o.metadata),
                Object::VpcIngress(o) => ("VPCIngress", &o.metadata),
                Object::VpcEgress(o) => ("VPCEgress", &o.metadata),
                Object::TunnelBinding(o) => ("TunnelBinding", &o.metadata),
                Object::Location(o) => ("Location", &o.metadata),
                Object::Secret(o) => ("Secret", &o.metadata),
                Object::Other { kind, name, .. } => {
                    self.ignored.push(format!("{kind} {name}"));
                    continue;
                }
            };
            let namespace = meta.namespace.clone().unwrap_or_else(|| "default".to_owned());
            let name = meta.name.clone().unwrap_or_default();
            if !self.seen.insert((kind, namespace.clone(), name.clone())) {
                return Err(LoadError::Duplicate { kind: kind.to_owned(), namespace, name });
            }
            match object {
                Object::Vpc(o) => self.vpcs.push(o),
                Object::VpcAttachment(o) => self.attachments.push(o),
                Object::VpcService(o) => self.services.push(o),
                Object::VpcRoute(o) => self.routes.push(o),
                Object::VpcEgress(o) => self.egress.push(o),
                Object::VpcIngress(o) => self.ingresses.push(o),
                Object::Location(o) => self.locations.push(o),
                Object::Secret(o) => self.secrets.insert(&o),
                // ServiceBindings need a cluster (Services and Pods): router-controller syncs them.
                // TunnelBindings are tunnel-gateway's: here their VPCService is an ordinary one.
                _ => self.ignored.push(format!("{kind} {namespace}/{name}")),
            }
        }
        Ok(())
    }
}

/// Resolves every VPCService's endpoints from the VPCs and attachments, the
/// way service-discovery would write them to status, and builds a snapshot
/// with `builder`, which recompiles only the objects the last build did not
/// see. `reserved_ports` are the gateway's own listeners, which VPCIngress
/// listeners may not claim; `locality` is where the gateway is (for
/// trafficDistribution: PreferClose).
pub fn build(
    objects: &mut Objects,
    builder: &mut SnapshotBuilder,
    store: &EndpointStore,
    reserved_ports: &[u16],
    locality: Option<&Locality>,
) -> Snapshot {
    let mut problems = Vec::new();
    for svc in &mut objects.services {
        let resolution = router_galactic::resolve_endpoints(svc, &objects.attachments, &objects.vpcs, &objects.locations);
        let key = ServiceKey {
            namespace: svc.metadata.namespace.clone().unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned()),
            name: svc.metadata.name.clone().unwrap_or_default(),
        };
        problems.push((key, resolution.problems.iter().map(ToString::to_string).collect::<Vec<_>>()));
        let ready = resolution.ready_endpoints();
        // A copy of the document's object (which has no status): equal to the last build's
        // when nothing it resolves from changed, so the builder reuses what it compiled.
        Arc::make_mut(svc).status = Some(VPCServiceStatus {
            vpc: resolution.vpc,
            endpoints: resolution.endpoints,
            ready_endpoints: i32::try_from(ready).unwrap_or(i32::MAX),
            ..Default::default()
        });
    }
    let input = SnapshotInput {
        services: router_core::Objects::Shared(&objects.services),
        routes: router_core::Objects::Shared(&objects.routes),
        egress: (&objects.egress).into(),
        vpcs: (&objects.vpcs).into(),
        ingresses: (&objects.ingresses).into(),
        reserved_ports,
        locality,
    };
    let mut snapshot = builder.build(input, store);
    for (key, mut p) in problems {
        snapshot.report.services.entry(key).or_default().append(&mut p);
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use router_core::balance::Level;

    use super::*;

    #[test]
    fn the_two_city_example_resolves_each_endpoints_city_and_a_dallas_gateway_prefers_dallas() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests/examples/two-cities.yaml");
        let schemas = SchemaValidator::for_router_kinds().expect("schemas");
        let mut objects = read(&example, &schemas, &mut Documents::default()).expect("the example loads");
        assert_eq!(objects.locations.len(), 2);
        let dallas = Locality { city_code: Some("DFW".into()), ..Default::default() };
        build(&mut objects, &mut SnapshotBuilder::default(), &EndpointStore::default(), &[], Some(&dallas));
        let status = objects.services[0].status.as_ref().expect("resolved");
        let cities: Vec<_> = status.endpoints.iter().map(|e| (e.attachment.clone().unwrap_or_default(), e.city_code.clone())).collect();
        assert_eq!(
            cities,
            [
                ("api-dfw-1".to_owned(), Some("DFW".to_owned())),
                ("api-dfw-2".into(), Some("DFW".into())),
                ("api-ord-1".into(), Some("ORD".into()))
            ]
        );
        assert_eq!(status.endpoints[2].region.as_deref(), Some("us-central1"), "region from the Location's GCP provider");
        // (Galactic has not marked the example's attachments ready, so the levels are read off the status.)
        let levels: Vec<Level> = status.endpoints.iter().map(|e| Level::of(&dallas, &e.locality())).collect();
        assert_eq!(levels, [Level::City, Level::City, Level::Any]);
    }

    /// The route serving `host`/`path`, and the endpoints of its first destination.
    fn served(snapshot: &Snapshot, host: &str, path: &str) -> Option<(Arc<router_core::snapshot::RoutePolicy>, usize)> {
        let headers = http::HeaderMap::new();
        let view = router_core::RequestView { host, path, query: None, method: &http::Method::GET, headers: &headers };
        let rule = snapshot.routes.lookup(&view)?;
        let endpoints = match &rule.action.destinations[0] {
            router_core::snapshot::DestinationTarget::Resolved { picker, .. } => picker.endpoints().len(),
            router_core::snapshot::DestinationTarget::Unresolved { .. } => 0,
        };
        Some((rule.action.clone(), endpoints))
    }

    #[test]
    fn a_reload_compiles_only_what_its_changed_documents_hold() {
        let dir = std::env::temp_dir().join(format!("datum-router-reload-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let file = dir.join("config.yaml");
        let config = |b_prefix: &str, addresses: &str| {
            format!(
                "apiVersion: galactic.datumapis.com/v1alpha\nkind: VPC\nmetadata: {{name: vpc}}\n\
                 spec: {{networks: [10.0.0.0/8]}}\nstatus: {{ready: true, identifier: 0a1b2c3d4e5f}}\n---\n\
                 apiVersion: galactic.datumapis.com/v1alpha\nkind: VPCAttachment\nmetadata: {{name: att}}\n\
                 spec: {{vpc: {{name: vpc}}, interface: {{name: galactic0, addresses: [{addresses}]}}}}\n\
                 status: {{ready: true, identifier: 1f2e}}\n---\n\
                 apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {{name: svc}}\n\
                 spec: {{vpcAttachmentRef: {{name: att}}, port: 80}}\n---\n\
                 apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: a}}\n\
                 spec: {{hostnames: [a.example], match: {{pathPrefix: /}}, destinations: [{{vpcServiceRef: {{name: svc}}}}]}}\n---\n\
                 apiVersion: router.datum.net/v1alpha1\nkind: VPCRoute\nmetadata: {{name: b}}\n\
                 spec: {{hostnames: [b.example], match: {{pathPrefix: {b_prefix}}}, destinations: [{{vpcServiceRef: {{name: other}}}}]}}\n"
            )
        };
        let schemas = SchemaValidator::for_router_kinds().expect("schemas");
        let (mut documents, mut builder, store) = (Documents::default(), SnapshotBuilder::default(), EndpointStore::default());
        let mut load = |text: String| {
            std::fs::write(&file, text).expect("the configuration is written");
            let mut objects = read(&file, &schemas, &mut documents).expect("the configuration loads");
            build(&mut objects, &mut builder, &store, &[], None)
        };
        let first = load(config("/b", "10.0.0.1/8"));
        // Route b changed: a's document and everything it reads did not.
        let second = load(config("/b2", "10.0.0.1/8"));
        let a = |s: &Snapshot| served(s, "a.example", "/x").expect("route a");
        assert!(Arc::ptr_eq(&a(&first).0, &a(&second).0), "route a was not compiled again");
        assert!(served(&second, "b.example", "/b").is_none() && served(&second, "b.example", "/b2/x").is_some());
        // The attachment's addresses changed: the service resolves anew, and the route reading it is compiled again.
        let third = load(config("/b2", "10.0.0.1/8, 10.0.0.2/8"));
        assert!(!Arc::ptr_eq(&a(&second).0, &a(&third).0));
        assert_eq!(a(&third).1, 2, "route a sends to both endpoints");
        std::fs::remove_dir_all(&dir).expect("the temporary directory is removed");
    }
}
