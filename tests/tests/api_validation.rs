//! Every example users were promised (shared/fixtures/seed-examples) and every
//! example we ship (manifests/examples, examples/) is valid against the
//! generated CRDs — structure and CEL rules — and parses into typed objects;
//! a table of invalid objects is rejected with a message naming the field.

use router_api::{
    manifest::{Object, parse_documents},
    schema::SchemaValidator,
};
use router_tests::{shared_dir, workspace_root, yaml_files};
use serde_json::{Value, json};

fn validator() -> SchemaValidator {
    SchemaValidator::for_router_kinds().expect("generated CRD schemas compile")
}

fn assert_all_valid(dir: &std::path::Path) -> usize {
    let v = validator();
    let mut count = 0;
    let files = yaml_files(dir);
    assert!(!files.is_empty(), "no YAML in {}", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let objects = parse_documents(&text, &file.display().to_string(), &v).unwrap_or_else(|e| panic!("{e}"));
        assert!(!objects.is_empty(), "{} has no objects", file.display());
        count += objects.iter().filter(|o| !matches!(o, Object::Other { .. })).count();
    }
    count
}

#[test]
fn seed_examples_are_valid_and_typed() {
    let n = assert_all_valid(&shared_dir().join("fixtures/seed-examples"));
    assert_eq!(n, 6, "every seed example is a router object");
}

#[test]
fn shipped_examples_are_valid_and_typed() {
    assert!(assert_all_valid(&workspace_root().join("manifests/examples")) >= 10);
    assert!(assert_all_valid(&workspace_root().join("examples/standalone")) >= 4);
}

#[test]
fn seed_example_fields_keep_their_meaning() {
    let text = std::fs::read_to_string(shared_dir().join("fixtures/seed-examples/05-vpcroute-api-routing.yaml")).unwrap();
    let objects = parse_documents(&text, "05", &validator()).unwrap();
    let Object::VpcRoute(route) = &objects[0] else { panic!("not a VPCRoute") };
    let m = route.spec.r#match.as_ref().unwrap();
    assert_eq!(m.path_prefix.as_deref(), Some("/api"));
    assert_eq!(route.spec.destinations[0].vpc_service_ref.name, "backend-api");
    assert_eq!(route.spec.destinations[0].weight, 1, "weight defaults to 1 as in the Gateway API");
    let retries = route.spec.retries.as_ref().unwrap();
    assert_eq!((retries.max_retries, retries.retry_on_status.clone()), (3, vec![502, 503, 504]));
}

fn route(spec: Value) -> Value {
    json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
           "metadata": {"name": "r", "namespace": "default"}, "spec": spec})
}

fn service(spec: Value) -> Value {
    json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
           "metadata": {"name": "s", "namespace": "default"}, "spec": spec})
}

fn ingress(listener: Value) -> Value {
    json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress",
           "metadata": {"name": "i", "namespace": "default"},
           "spec": {"vpcRef": {"name": "v"}, "listeners": [listener]}})
}

fn dest() -> Value {
    json!([{"vpcServiceRef": {"name": "s"}}])
}

