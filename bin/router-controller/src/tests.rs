//! Status logic, world in → desired status out, for every condition reason the controller writes.

use k8s_openapi::{apimachinery::pkg::apis::meta::v1::Condition, jiff::Timestamp};
use router_api::v1alpha1::{VPCRouteStatus, condition_types as types, reasons};
use serde_json::{Value, json};

use crate::{
    binding, objects, routes,
    world::{Invalid, World},
};

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> T {
    serde_json::from_value(v).expect("valid test object")
}

fn now() -> Timestamp {
    Timestamp::from_second(1_800_000_000).unwrap()
}

fn meta(name: &str) -> Value {
    json!({"name": name, "namespace": "default", "generation": 2})
}

fn vpc() -> Value {
    json!({"apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC", "metadata": meta("vpc"),
           "spec": {"networks": ["10.0.0.0/8"]}, "status": {"ready": true, "identifier": "0a1b2c3d4e5f"}})
}

fn attachment(name: &str, ip: &str) -> Value {
    json!({"apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPCAttachment", "metadata": meta(name),
           "spec": {"vpc": {"name": "vpc"}, "interface": {"name": "galactic0", "addresses": [format!("{ip}/24")]}},
           "status": {"ready": true, "identifier": "1f2e"}})
}

fn service(name: &str, extra: Value) -> Value {
    let mut spec = json!({"vpcAttachmentRef": {"name": "att"}, "port": 8080, "protocol": "HTTP"});
    spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService", "metadata": meta(name), "spec": spec,
           "status": {"readyEndpoints": 2}})
}

fn route(name: &str, created: &str, spec: Value) -> Value {
    json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
           "metadata": {"name": name, "namespace": "default", "generation": 2, "creationTimestamp": created}, "spec": spec})
}

fn base() -> World {
    World {
        vpcs: vec![obj(vpc())],
        attachments: vec![obj(attachment("att", "10.0.0.1"))],
        services: vec![obj(service("api", json!({})))],
        ..Default::default()
    }
}

fn cond<'a>(conditions: &'a [Condition], t: &str) -> (&'a str, &'a str) {
    let c = conditions.iter().find(|c| c.type_ == t).unwrap_or_else(|| panic!("{t} present"));
    (c.status.as_str(), c.reason.as_str())
}

fn route_status(world: &World, name: &str) -> VPCRouteStatus {
    let snapshot = world.report();
    let shadows = routes::shadowing(&world.routes, &world.memo);
    let r = world.routes.iter().find(|r| r.metadata.name.as_deref() == Some(name)).unwrap();
    routes::desired(r, world, &snapshot, &shadows, now()).expect("a first write")
}

