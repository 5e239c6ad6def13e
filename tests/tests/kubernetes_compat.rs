//! The manifests install on every Kubernetes from 1.24 to the newest release.
//!
//! Every checked-in CRD (they equal `crdgen`'s output, see crds_up_to_date)
//! is walked key by key against what a 1.24 API server and kubectl know: the
//! keys of a CRD and of each OpenAPI schema node, the keys of a validation
//! rule (`rule` and `message`: `fieldPath` and `reason` came in 1.28,
//! `messageExpression` in 1.27, `optionalOldSelf` in 1.29), the `format`s,
//! enums without a `null` member, and the functions every CEL rule calls,
//! taken from the parsed rule. These are allowlists: a construct that is not
//! listed fails by default, naming the file and the path, so a newer one
//! cannot slip in. Every other manifest document must use an API version that
//! 1.24 and the newest release both serve.

use std::path::Path;

use router_tests::{workspace_root, yaml_files};
use serde_json::Value;

/// Keys of a CustomResourceDefinition (and of its spec, names, versions) in 1.24's apiextensions/v1.
const CRD_KEYS: &[(&str, &[&str])] = &[
    ("", &["apiVersion", "kind", "metadata", "spec"]),
    ("spec", &["group", "names", "scope", "versions", "conversion", "preserveUnknownFields"]),
    ("spec.names", &["plural", "singular", "kind", "shortNames", "categories", "listKind"]),
    (
        "spec.versions[]",
        &["name", "served", "storage", "schema", "subresources", "additionalPrinterColumns", "deprecated", "deprecationWarning"],
    ),
    ("spec.versions[].additionalPrinterColumns[]", &["name", "type", "format", "description", "priority", "jsonPath"]),
    ("spec.versions[].subresources", &["status", "scale"]),
    ("spec.versions[].schema", &["openAPIV3Schema"]),
];

/// Keys of an OpenAPI schema node in 1.24's JSONSchemaProps.
const SCHEMA_KEYS: &[&str] = &[
    "type",
    "format",
    "title",
    "description",
    "default",
    "example",
    "externalDocs",
    "enum",
    "nullable",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "allOf",
    "anyOf",
    "oneOf",
    "not",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "multipleOf",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "maxProperties",
    "minProperties",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-list-type",
    "x-kubernetes-map-type",
    "x-kubernetes-validations",
];

/// Keys of one `x-kubernetes-validations` entry in 1.24.
const RULE_KEYS: &[&str] = &["rule", "message"];

/// Formats 1.24's apiextensions validation knows.
const FORMATS: &[&str] = &[
    "int32",
    "int64",
    "float",
    "double",
    "byte",
    "binary",
    "date",
    "date-time",
    "duration",
    "password",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
];

/// Functions and operators of 1.24's CEL environment that the parser leaves
/// as calls: CEL's standard definitions. Macros (`has`, `all`, `exists`,
/// `exists_one`, `map`, `filter`) are expanded by the parser and so never
/// show up here; the Kubernetes libraries of later releases (`isCIDR`, `ip`,
/// `isURL`, `quantity`, optional types…) are not listed and so fail.
const CEL_FUNCTIONS: &[&str] = &[
    "_?_:_",
    "_&&_",
    "_||_",
    "!_",
    "-_",
    "_+_",
    "_-_",
    "_*_",
    "_/_",
    "_%_",
    "_==_",
    "_!=_",
    "_<_",
    "_<=_",
    "_>_",
    "_>=_",
    "_[_]",
    "@in",
    "@not_strictly_false",
    "size",
    "matches",
    "contains",
    "startsWith",
    "endsWith",
    "int",
    "uint",
    "double",
    "string",
    "bytes",
    "bool",
    "type",
    "dyn",
    "duration",
    "timestamp",
];