/// (what is wrong, object, text the error must contain — the field it names)
fn invalid_objects() -> Vec<(&'static str, Value, &'static str)> {
    vec![
        ("port out of range", service(json!({"vpcAttachmentRef": {"name": "a"}, "port": 70000})), "spec.port"),
        ("port zero", service(json!({"vpcAttachmentRef": {"name": "a"}, "port": 0})), "spec.port"),
        ("port missing", service(json!({"vpcAttachmentRef": {"name": "a"}})), "port"),
        ("unknown protocol", service(json!({"vpcAttachmentRef": {"name": "a"}, "port": 80, "protocol": "SMTP"})), "spec.protocol"),
        (
            "both attachment ref and selector",
            service(json!({"vpcAttachmentRef": {"name": "a"}, "vpcAttachmentSelector": {"matchLabels": {"a": "b"}}, "port": 80})),
            "exactly one of vpcAttachmentRef or vpcAttachmentSelector",
        ),
        ("neither attachment ref nor selector", service(json!({"port": 80})), "exactly one of vpcAttachmentRef or vpcAttachmentSelector"),
        (
            "two health probes",
            service(json!({"vpcAttachmentRef": {"name": "a"}, "port": 80, "healthCheck": {"httpPath": "/h", "tcp": {}}})),
            "at most one of httpPath, grpcService and tcp",
        ),
        (
            "health timeout not below interval",
            service(json!({"vpcAttachmentRef": {"name": "a"}, "port": 80, "healthCheck": {"intervalSeconds": 2, "timeoutSeconds": 5}})),
            "timeoutSeconds",
        ),
        (
            "both path and pathPrefix",
            route(json!({"match": {"path": "/a", "pathPrefix": "/a"}, "destinations": dest()})),
            "at most one of path, pathPrefix and pathRegex",
        ),
        ("path not absolute", route(json!({"match": {"pathPrefix": "api"}, "destinations": dest()})), "spec.match.pathPrefix"),
        ("unknown load balancing", route(json!({"loadBalancing": "fastest", "destinations": dest()})), "spec.loadBalancing"),
        (
            "weight out of range",
            route(json!({"destinations": [{"vpcServiceRef": {"name": "s"}, "weight": 2000000}]})),
            "spec.destinations[0].weight",
        ),
        (
            "negative weight",
            route(json!({"destinations": [{"vpcServiceRef": {"name": "s"}, "weight": -1}]})),
            "spec.destinations[0].weight",
        ),
        ("no destinations and no redirect", route(json!({"match": {"pathPrefix": "/"}})), "destinations must not be empty"),
        (
            "redirect and urlRewrite",
            route(json!({"filters": {"redirect": {"scheme": "https"}, "urlRewrite": {"hostname": "x"}}, "destinations": dest()})),
            "redirect and urlRewrite cannot both be set",
        ),
        (
            "redirect status not a redirect",
            route(json!({"filters": {"redirect": {"statusCode": 200}}})),
            "spec.filters.redirect.statusCode",
        ),
        (
            "header match without value",
            route(json!({"match": {"headers": [{"name": "x-a"}]}, "destinations": dest()})),
            "value is required unless type is Present",
        ),
        ("unknown method", route(json!({"match": {"methods": ["FETCH"]}, "destinations": dest()})), "spec.match.methods[0]"),
        ("uppercase hostname", route(json!({"hostnames": ["API.example.com"], "destinations": dest()})), "spec.hostnames[0]"),
        (
            "both match and matches",
            route(json!({"match": {"pathPrefix": "/a"}, "matches": [{"pathPrefix": "/b"}], "destinations": dest()})),
            "use either match or matches",
        ),
        ("duration without unit", route(json!({"timeouts": {"request": "30"}, "destinations": dest()})), "spec.timeouts.request"),
        ("retry on a 4xx", route(json!({"retries": {"retryOnStatus": [404]}, "destinations": dest()})), "spec.retries.retryOnStatus[0]"),
        (
            "mirror percent over 100",
            route(json!({"filters": {"mirror": {"vpcServiceRef": {"name": "m"}, "percent": 150}}, "destinations": dest()})),
            "spec.filters.mirror.percent",
        ),
        (
            "hashOn without consistent-hash",
            route(json!({"hashOn": {"header": "x-user"}, "destinations": dest()})),
            "hashOn applies only to loadBalancing consistent-hash",
        ),
        (
            "hashOn with two keys",
            route(json!({"loadBalancing": "consistent-hash", "hashOn": {"header": "x", "cookie": "c"}, "destinations": dest()})),
            "exactly one of header, cookie and sourceIP",
        ),
        (
            "TLS minVersion 1.0",
            ingress(
                json!({"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "c"}], "minVersion": "1.0"}}),
            ),
            "spec.listeners[0].tls.minVersion",
        ),
        (
            "HTTPS listener without tls",
            ingress(json!({"name": "https", "port": 443, "protocol": "HTTPS"})),
            "tls is required for protocol HTTPS",
        ),
        ("listener port out of range", ingress(json!({"name": "http", "port": 65536})), "spec.listeners[0].port"),
        (
            "egress cidr not a CIDR",
            json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": {"name": "e"},
                "spec": {"vpcRef": {"name": "v"}, "rules": [{"name": "r", "to": {"cidrs": ["10.0.0.300/8"]}, "action": "Allow"}]}}),
            "spec.rules[0].to.cidrs[0]",
        ),
        (
            "egress cidr without a prefix length",
            json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": {"name": "e"},
                "spec": {"vpcRef": {"name": "v"}, "rules": [{"name": "r", "to": {"cidrs": ["2001:db8::"]}, "action": "Allow"}]}}),
            "spec.rules[0].to.cidrs[0]",
        ),
        (
            "egress rule with no target",
            json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": {"name": "e"},
                "spec": {"vpcRef": {"name": "v"}, "rules": [{"name": "r", "to": {}, "action": "Allow"}]}}),
            "at least one of hosts and cidrs",
        ),
        (
            "binding port mapping out of range",
            json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "ServiceBinding", "metadata": {"name": "b"},
                "spec": {"serviceRef": {"name": "s"}, "vpcServiceRef": {"name": "v"}, "portMappings": [{"servicePort": 0, "vpcPort": 80}]}}),
            "spec.portMappings[0].servicePort",
        ),
    ]
}