#[test]
fn route_conditions_table() {
    let t0 = "2026-01-01T00:00:00Z";
    let mut world = base();
    world.ingresses = vec![obj(json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress", "metadata": meta("public"),
        "spec": {"vpcRef": {"name": "vpc"}, "listeners": [{"name": "http", "port": 8000, "protocol": "HTTP", "hostnames": ["a.example.com"]}]}}))];
    world.routes = vec![
        obj(route(
            "good",
            t0,
            json!({"hostnames": ["good.example.com"], "destinations": [{"vpcServiceRef": {"name": "api"}, "weight": 3}]}),
        )),
        obj(route("dangling", t0, json!({"hostnames": ["d.example.com"], "destinations": [{"vpcServiceRef": {"name": "gone"}}]}))),
        obj(route("bad-regex", t0, json!({"match": {"pathRegex": "(unclosed"}, "destinations": [{"vpcServiceRef": {"name": "api"}}]}))),
        obj(route(
            "elsewhere",
            t0,
            json!({"ingressRefs": [{"name": "public"}], "hostnames": ["b.example.com"], "destinations": [{"vpcServiceRef": {"name": "api"}}]}),
        )),
        obj(route("no-ingress", t0, json!({"ingressRefs": [{"name": "nope"}], "destinations": [{"vpcServiceRef": {"name": "api"}}]}))),
        obj(route(
            "older",
            "2025-01-01T00:00:00Z",
            json!({"hostnames": ["s.example.com"], "matches": [{"pathPrefix": "/v1"}], "destinations": [{"vpcServiceRef": {"name": "api"}}]}),
        )),
        obj(route(
            "newer",
            t0,
            json!({"hostnames": ["s.example.com"], "matches": [{"pathPrefix": "/v1/"}, {"path": "/x"}], "destinations": [{"vpcServiceRef": {"name": "api"}}]}),
        )),
        obj(route(
            "copy",
            t0,
            json!({"hostnames": ["s.example.com"], "match": {"pathPrefix": "/v1"}, "destinations": [{"vpcServiceRef": {"name": "api"}}]}),
        )),
    ];
    // (route, Accepted, ResolvedRefs, Programmed), each (status, reason).
    let table = [
        ("good", ("True", reasons::ACCEPTED), ("True", reasons::RESOLVED_REFS), ("True", reasons::PROGRAMMED)),
        ("dangling", ("True", reasons::ACCEPTED), ("False", reasons::REF_NOT_FOUND), ("True", reasons::PROGRAMMED)),
        ("bad-regex", ("False", reasons::INVALID), ("True", reasons::RESOLVED_REFS), ("False", reasons::PENDING)),
        ("elsewhere", ("False", reasons::NO_MATCHING_LISTENER), ("True", reasons::RESOLVED_REFS), ("False", reasons::PENDING)),
        ("no-ingress", ("False", reasons::NO_MATCHING_LISTENER), ("False", reasons::REF_NOT_FOUND), ("False", reasons::PENDING)),
        ("older", ("True", reasons::ACCEPTED), ("True", reasons::RESOLVED_REFS), ("True", reasons::PROGRAMMED)),
        ("newer", ("True", reasons::ACCEPTED), ("True", reasons::RESOLVED_REFS), ("True", reasons::PROGRAMMED)),
        ("copy", ("True", reasons::ACCEPTED), ("True", reasons::RESOLVED_REFS), ("False", reasons::SHADOWED)),
    ];
    for (name, accepted, resolved, programmed) in table {
        let s = route_status(&world, name);
        assert_eq!(cond(&s.conditions, types::ACCEPTED), accepted, "{name} Accepted");
        assert_eq!(cond(&s.conditions, types::RESOLVED_REFS), resolved, "{name} ResolvedRefs");
        assert_eq!(cond(&s.conditions, types::PROGRAMMED), programmed, "{name} Programmed");
        assert!(s.conditions.iter().all(|c| c.observed_generation == Some(2)));
    }
    let copy = route_status(&world, "copy");
    let msg = &copy.conditions.iter().find(|c| c.type_ == types::PROGRAMMED).unwrap().message;
    assert!(msg.contains("default/older"), "the loser names the winner: {msg}");
    let newer = route_status(&world, "newer");
    let msg = &newer.conditions.iter().find(|c| c.type_ == types::PROGRAMMED).unwrap().message;
    assert!(msg.contains("match 0 is shadowed by VPCRoute default/older"), "a partly shadowed route says which match: {msg}");
    let good = route_status(&world, "good");
    assert_eq!((good.destinations[0].weight, good.destinations[0].ready_endpoints), (3, 2));
    assert!(cond(&route_status(&world, "dangling").conditions, types::RESOLVED_REFS) == ("False", reasons::REF_NOT_FOUND));

    // Stored as computed: nothing to write.
    let mut stored = world.routes[0].clone();
    stored.status = Some(good);
    let snapshot = world.report();
    assert!(routes::desired(&stored, &world, &snapshot, &routes::shadowing(&world.routes, &world.memo), now()).is_none());
}

