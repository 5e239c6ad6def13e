//! The standalone YAML loader, end to end: any text a user could put in a
//! configuration file is parsed, validated against the CRD schemas, resolved
//! and compiled into a snapshot, and every hostname and path the routes name
//! is looked up the way a request would be. The property is the loader's
//! promise for bad input: an error or a snapshot, never a panic or a hang.
#![no_main]

use std::sync::LazyLock;

use http::{HeaderMap, Method};
use libfuzzer_sys::fuzz_target;
use router_api::{manifest::parse_documents, schema::SchemaValidator};
use router_core::{EndpointStore, RequestView, SnapshotBuilder, normalize_host};
use router_proxy::config::standalone::{self, Objects};

static SCHEMAS: LazyLock<SchemaValidator> = LazyLock::new(|| SchemaValidator::for_router_kinds().expect("the router's own schemas compile"));

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    // Cut into documents (as a reload reads a file) or parsed whole (a cold load): the same objects.
    let mut documents = standalone::Documents::default();
    documents.begin();
    let cut = documents.objects(text, "fuzz.yaml", &SCHEMAS);
    let whole = parse_documents(text, "fuzz.yaml", &SCHEMAS);
    assert_eq!(cut.as_ref().map(Vec::len).ok(), whole.as_ref().map(Vec::len).ok(), "cutting at --- lines changed the file");
    let Ok(parsed) = cut else { return };
    let mut objects = Objects::default();
    if objects.add(parsed).is_err() {
        return;
    }
    let snapshot = standalone::build(&mut objects, &mut SnapshotBuilder::default(), &EndpointStore::default(), &[8080], None);
    let headers = HeaderMap::new();
    for route in &objects.routes {
        let hosts: Vec<String> = match route.spec.hostnames.is_empty() {
            true => vec!["any.example".to_owned()],
            false => route.spec.hostnames.iter().map(|h| normalize_host(&h.replace('*', "wild"))).collect(),
        };
        let matches = route.spec.r#match.iter().chain(&route.spec.matches);
        let paths: Vec<String> = matches
            .flat_map(|m| [m.path.clone(), m.path_prefix.clone(), m.path_prefix.as_ref().map(|p| format!("{p}/below"))])
            .flatten()
            .chain(["/".to_owned()])
            .collect();
        for host in &hosts {
            for path in &paths {
                let view = RequestView { host, path, query: None, method: &Method::GET, headers: &headers };
                let first = snapshot.routes.lookup(&view).map(std::sync::Arc::as_ptr);
                assert_eq!(first, snapshot.routes.lookup(&view).map(std::sync::Arc::as_ptr), "lookups are deterministic");
            }
        }
    }
});