/// API versions served by 1.24 and by the newest release.
const API_VERSIONS: &[&str] = &[
    "v1",
    "apps/v1",
    "policy/v1",
    "rbac.authorization.k8s.io/v1",
    "coordination.k8s.io/v1",
    "discovery.k8s.io/v1",
    "events.k8s.io/v1",
    "apiextensions.k8s.io/v1",
    "router.datum.net/v1alpha1",
    "galactic.datumapis.com/v1alpha",
    // Datum's Location (a CRD of its own, the same on every Kubernetes version).
    "networking.datumapis.com/v1alpha",
];

fn documents(file: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_saphyr::from_multiple::<Value>(&text)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Problems of one schema node at `path`, and of everything below it.
fn check_schema(node: &Value, path: &str, out: &mut Vec<String>) {
    let Some(map) = node.as_object() else {
        out.push(format!("{path}: a schema must be an object"));
        return;
    };
    for (key, value) in map {
        let here = format!("{path}.{key}");
        if !SCHEMA_KEYS.contains(&key.as_str()) {
            out.push(format!("{here}: not a schema key of Kubernetes 1.24"));
            continue;
        }
        match key.as_str() {
            "properties" => {
                for (name, child) in value.as_object().into_iter().flatten() {
                    check_schema(child, &format!("{here}.{name}"), out);
                }
            }
            "items" | "not" => check_schema(value, &here, out),
            "additionalProperties" if value.is_object() => check_schema(value, &here, out),
            "allOf" | "anyOf" | "oneOf" => {
                for (i, child) in value.as_array().into_iter().flatten().enumerate() {
                    check_schema(child, &format!("{here}[{i}]"), out);
                }
            }
            "enum" if value.as_array().is_some_and(|m| m.iter().any(Value::is_null)) => {
                out.push(format!("{here}: a null member (use nullable alone; kubectl before 1.28 refuses it)"));
            }
            "format" if !value.as_str().is_some_and(|f| FORMATS.contains(&f)) => {
                out.push(format!("{here}: format {value} is unknown to Kubernetes 1.24"));
            }
            "x-kubernetes-validations" => {
                for (i, rule) in value.as_array().into_iter().flatten().enumerate() {
                    check_rule(rule, &format!("{here}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
}

fn check_rule(rule: &Value, path: &str, out: &mut Vec<String>) {
    for key in rule.as_object().into_iter().flat_map(|m| m.keys()) {
        if !RULE_KEYS.contains(&key.as_str()) {
            out.push(format!("{path}.{key}: not a validation rule key of Kubernetes 1.24"));
        }
    }
    if rule.get("message").and_then(Value::as_str).is_none_or(str::is_empty) {
        out.push(format!("{path}: no message (the message names the field the rule is about)"));
    }
    let Some(text) = rule.get("rule").and_then(Value::as_str) else {
        out.push(format!("{path}: no rule"));
        return;
    };
    match cel::parser::Parser::new().parse(text) {
        Err(e) => out.push(format!("{path}: {text:?} does not parse: {e}")),
        Ok(expr) => {
            let references = expr.references();
            let mut unknown: Vec<&str> = references.functions().into_iter().filter(|f| !CEL_FUNCTIONS.contains(f)).collect();
            unknown.sort();
            if !unknown.is_empty() {
                out.push(format!("{path}: {text:?} calls {unknown:?}, not in Kubernetes 1.24's CEL"));
            }
        }
    }
}

/// Problems of the CRD-level keys: each `(path, allowed)` of CRD_KEYS, where `[]` walks a list.
fn check_crd_keys(crd: &Value, out: &mut Vec<String>) {
    for (path, allowed) in CRD_KEYS {
        let mut nodes = vec![crd];
        for part in path.split('.').filter(|p| !p.is_empty()) {
            let (name, list) = part.strip_suffix("[]").map_or((part, false), |n| (n, true));
            nodes = nodes.into_iter().filter_map(|n| n.get(name)).collect();
            if list {
                nodes = nodes.into_iter().flat_map(|n| n.as_array().into_iter().flatten()).collect();
            }
        }
        for node in nodes {
            for key in node.as_object().into_iter().flat_map(|m| m.keys()) {
                if !allowed.contains(&key.as_str()) {
                    out.push(format!("{path}.{key}: not a CustomResourceDefinition key of Kubernetes 1.24"));
                }
            }
        }
    }
}

/// Everything outside the 1.24 set in one CRD document.
fn crd_problems(crd: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check_crd_keys(crd, &mut out);
    for (i, version) in crd["spec"]["versions"].as_array().into_iter().flatten().enumerate() {
        match version.pointer("/schema/openAPIV3Schema") {
            Some(schema) => check_schema(schema, &format!("spec.versions[{i}].schema.openAPIV3Schema"), &mut out),
            None => out.push(format!("spec.versions[{i}]: no schema")),
        }
    }
    out
}

#[test]
fn every_crd_uses_only_what_kubernetes_1_24_accepts() {
    let files = yaml_files(&workspace_root().join("manifests/crds"));
    assert!(files.len() >= 5, "the router's CRDs are checked in");
    let mut failures = Vec::new();
    for file in files {
        for doc in documents(&file) {
            failures.extend(crd_problems(&doc).into_iter().map(|p| format!("{}: {p}", file.display())));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn the_check_refuses_what_1_24_refuses() {
    // Each of the three constructs a 1.24 server refused, and a key no release knows.
    let crd = |schema: Value| {
        serde_json::json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition", "metadata": {"name": "x"},
            "spec": {"group": "g", "scope": "Namespaced", "names": {"plural": "xs", "kind": "X"},
                "versions": [{"name": "v1", "served": true, "storage": true, "schema": {"openAPIV3Schema": schema}}]}})
    };
    let cases = [
        (
            serde_json::json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.c.all(x, isCIDR(x))", "message": "c"}]}),
            "isCIDR",
        ),
        (
            serde_json::json!({"type": "object", "x-kubernetes-validations": [{"rule": "true", "message": "m", "fieldPath": ".a"}]}),
            "fieldPath",
        ),
        (serde_json::json!({"type": "string", "nullable": true, "enum": ["a", null]}), "null member"),
        (serde_json::json!({"type": "object", "x-kubernetes-validations": [{"rule": "self.a.isURL()", "message": "m"}]}), "isURL"),
        (serde_json::json!({"type": "string", "x-kubernetes-new-thing": true}), "x-kubernetes-new-thing"),
        (serde_json::json!({"type": "string", "format": "ip"}), "format"),
    ];
    for (schema, expect) in cases {
        let problems = crd_problems(&crd(schema.clone()));
        assert!(problems.iter().any(|p| p.contains(expect)), "{schema}: {problems:?} should mention {expect}");
    }
    let mut with_selectable = crd(serde_json::json!({"type": "object"}));
    with_selectable["spec"]["versions"][0]["selectableFields"] = serde_json::json!([{"jsonPath": ".spec.a"}]);
    assert!(crd_problems(&with_selectable).iter().any(|p| p.contains("selectableFields")), "selectableFields came in 1.30");
    assert!(crd_problems(&crd(serde_json::json!({"type": "object", "x-kubernetes-validations": [{"rule": "size(self.a) > 0 && self.b.all(x, x.startsWith('y'))", "message": "m"}]}))).is_empty());
}

#[test]
fn every_manifest_uses_api_versions_served_from_1_24_to_the_newest() {
    let manifests = workspace_root().join("manifests");
    let files: Vec<_> = ["crds", "rbac", "deployments", "examples"].iter().flat_map(|d| yaml_files(&manifests.join(d))).collect();
    let mut failures = Vec::new();
    for file in &files {
        for (i, doc) in documents(file).iter().enumerate() {
            let version = doc["apiVersion"].as_str().unwrap_or("<none>");
            if !API_VERSIONS.contains(&version) {
                failures.push(format!("{} document {i} ({}): apiVersion {version}", file.display(), doc["kind"]));
            }
        }
    }
    assert!(files.len() >= 10, "the manifests are found");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}