#[test]
fn service_ingress_and_egress_conditions() {
    let mut world = base();
    world
        .services
        .push(obj(service("lost", json!({"vpcAttachmentRef": {"name": "missing"}, "tls": {"caCertificateRef": {"name": "no-ca"}}}))));
    let snapshot = world.report();
    let c = objects::service(&world.services[0], &world, &snapshot, now()).unwrap();
    assert_eq!(
        (cond(&c, types::ACCEPTED), cond(&c, types::RESOLVED_REFS)),
        (("True", reasons::ACCEPTED), ("True", reasons::RESOLVED_REFS))
    );
    let c = objects::service(&world.services[1], &world, &snapshot, now()).unwrap();
    assert_eq!(cond(&c, types::RESOLVED_REFS), ("False", reasons::REF_NOT_FOUND));
    let msg = &c.iter().find(|c| c.type_ == types::RESOLVED_REFS).unwrap().message;
    assert!(msg.contains("VPCAttachment default/missing") && msg.contains("Secret default/no-ca not found"), "{msg}");

    let ingress = |name: &str, vpc: &str, listeners: Value| -> Value {
        json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress", "metadata": meta(name), "spec": {"vpcRef": {"name": vpc}, "listeners": listeners}})
    };
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["api.example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
    world.secrets = vec![
        obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("cert"), "type": "kubernetes.io/tls",
            "stringData": {"tls.crt": cert.pem(), "tls.key": key.serialize_pem()}})),
        // "foo" and "bar": present, but not PEM.
        obj(json!({"apiVersion": "v1", "kind": "Secret", "metadata": meta("junk"), "type": "kubernetes.io/tls",
            "data": {"tls.crt": "Zm9v", "tls.key": "YmFy"}})),
    ];
    world.ingresses = vec![
        obj(ingress(
            "a-first",
            "vpc",
            json!([{"name": "https", "port": 8443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "cert"}]}}]),
        )),
        obj(ingress(
            "b-second",
            "vpc",
            json!([{"name": "plain", "port": 8443, "protocol": "HTTP"}, {"name": "ok", "port": 8000, "protocol": "HTTP"}]),
        )),
        obj(ingress(
            "c-nowhere",
            "no-vpc",
            json!([{"name": "https", "port": 9443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "nocert"}]}}]),
        )),
        obj(ingress(
            "d-junk",
            "vpc",
            json!([{"name": "https", "port": 7443, "protocol": "HTTPS", "tls": {"certificateRefs": [{"name": "junk"}]}}]),
        )),
    ];
    world.index.take(); // changed after it was read
    let snapshot = world.report();
    let first = objects::ingress(&world.ingresses[0], &world, &snapshot, now()).unwrap();
    assert_eq!(cond(&first.conditions, types::ACCEPTED), ("True", reasons::ACCEPTED));
    assert_eq!(cond(&first.conditions, types::RESOLVED_REFS), ("True", reasons::RESOLVED_REFS));
    assert_eq!(cond(&first.conditions, types::PROGRAMMED), ("True", reasons::PROGRAMMED));
    let second = objects::ingress(&world.ingresses[1], &world, &snapshot, now()).unwrap();
    assert_eq!(cond(&second.conditions, types::PROGRAMMED), ("True", reasons::CONFLICTED), "one of two listeners programmed");
    assert_eq!(cond(&second.listeners[0].conditions, types::PROGRAMMED), ("False", reasons::CONFLICTED));
    assert!(second.listeners[0].conditions[0].message.contains("default/a-first/https"), "the winner is named");
    assert_eq!(cond(&second.listeners[1].conditions, types::PROGRAMMED), ("True", reasons::PROGRAMMED));
    let nowhere = objects::ingress(&world.ingresses[2], &world, &snapshot, now()).unwrap();
    assert_eq!(cond(&nowhere.conditions, types::ACCEPTED), ("False", reasons::REF_NOT_FOUND));
    assert_eq!(cond(&nowhere.conditions, types::RESOLVED_REFS), ("False", reasons::REF_NOT_FOUND));
    assert_eq!(cond(&nowhere.conditions, types::PROGRAMMED), ("False", reasons::PENDING));
    assert_eq!(cond(&nowhere.listeners[0].conditions, types::PROGRAMMED), ("False", reasons::PENDING));
    let junk = objects::ingress(&world.ingresses[3], &world, &snapshot, now()).unwrap();
    assert_eq!(cond(&junk.conditions, types::RESOLVED_REFS), ("False", reasons::INVALID_CERTIFICATE));
    assert!(junk.conditions.iter().any(|c| c.message.contains("Secret default/junk")), "the broken Secret is named");

    let egress = |name: &str, vpc: &str| -> Value {
        json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": meta(name),
               "spec": {"vpcRef": {"name": vpc}, "defaultAction": "Deny", "rules": [{"name": "r", "to": {"hosts": ["a.example.com"]}, "action": "Allow"}]}})
    };
    world.egress = vec![obj(egress("e1", "vpc")), obj(egress("e2", "vpc")), obj(egress("e3", "no-vpc"))];
    let snapshot = world.report();
    let expect = [
        (("True", reasons::ACCEPTED), ("True", reasons::PROGRAMMED)),
        (("True", reasons::ACCEPTED), ("False", reasons::CONFLICTED)),
        (("False", reasons::REF_NOT_FOUND), ("False", reasons::PENDING)),
    ];
    for (e, (accepted, programmed)) in world.egress.iter().zip(expect) {
        let s = objects::egress(e, &world, &snapshot, now()).unwrap();
        assert_eq!(
            (cond(&s.conditions, types::ACCEPTED), cond(&s.conditions, types::PROGRAMMED)),
            (accepted, programmed),
            "{:?}",
            e.metadata.name
        );
    }
}

