//! Galactic's real CRDs and samples (shared/fixtures/galactic) deserialise
//! into our bindings and serialise back unchanged.

use router_api::galactic::{POD_ATTACHMENT_ANNOTATION, VPC, VPCAttachment};
use router_tests::shared_dir;
use serde_json::Value;

fn sample(name: &str) -> Value {
    let path = shared_dir().join("fixtures/galactic").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_saphyr::from_str(&text).unwrap()
}

#[test]
fn vpc_sample_round_trips() {
    let raw = sample("sample-vpc.yaml");
    let vpc: VPC = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(vpc.spec.networks, ["10.0.0.0/24", "2001:1::/64"]);
    assert!(!vpc.is_ready(), "a VPC without status is not ready");
    assert_eq!(serde_json::to_value(&vpc).unwrap(), raw);
}

#[test]
fn vpcattachment_sample_round_trips() {
    let raw = sample("sample-vpcattachment.yaml");
    let att: VPCAttachment = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(att.spec.vpc.name.as_deref(), Some("vpc-sample"));
    assert_eq!(att.spec.interface.name, "galactic0");
    assert_eq!(att.spec.interface.addresses, ["10.1.1.1/24", "2001:10:1:1::1/64"]);
    assert_eq!(att.spec.routes.as_ref().map(Vec::len), Some(4));
    assert_eq!(serde_json::to_value(&att).unwrap(), raw);
}

#[test]
fn status_written_by_galactic_round_trips() {
    let mut raw = sample("sample-vpcattachment.yaml");
    raw["status"] = serde_json::json!({"ready": true, "identifier": "1f2e"});
    let att: VPCAttachment = serde_json::from_value(raw.clone()).unwrap();
    assert!(att.is_ready());
    assert_eq!(att.identifier(), Some("1f2e"));
    assert_eq!(serde_json::to_value(&att).unwrap(), raw);

    let mut raw = sample("sample-vpc.yaml");
    raw["status"] = serde_json::json!({"ready": true, "identifier": "0a1b2c3d4e5f"});
    let vpc: VPC = serde_json::from_value(raw.clone()).unwrap();
    assert_eq!(vpc.identifier(), Some("0a1b2c3d4e5f"));
    assert_eq!(serde_json::to_value(&vpc).unwrap(), raw);
}

#[test]
fn interface_name_defaults_to_galactic0_as_in_the_crd() {
    let mut raw = sample("sample-vpcattachment.yaml");
    raw["spec"]["interface"].as_object_mut().unwrap().remove("name");
    let att: VPCAttachment = serde_json::from_value(raw).unwrap();
    assert_eq!(att.spec.interface.name, "galactic0");
}

#[test]
fn sample_pod_carries_the_annotation_we_read() {
    let pod = sample("sample-pod.yaml");
    assert_eq!(pod["metadata"]["annotations"][POD_ATTACHMENT_ANNOTATION].as_str(), Some("vpcattachment-sample"));
}

#[test]
fn bindings_cover_every_field_of_the_real_crds() {
    // Every property in Galactic's schema must survive a round trip through our types.
    for (crd_file, full) in [
        (
            "galactic.datumapis.com_vpcs.yaml",
            serde_json::json!({
                "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC",
                "metadata": {"name": "v", "namespace": "default"},
                "spec": {"networks": ["10.0.0.0/24"]},
                "status": {"identifier": "0a1b2c3d4e5f", "ready": true}
            }),
        ),
        (
            "galactic.datumapis.com_vpcattachments.yaml",
            serde_json::json!({
                "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPCAttachment",
                "metadata": {"name": "a", "namespace": "default"},
                "spec": {
                    "vpc": {"apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC", "name": "v",
                            "namespace": "default", "uid": "u", "resourceVersion": "1", "fieldPath": "f"},
                    "interface": {"name": "galactic0", "addresses": ["10.1.1.1/24"]},
                    "routes": [{"destination": "192.168.1.0/24", "via": "10.1.1.1"}, {"destination": "10.9.0.0/16"}]
                },
                "status": {"identifier": "1f2e", "ready": false}
            }),
        ),
    ] {
        let path = shared_dir().join("fixtures/galactic").join(crd_file);
        let crd: Value = serde_saphyr::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
        assert_properties_present(schema, &full, crd_file);
        let back = match full["kind"].as_str() {
            Some("VPC") => serde_json::to_value(serde_json::from_value::<VPC>(full.clone()).unwrap()).unwrap(),
            _ => serde_json::to_value(serde_json::from_value::<VPCAttachment>(full.clone()).unwrap()).unwrap(),
        };
        assert_eq!(back, full, "{crd_file}");
    }
}

/// Asserts that `object` sets every property the schema declares (so the round trip above covers them all).
fn assert_properties_present(schema: &Value, object: &Value, at: &str) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (name, sub) in props {
        if name == "metadata" {
            continue;
        }
        let value = object.get(name).unwrap_or_else(|| panic!("{at}: test object lacks {name}"));
        match value {
            Value::Array(items) => {
                if let Some(item_schema) = sub.get("items") {
                    assert_properties_present(item_schema, &items[0], &format!("{at}.{name}[0]"));
                }
            }
            _ => assert_properties_present(sub, value, &format!("{at}.{name}")),
        }
    }
}
