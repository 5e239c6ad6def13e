//! The raw manifests users `kubectl apply`: every document parses, Deployments
//! are locked down (non-root, read-only root, no privilege escalation, probes
//! on the admin port), and RBAC grants each component only what it needs.

use router_tests::{workspace_root, yaml_files};
use serde_json::Value;

fn documents(dir: &str) -> Vec<Value> {
    yaml_files(&workspace_root().join("manifests").join(dir))
        .into_iter()
        .flat_map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            serde_saphyr::from_multiple::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
        })
        .filter(|d| !d.is_null())
        .collect()
}

fn of_kind<'a>(docs: &'a [Value], kind: &str) -> Vec<&'a Value> {
    docs.iter().filter(|d| d["kind"] == kind).collect()
}

#[test]
fn deployments_are_locked_down_and_probed_on_the_admin_port() {
    let docs = documents("deployments");
    let mut deployments = of_kind(&docs, "Deployment");
    assert_eq!(deployments.len(), 3);
    let stateful = of_kind(&docs, "StatefulSet");
    assert_eq!(stateful.len(), 1, "tunnel-gateway: a StatefulSet, each replica its own key");
    deployments.extend(stateful);
    for d in deployments {
        let name = d["metadata"]["name"].as_str().unwrap();
        assert_eq!(d["metadata"]["namespace"], "datum-router", "{name}");
        let pod = &d["spec"]["template"]["spec"];
        assert_eq!(pod["serviceAccountName"], name, "{name}: own ServiceAccount");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        let c = &pod["containers"][0];
        assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true, "{name}");
        assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false, "{name}");
        assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL", "{name}");
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "admin", "{name}");
        assert_eq!(c["livenessProbe"]["httpGet"]["port"], "admin", "{name}");
        assert!(c["resources"]["requests"].is_object() && c["resources"]["limits"]["memory"].is_string(), "{name}");
        if name != "router-gateway" {
            assert_eq!(d["spec"]["replicas"], 2, "{name}: HA with leader election");
        }
    }
    let services: Vec<&str> = of_kind(&docs, "Service").iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
    assert_eq!(services, ["router-gateway", "tunnel-gateway"]);
    let pdbs: Vec<&str> = of_kind(&docs, "PodDisruptionBudget").iter().map(|s| s["metadata"]["name"].as_str().unwrap()).collect();
    assert!(pdbs.contains(&"router-gateway") && pdbs.contains(&"tunnel-gateway"), "{pdbs:?}");
}

#[test]
fn rbac_is_least_privilege_per_component() {
    let docs = documents("rbac");
    for sa in ["router-gateway", "router-controller", "service-discovery", "tunnel-gateway"] {
        assert!(
            of_kind(&docs, "ServiceAccount").iter().any(|s| s["metadata"]["name"] == sa && s["metadata"]["namespace"] == "datum-router"),
            "{sa} ServiceAccount"
        );
    }
    let read = ["get", "list", "watch"];
    for role in of_kind(&docs, "ClusterRole").into_iter().chain(of_kind(&docs, "Role")) {
        let name = role["metadata"]["name"].as_str().unwrap();
        for rule in role["rules"].as_array().unwrap() {
            let verbs: Vec<&str> = rule["verbs"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            let resources: Vec<&str> = rule["resources"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
            assert!(!verbs.contains(&"*") && !resources.contains(&"*"), "{name}: wildcards");
            let writes = verbs.iter().any(|v| !read.contains(v));
            if name.ends_with("router-gateway") {
                assert!(!writes, "{name}: the gateway never writes");
            } else if writes {
                assert!(
                    resources
                        .iter()
                        .all(|r| r.ends_with("/status") || *r == "leases" || (name.ends_with("router-controller") && *r == "events")),
                    "{name}: writes only status and leases (and the controller events), not {resources:?}"
                );
            }
            if resources.contains(&"leases") {
                assert_eq!(role["kind"], "Role", "{name}: leases only in the component's namespace");
            }
        }
    }
}