fn pod(name: &str, annotated: bool, ready: bool) -> Value {
    let mut p = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "api"}},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}});
    if annotated {
        p["metadata"]["annotations"] = json!({"k8s.v1alpha.galactic.datumapis.com/vpc-attachment": "att"});
    }
    p
}

#[test]
fn service_binding_sync_table() {
    let mut world = base();
    world.kube_services = vec![
        obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("api"), "spec": {"selector": {"app": "api"}}})),
        obj(json!({"apiVersion": "v1", "kind": "Service", "metadata": meta("headless"), "spec": {}})),
    ];
    let mut on_node = pod("api-0", true, true);
    on_node["spec"] = json!({"nodeName": "node-a", "containers": []});
    world.pods = vec![obj(on_node), obj(pod("api-1", true, false)), obj(pod("api-2", false, true))];
    world.nodes = vec![obj(json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "us-south1-a", "topology.kubernetes.io/region": "us-south1"}}}))];
    // api-0's address comes from its Galactic EndpointSlice (tenant id of VPC 0a1b2c3d4e5f, attachment 1f2e).
    world.endpoint_slices = vec![obj(json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "addressType": "IPv6",
        "metadata": {"name": "api-0-galactic", "namespace": "default", "labels": {"galactic.datum.net/tenant-id": router_api::galactic::tenant_id("0a1b2c3d4e5f", "1f2e").unwrap()}},
        "endpoints": [{"addresses": ["2001:db8::5"], "targetRef": {"kind": "Pod", "name": "api-0"}}]}))];
    let binding = |name: &str, service: &str, extra: Value| -> router_api::v1alpha1::ServiceBinding {
        let mut spec = json!({"serviceRef": {"name": service}, "vpcServiceRef": {"name": "api"}});
        spec.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        obj(json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "ServiceBinding", "metadata": meta(name), "spec": spec}))
    };

    let b = binding("api", "api", json!({"portMappings": [{"servicePort": 80, "vpcPort": 9000}]}));
    let s = binding::desired(&b, &world, now()).unwrap();
    assert_eq!(cond(&s.conditions, types::RESOLVED_REFS), ("True", reasons::RESOLVED_REFS));
    assert_eq!(cond(&s.conditions, types::SYNCED), ("True", reasons::UNATTACHED_PODS));
    assert_eq!(s.unattached_pods, ["api-2"]);
    let eps: Vec<(&str, i32, Option<&str>, bool)> =
        s.endpoints.iter().map(|e| (e.address.as_str(), e.port, e.pod.as_deref(), e.ready)).collect();
    assert_eq!(
        eps,
        [("2001:db8::5", 9000, Some("api-0"), true), ("10.0.0.1", 9000, Some("api-1"), false)],
        "slice address first, then the attachment's"
    );
    assert_eq!(s.ready_endpoints, 1);
    assert!(s.last_sync_time.is_some());
    let zones: Vec<Option<&str>> = s.endpoints.iter().map(|e| e.zone.as_deref()).collect();
    assert_eq!(zones, [Some("us-south1-a"), None], "a pod's endpoint is where its node is");
    assert_eq!(s.endpoints[0].region.as_deref(), Some("us-south1"));

    let mut stored = b.clone();
    stored.status = Some(s.clone());
    assert!(binding::desired(&stored, &world, now()).is_none(), "unchanged: no write");

    // autoSync: false keeps the first sync even as pods change.
    let mut once = binding("once", "api", json!({"autoSync": false}));
    once.status = Some(s);
    world.pods.push(obj(pod("api-3", true, true)));
    let kept = binding::desired(&once, &world, now()).unwrap();
    assert_eq!(cond(&kept.conditions, types::SYNCED), ("True", reasons::SYNCED));
    assert_eq!(kept.endpoints.len(), 2, "the new pod is not synced");

    let no_selector = binding::desired(&binding("h", "headless", json!({})), &world, now()).unwrap();
    assert_eq!(cond(&no_selector.conditions, types::SYNCED), ("False", reasons::INVALID));
    let missing = binding::desired(&binding("m", "nope", json!({})), &world, now()).unwrap();
    assert_eq!(cond(&missing.conditions, types::RESOLVED_REFS), ("False", reasons::REF_NOT_FOUND));
    assert_eq!(cond(&missing.conditions, types::SYNCED), ("False", reasons::REF_NOT_FOUND));
    world.pods.retain(|p| p.metadata.name.as_deref() != Some("api-2"));
    let clean = binding::desired(&binding("api", "api", json!({})), &world, now()).unwrap();
    assert_eq!(cond(&clean.conditions, types::SYNCED), ("True", reasons::SYNCED));
    assert!(clean.endpoints.iter().all(|e| e.port == 8080), "without mappings, the VPCService's port");
}