#[test]
fn invalid_objects_are_rejected_naming_the_field() {
    let v = validator();
    let mut failures = Vec::new();
    for (what, object, expect) in invalid_objects() {
        let kind = object["kind"].as_str().unwrap().to_owned();
        match v.validate(&kind, &object) {
            Ok(()) => failures.push(format!("{what}: accepted")),
            Err(e) => {
                let text = e.to_string();
                if !text.contains(expect) {
                    failures.push(format!("{what}: error {text:?} does not contain {expect:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn invalid_documents_fail_parsing_with_origin_kind_and_name() {
    let text = "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {name: bad}\nspec: {vpcAttachmentRef: {name: a}, port: 70000}\n";
    let err = parse_documents(text, "svc.yaml", &validator()).unwrap_err().to_string();
    assert!(err.starts_with("svc.yaml: VPCService bad: spec.port"), "{err}");
}

#[test]
fn valid_variants_are_accepted() {
    let v = validator();
    for object in [
        route(json!({"filters": {"redirect": {"scheme": "https", "statusCode": 301}}})),
        route(json!({"matches": [{"pathPrefix": "/a"}, {"path": "/b", "methods": ["GET"]}], "destinations": dest()})),
        route(json!({"match": {"headers": [{"name": "x-debug", "type": "Present"}]}, "destinations": dest()})),
        route(json!({"loadBalancing": "consistent-hash", "hashOn": {"sourceIP": true}, "destinations": dest()})),
        route(json!({"hostnames": ["*.example.com"], "timeouts": {"request": "1m30s", "perTry": "250ms"}, "destinations": dest()})),
        service(json!({"vpcAttachmentSelector": {"matchLabels": {"app": "api"}}, "port": 443, "protocol": "HTTPS",
                       "tls": {"serverName": "api.internal"}})),
        ingress(
            json!({"name": "https", "port": 443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "c"}], "minVersion": "1.3"}}),
        ),
        json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": {"name": "e"},
            "spec": {"vpcRef": {"name": "v"}, "rules": [{"name": "r", "action": "Allow",
                "to": {"cidrs": ["0.0.0.0/0", "203.0.113.0/24", "10.1.2.3/32", "2001:db8::/32", "::/0", "fe80::1/128", "::ffff:10.0.0.0/104"]}}]}}),
    ] {
        v.validate(object["kind"].as_str().unwrap(), &object).unwrap_or_else(|e| panic!("{object}: {e}"));
    }
}

#[test]
fn objects_without_a_namespace_land_in_default_like_kubectl() {
    let text =
        "apiVersion: router.datum.net/v1alpha1\nkind: VPCService\nmetadata: {name: s}\nspec: {vpcAttachmentRef: {name: a}, port: 80}\n";
    let objects = parse_documents(text, "ns.yaml", &validator()).unwrap();
    let Object::VpcService(svc) = &objects[0] else { panic!("not a VPCService") };
    assert_eq!(svc.metadata.namespace.as_deref(), Some("default"));
}
