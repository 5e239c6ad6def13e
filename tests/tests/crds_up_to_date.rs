//! The checked-in CRDs are exactly what the Rust types generate, and they are
//! structural schemas an API server accepts.

use router_tests::workspace_root;
use serde_json::Value;

#[test]
fn checked_in_crds_match_the_types() {
    let dir = workspace_root().join("manifests/crds");
    let rendered = router_api::v1alpha1::render_crds().unwrap();
    for (file, yaml) in &rendered {
        let on_disk = std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(on_disk == *yaml, "manifests/crds/{file} is stale: run `cargo run -p router-api --bin crdgen -- --out manifests/crds`");
    }
    let checked_in = std::fs::read_dir(&dir).unwrap().count();
    assert_eq!(checked_in, rendered.len(), "manifests/crds holds files no type generates");
}

/// The rules of a structural schema (apiextensions.k8s.io/v1): every node has a
/// type (or x-kubernetes-int-or-string / preserve-unknown-fields), no $ref, no
/// additionalProperties beside properties, nothing under metadata but type.
fn assert_structural(node: &Value, at: &str) {
    let obj = node.as_object().unwrap_or_else(|| panic!("{at}: schema is not an object"));
    assert!(!obj.contains_key("$ref"), "{at}: $ref is not allowed");
    assert!(
        obj.contains_key("type")
            || obj.contains_key("x-kubernetes-int-or-string")
            || obj.contains_key("x-kubernetes-preserve-unknown-fields"),
        "{at}: no type"
    );
    assert!(
        !(obj.contains_key("properties") && obj.contains_key("additionalProperties")),
        "{at}: properties and additionalProperties are exclusive"
    );
    for key in ["anyOf", "oneOf", "allOf", "not"] {
        if let Some(branches) = obj.get(key) {
            // Allowed only as value validation: no types or defaults inside.
            for b in branches.as_array().into_iter().flatten() {
                assert!(b.get("type").is_none() && b.get("default").is_none(), "{at}.{key}: types inside logical junctors");
            }
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            assert_structural(v, &format!("{at}.{k}"));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(v) = obj.get(key).filter(|v| v.is_object()) {
            assert_structural(v, &format!("{at}.{key}"));
        }
    }
}

#[test]
fn generated_crds_are_structural_and_complete() {
    for crd in router_api::v1alpha1::crds() {
        let crd = serde_json::to_value(&crd).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        let version = &crd["spec"]["versions"][0];
        assert_eq!(version["subresources"]["status"], serde_json::json!({}), "{name}: status subresource");
        assert!(!crd["spec"]["names"]["shortNames"].as_array().unwrap().is_empty(), "{name}: short names");
        let columns = version["additionalPrinterColumns"].as_array().unwrap();
        assert!(columns.iter().any(|c| c["name"] == "Age"), "{name}: Age column");
        assert_structural(&version["schema"]["openAPIV3Schema"], &name);
    }
}