#[test]
fn secret_verdicts_are_kept_per_resource_version() {
    use router_api::v1alpha1::SecretUse;
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["a.example.com".to_owned()]).unwrap().self_signed(&key).unwrap();
    let secret = |rv: &str, crt: &str, k: &str| -> k8s_openapi::api::core::v1::Secret {
        obj(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": "cert", "namespace": "default", "resourceVersion": rv}, "stringData": {"tls.crt": crt, "tls.key": k}}))
    };
    let mut world = World { secrets: vec![secret("1", "junk", "junk")], ..Default::default() };
    let broken = world.secret_problem("default", "cert", SecretUse::Certificate).expect("junk is a problem");
    assert_eq!(broken.reason, reasons::INVALID_CERTIFICATE);
    // A new version is checked again; the verdict on the old one is dropped.
    world.secrets = vec![secret("2", &cert.pem(), &key.serialize_pem())];
    world.secret_checks.retain_current(&world.secrets);
    assert_eq!(world.secret_problem("default", "cert", SecretUse::Certificate), None);
    assert_eq!(world.secret_checks.len(), 1, "only the current version's verdict is kept");
}

/// Objects a server without CEL enforcement (1.24 without the gate) stored although they break a rule.
fn world_with_unenforced_rules() -> World {
    let t0 = "2026-01-01T00:00:00Z";
    let mut world = base();
    world.services.push(obj(service("both-refs", json!({"vpcAttachmentSelector": {"matchLabels": {"app": "x"}}}))));
    world.routes = vec![
        obj(route("good", t0, json!({"hostnames": ["g.example.com"], "destinations": [{"vpcServiceRef": {"name": "api"}}]}))),
        // Breaks "hashOn applies only to loadBalancing consistent-hash".
        obj(route(
            "hash-without-ch",
            t0,
            json!({"hostnames": ["h.example.com"], "hashOn": {"header": "x"}, "destinations": [{"vpcServiceRef": {"name": "api"}}]}),
        )),
    ];
    world.ingresses = vec![obj(
        json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress", "metadata": meta("plain-with-tls"),
        "spec": {"vpcRef": {"name": "vpc"}, "listeners": [{"name": "http", "port": 8000, "protocol": "HTTP", "tls": {"certificateRefs": [{"name": "c"}]}}]}}),
    )];
    world.egress = vec![obj(json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "VPCEgress", "metadata": meta("no-target"),
        "spec": {"vpcRef": {"name": "vpc"}, "rules": [{"name": "r", "to": {}, "action": "Allow"}]}}))];
    let verdicts = router_api::schema::Verdicts::for_router_kinds().unwrap();
    world.invalid = Invalid::of(&world, &verdicts);
    world
}

fn accepted_of(conditions: &[Condition]) -> (&str, &str, &str) {
    let c = conditions.iter().find(|c| c.type_ == types::ACCEPTED).expect("Accepted present");
    (c.status.as_str(), c.reason.as_str(), c.message.as_str())
}

#[test]
fn objects_breaking_rules_the_server_did_not_enforce_are_invalid_with_the_rule_message() {
    let world = world_with_unenforced_rules();
    let snapshot = world.report();

    let route = route_status(&world, "hash-without-ch");
    let (status, reason, message) = accepted_of(&route.conditions);
    assert_eq!((status, reason), ("False", reasons::INVALID));
    assert!(message.contains("hashOn applies only to loadBalancing consistent-hash"), "{message}");
    assert_eq!(cond(&route.conditions, types::PROGRAMMED), ("False", reasons::PENDING));
    assert_eq!(cond(&route_status(&world, "good").conditions, types::ACCEPTED), ("True", reasons::ACCEPTED), "the rest keeps working");

    let svc = world.services.iter().find(|s| s.metadata.name.as_deref() == Some("both-refs")).unwrap();
    let conditions = objects::service(svc, &world, &snapshot, now()).unwrap();
    let (status, reason, message) = accepted_of(&conditions);
    assert_eq!((status, reason), ("False", reasons::INVALID));
    assert!(message.contains("exactly one of vpcAttachmentRef or vpcAttachmentSelector"), "{message}");
    assert_eq!(cond(&objects::service(&world.services[0], &world, &snapshot, now()).unwrap(), types::ACCEPTED).0, "True");

    let ingress = objects::ingress(&world.ingresses[0], &world, &snapshot, now()).unwrap();
    let (status, reason, message) = accepted_of(&ingress.conditions);
    assert_eq!((status, reason), ("False", reasons::INVALID));
    assert!(message.contains("tls is required for protocol HTTPS and not allowed for HTTP"), "{message}");
    assert_eq!(cond(&ingress.conditions, types::PROGRAMMED).0, "False", "an invalid listener is not opened");

    let egress = objects::egress(&world.egress[0], &world, &snapshot, now()).unwrap();
    let (status, reason, message) = accepted_of(&egress.conditions);
    assert_eq!((status, reason), ("False", reasons::INVALID));
    assert!(message.contains("at least one of hosts and cidrs"), "{message}");
    assert_eq!(cond(&egress.conditions, types::PROGRAMMED), ("False", reasons::PENDING));
}

#[test]
fn invalid_objects_are_left_out_of_the_snapshot_like_the_gateways_leave_them_out() {
    let world = world_with_unenforced_rules();
    let snapshot = world.snapshot();
    assert_eq!(snapshot.route_count, 1, "only the valid route is compiled");
    assert!(snapshot.report.listeners.is_empty(), "the invalid VPCIngress opens no listener");
    assert!(!snapshot.services.keys().any(|k| k.name == "both-refs"));
}

#[test]
fn tunnel_bindings_accepted_conflicted_or_missing_their_vpcservice() {
    let tunnel = |name: &str, service: &str, created: &str| -> Value {
        json!({"apiVersion": "router.datum.net/v1alpha1", "kind": "TunnelBinding",
               "metadata": {"name": name, "namespace": "default", "generation": 2, "creationTimestamp": created},
               "spec": {"vpcServiceRef": {"name": service}, "target": {"host": "127.0.0.1", "port": 5173},
                        "connectors": [{"endpointId": "a".repeat(64)}]}})
    };
    let mut world = base();
    world.tunnels = vec![
        obj(tunnel("first", "api", "2026-01-01T00:00:00Z")),
        obj(tunnel("second", "api", "2026-02-01T00:00:00Z")),
        obj(tunnel("orphan", "gone", "2026-01-01T00:00:00Z")),
    ];
    let losers = router_api::v1alpha1::tunnel_conflicts(&world.tunnels);
    let status = |i: usize| objects::tunnel(&world.tunnels[i], &world, &losers, now()).unwrap();
    assert_eq!(cond(&status(0), types::ACCEPTED), ("True", reasons::ACCEPTED));
    assert_eq!(cond(&status(0), types::RESOLVED_REFS), ("True", reasons::RESOLVED_REFS));
    let second = status(1);
    assert_eq!(cond(&second, types::ACCEPTED), ("False", reasons::CONFLICTED));
    assert!(accepted_of(&second).2.contains("TunnelBinding default/first already serves"), "the loser names the winner");
    assert_eq!(cond(&status(2), types::RESOLVED_REFS), ("False", reasons::REF_NOT_FOUND));
    assert_eq!(status(0).len(), 2, "only the controller's two conditions: Ready is tunnel-gateway's");
}

#[test]
fn conditions_are_current_exactly_when_merging_changes_nothing() {
    use crate::world::{Desired, accepted, conditions_current, merge_conditions, not_programmed};
    let desired = || vec![accepted("accepted"), not_programmed()];
    let (stored, _) = merge_conditions(&[], desired(), Some(1), now());
    assert!(conditions_current(&stored, &desired(), Some(1)));
    assert!(!merge_conditions(&stored, desired(), Some(1), now()).1);
    let reversed: Vec<Condition> = stored.iter().rev().cloned().collect();
    assert!(conditions_current(&reversed, &desired(), Some(1)), "order is not a change");
    assert!(!conditions_current(&stored, &desired(), Some(2)), "a new generation is observed");
    assert!(!conditions_current(&stored[..1], &desired(), Some(1)), "a missing condition");
    let other = vec![accepted("accepted; note"), not_programmed()];
    assert!(!conditions_current(&stored, &other, Some(1)), "a new message");
    let flipped = vec![Desired { status: false, ..accepted("accepted") }, not_programmed()];
    assert!(!conditions_current(&stored, &flipped, Some(1)), "a new status");
}
