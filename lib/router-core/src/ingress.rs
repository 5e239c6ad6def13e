//! VPCIngress listeners: which ports the gateway opens for external traffic,
//! which listener on a port serves a request, and which routes attach to it.
//!
//! The rules are the Gateway API's. Listeners are taken oldest VPCIngress
//! first; a later listener that claims a port with another protocol, or a
//! hostname another listener on its port already serves, is not programmed
//! and says which listener won. A route attaches through `ingressRefs` to
//! every listener of the named VPCIngress whose hostnames intersect its own;
//! it is then served for the intersection only. Routes without `ingressRefs`
//! stay on the internal listener.

use std::{collections::BTreeMap, fmt, sync::Arc};

use router_api::v1alpha1::{ListenerProtocol, LocalObjectReference, TlsVersion, VPCIngress};

use crate::{
    Objects,
    route_table::{CompiledRoute, RouteTable},
    snapshot::{RoutePolicy, SnapshotReport, key_of},
};

/// namespace/name of a Secret a listener or service refers to.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SecretKey {
    pub namespace: String,
    pub name: String,
}

impl SecretKey {
    pub fn local(namespace: &str, r: &LocalObjectReference) -> Self {
        Self { namespace: namespace.to_owned(), name: r.name.clone() }
    }
}

impl fmt::Display for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// TLS termination settings of a listener; the Secrets are turned into
/// certificates by the proxy, which knows how to read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTlsPlan {
    /// SNI picks among these; the first is the default.
    pub certificates: Vec<SecretKey>,
    pub min_version: TlsVersion,
    /// Client certificates must be signed by the CA in this Secret's `ca.crt`.
    pub client_ca: Option<SecretKey>,
}

/// One programmed listener with the routes attached to it.
#[derive(Debug)]
pub struct Listener {
    /// `namespace/ingress/listener`, for logs, metrics and status.
    pub label: Arc<str>,
    pub port: u16,
    pub protocol: ListenerProtocol,
    /// Lower-case; empty serves every host.
    pub hostnames: Vec<String>,
    pub tls: Option<ListenerTlsPlan>,
    pub routes: RouteTable<RoutePolicy>,
    pub attached_routes: usize,
}

/// The listeners that share one port (all of one protocol).
#[derive(Debug)]
pub struct PortListeners {
    pub protocol: ListenerProtocol,
    pub listeners: Vec<Arc<Listener>>,
}

impl PortListeners {
    /// The listener for a host (a request's Host or a TLS client's SNI): an
    /// exact hostname first, then the most specific wildcard, then a listener
    /// without hostnames.
    pub fn select(&self, host: Option<&str>) -> Option<&Arc<Listener>> {
        let host = host.unwrap_or_default();
        let mut best: Option<(usize, &Arc<Listener>)> = None;
        for l in &self.listeners {
            let rank = if l.hostnames.is_empty() {
                1
            } else if l.hostnames.iter().any(|h| h == host) {
                usize::MAX
            } else if let Some(len) = l.hostnames.iter().filter(|h| wildcard_covers(h, host)).map(|h| h.len() + 1).max() {
                len
            } else {
                continue;
            };
            if best.is_none_or(|(r, _)| rank > r) {
                best = Some((rank, l));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// Every programmed listener, by port.
#[derive(Debug, Default)]
pub struct IngressTable {
    pub ports: BTreeMap<u16, PortListeners>,
}

/// What the gateway found about one listener (for `/config` and status).
#[derive(Debug, Default, Clone)]
pub struct ListenerReport {
    pub port: u16,
    pub programmed: bool,
    pub attached_routes: usize,
    pub problems: Vec<String>,
}

/// Whether the wildcard `pattern` (`*.example.com`) covers `host`, an exact
/// name or a narrower wildcard. Wildcards cover one or more labels, as route hostnames do.
pub fn wildcard_covers(pattern: &str, host: &str) -> bool {
    let Some(suffix) = pattern.strip_prefix("*.") else { return false };
    let host = host.strip_prefix("*.").unwrap_or(host);
    host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
}

/// The hostnames a route is served for on a listener, or None when they do
/// not intersect (the route does not attach there).
pub fn intersect_hostnames(listener: &[String], route: &[String]) -> Option<Vec<String>> {
    if listener.is_empty() {
        return Some(route.to_vec());
    }
    if route.is_empty() {
        return Some(listener.to_vec());
    }
    let mut out: Vec<String> = Vec::new();
    for l in listener {
        for r in route {
            let r = r.to_ascii_lowercase();
            // Equal, or the listener's wildcard covers the route's name: the route's (narrower) name.
            let common = if *l == r || wildcard_covers(l, &r) {
                Some(r)
            } else if wildcard_covers(&r, l) {
                Some(l.clone())
            } else {
                None
            };
            if let Some(h) = common.filter(|h| !out.contains(h)) {
                out.push(h);
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

struct Draft {
    ingress: (String, String),
    listener: Listener,
    attached: Vec<CompiledRoute<RoutePolicy>>,
}

/// Collects listeners and attaches routes while a snapshot is built.
pub(crate) struct IngressBuilder {
    drafts: Vec<Draft>,
    ingresses: Vec<(String, String)>,
}

fn protocol_name(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Http => "HTTP",
        ListenerProtocol::Https => "HTTPS",
    }
}

impl IngressBuilder {
    /// Takes listeners oldest VPCIngress first; conflicts and unusable ports are
    /// reported on the losing listener. `reserved_ports` are the gateway's own.
    pub(crate) fn new(
        ingresses: Objects<'_, VPCIngress>,
        vpcs: &[(String, String)],
        reserved_ports: &[u16],
        report: &mut SnapshotReport,
    ) -> Self {
        let mut sorted: Vec<&VPCIngress> = ingresses.iter().collect();
        sorted.sort_by_key(|i| (i.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |t| t.0.as_second()), key_of(&i.metadata)));
        let mut drafts: Vec<Draft> = Vec::new();
        let mut known = Vec::new();
        for ingress in sorted {
            let key = key_of(&ingress.metadata);
            let ingress_label = format!("{}/{}", key.0, key.1);
            let vpc = (key.0.clone(), ingress.spec.vpc_ref.name.clone());
            let vpc_found = vpcs.contains(&vpc);
            report.ingresses.insert(
                ingress_label.clone(),
                if vpc_found { Vec::new() } else { vec![format!("VPC {}/{} not found; no listener is programmed", vpc.0, vpc.1)] },
            );
            known.push(key.clone());
            for l in &ingress.spec.listeners {
                let label = format!("{ingress_label}/{}", l.name);
                let mut r = ListenerReport { port: u16::try_from(l.port).unwrap_or(0), ..Default::default() };
                let hostnames: Vec<String> = l.hostnames.iter().map(|h| h.to_ascii_lowercase()).collect();
                let conflict = if !vpc_found {
                    Some("not programmed: the VPCIngress's VPC does not exist".to_owned())
                } else if r.port == 0 {
                    Some(format!("port {} is not a TCP port", l.port))
                } else if reserved_ports.contains(&r.port) {
                    Some(format!("port {} is used by the gateway itself (internal, TLS or admin listener); choose another port", r.port))
                } else {
                    drafts.iter().filter(|d| d.listener.port == r.port).find_map(|d| {
                        if d.listener.protocol != l.protocol {
                            Some(format!(
                                "protocol conflict: port {} is already {} for listener {}",
                                r.port,
                                protocol_name(d.listener.protocol),
                                d.listener.label
                            ))
                        } else if d.listener.hostnames.is_empty() && hostnames.is_empty() {
                            Some(format!("hostname conflict: listener {} already serves every host on port {}", d.listener.label, r.port))
                        } else {
                            hostnames
                                .iter()
                                .find(|h| d.listener.hostnames.contains(h))
                                .map(|h| format!("hostname conflict: listener {} already serves {h} on port {}", d.listener.label, r.port))
                        }
                    })
                };
                match conflict {
                    Some(problem) => r.problems.push(problem),
                    None => {
                        r.programmed = true;
                        let tls = l.tls.as_ref().map(|t| ListenerTlsPlan {
                            certificates: t.certificate_refs.iter().map(|c| SecretKey::local(&key.0, c)).collect(),
                            min_version: t.min_version,
                            client_ca: t.client_validation.as_ref().map(|c| SecretKey::local(&key.0, &c.ca_certificate_ref)),
                        });
                        drafts.push(Draft {
                            ingress: key.clone(),
                            listener: Listener {
                                label: label.as_str().into(),
                                port: r.port,
                                protocol: l.protocol,
                                hostnames,
                                tls,
                                routes: RouteTable::default(),
                                attached_routes: 0,
                            },
                            attached: Vec::new(),
                        });
                    }
                }
                report.listeners.insert(label, r);
            }
        }
        Self { drafts, ingresses: known }
    }

    /// Where a route naming `refs` with `hostnames` attaches: the listeners (by
    /// position) and the hostnames each serves of it. What keeps it from
    /// attaching goes to `problems`. Depends on the listeners alone, so one
    /// route can be checked without the others.
    pub(crate) fn attachments(
        &self,
        namespace: &str,
        refs: &[LocalObjectReference],
        hostnames: &[String],
        problems: &mut Vec<String>,
    ) -> Vec<(usize, Vec<String>)> {
        let mut found = Vec::new();
        for r in refs {
            let key = (namespace.to_owned(), r.name.clone());
            if !self.ingresses.contains(&key) {
                problems.push(format!("VPCIngress {namespace}/{} not found; not attached to it", r.name));
                continue;
            }
            let before = found.len();
            for (i, d) in self.drafts.iter().enumerate().filter(|(_, d)| d.ingress == key) {
                if let Some(served) = intersect_hostnames(&d.listener.hostnames, hostnames) {
                    found.push((i, served));
                }
            }
            if found.len() == before {
                problems.push(format!(
                    "no programmed listener of VPCIngress {namespace}/{} accepts the route's hostnames {hostnames:?}",
                    r.name
                ));
            }
        }
        found
    }

    /// The label of the listener at `position`.
    pub(crate) fn label(&self, position: usize) -> &Arc<str> {
        &self.drafts[position].listener.label
    }

    /// Attaches `route` where [`IngressBuilder::attachments`] found it belongs.
    pub(crate) fn attach(&mut self, attachments: Vec<(usize, Vec<String>)>, route: &CompiledRoute<RoutePolicy>) {
        for (i, hostnames) in attachments {
            self.drafts[i].attached.push(CompiledRoute { hostnames, rules: route.rules.clone() });
        }
    }

    pub(crate) fn finish(self, report: &mut SnapshotReport) -> IngressTable {
        let mut table = IngressTable::default();
        for d in self.drafts {
            let mut listener = d.listener;
            listener.attached_routes = d.attached.len();
            listener.routes = RouteTable::compile(&d.attached);
            if let Some(r) = report.listeners.get_mut(&*listener.label) {
                r.attached_routes = listener.attached_routes;
            }
            table
                .ports
                .entry(listener.port)
                .or_insert_with(|| PortListeners { protocol: listener.protocol, listeners: Vec::new() })
                .listeners
                .push(Arc::new(listener));
        }
        table
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|h| (*h).to_owned()).collect()
    }

    #[test]
    fn wildcards_cover_subdomains_not_the_apex() {
        assert!(wildcard_covers("*.example.com", "a.example.com"));
        assert!(wildcard_covers("*.example.com", "a.b.example.com"));
        assert!(wildcard_covers("*.example.com", "*.a.example.com"));
        assert!(!wildcard_covers("*.example.com", "example.com"));
        assert!(!wildcard_covers("*.example.com", "badexample.com"));
        assert!(!wildcard_covers("example.com", "a.example.com"));
    }

    #[test]
    fn hostname_intersection_follows_the_gateway_api() {
        assert_eq!(intersect_hostnames(&[], &s(&["a.io"])), Some(s(&["a.io"])));
        assert_eq!(intersect_hostnames(&s(&["a.io"]), &[]), Some(s(&["a.io"])));
        assert_eq!(intersect_hostnames(&s(&["*.a.io"]), &s(&["x.a.io", "b.io"])), Some(s(&["x.a.io"])));
        assert_eq!(intersect_hostnames(&s(&["x.a.io"]), &s(&["*.a.io"])), Some(s(&["x.a.io"])));
        assert_eq!(intersect_hostnames(&s(&["*.a.io"]), &s(&["*.x.a.io"])), Some(s(&["*.x.a.io"])));
        assert_eq!(intersect_hostnames(&s(&["a.io"]), &s(&["b.io"])), None);
        assert_eq!(intersect_hostnames(&s(&["a.io"]), &s(&["A.IO"])), Some(s(&["a.io"])));
    }

    fn listener(label: &str, hostnames: &[&str]) -> Arc<Listener> {
        Arc::new(Listener {
            label: label.into(),
            port: 8443,
            protocol: ListenerProtocol::Https,
            hostnames: s(hostnames),
            tls: None,
            routes: RouteTable::default(),
            attached_routes: 0,
        })
    }

    #[test]
    fn the_most_specific_listener_serves_a_host() {
        let port = PortListeners {
            protocol: ListenerProtocol::Https,
            listeners: vec![
                listener("any", &[]),
                listener("wild", &["*.example.com"]),
                listener("deep", &["*.api.example.com"]),
                listener("exact", &["www.example.com"]),
            ],
        };
        let pick = |h: Option<&str>| port.select(h).map(|l| l.label.to_string());
        assert_eq!(pick(Some("www.example.com")).as_deref(), Some("exact"));
        assert_eq!(pick(Some("v1.api.example.com")).as_deref(), Some("deep"));
        assert_eq!(pick(Some("shop.example.com")).as_deref(), Some("wild"));
        assert_eq!(pick(Some("other.org")).as_deref(), Some("any"));
        assert_eq!(pick(None).as_deref(), Some("any"));
        let no_catch_all = PortListeners { protocol: ListenerProtocol::Https, listeners: vec![listener("exact", &["www.example.com"])] };
        assert!(no_catch_all.select(Some("other.org")).is_none());
    }

    fn object<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).expect("valid test object")
    }

    fn route(name: &str, ingress_refs: &[&str], hostnames: &[&str]) -> router_api::v1alpha1::VPCRoute {
        let refs: Vec<_> = ingress_refs.iter().map(|r| serde_json::json!({"name": r})).collect();
        object(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ingressRefs": refs, "hostnames": hostnames, "destinations": [{"vpcServiceRef": {"name": "missing"}}]}
        }))
    }

    #[test]
    fn listeners_conflicts_and_route_attachment_in_a_snapshot() {
        use crate::{EndpointStore, RequestView, Snapshot, SnapshotInput};
        let vpc: router_api::galactic::VPC = object(serde_json::json!({
            "apiVersion": "galactic.datumapis.com/v1alpha", "kind": "VPC",
            "metadata": {"name": "vpc", "namespace": "default"}, "spec": {"networks": ["10.0.0.0/8"]}
        }));
        let ingress = |name: &str, vpc: &str, listeners: serde_json::Value| -> VPCIngress {
            object(serde_json::json!({
                "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCIngress",
                "metadata": {"name": name, "namespace": "default"},
                "spec": {"vpcRef": {"name": vpc}, "listeners": listeners}
            }))
        };
        let tls = serde_json::json!({"certificateRefs": [{"name": "cert"}], "clientValidation": {"caCertificateRef": {"name": "ca"}}});
        let ingresses = [
            ingress(
                "public",
                "vpc",
                serde_json::json!([
                    {"name": "https", "port": 8443, "protocol": "HTTPS", "hostnames": ["*.example.com"], "tls": tls},
                    {"name": "reserved", "port": 9090, "protocol": "HTTP"},
                ]),
            ),
            ingress(
                "zz-late",
                "vpc",
                serde_json::json!([
                    {"name": "plain", "port": 8443, "protocol": "HTTP"},
                    {"name": "dup", "port": 8443, "protocol": "HTTPS", "hostnames": ["*.example.com"], "tls": tls},
                    {"name": "other", "port": 8443, "protocol": "HTTPS", "hostnames": ["other.org"], "tls": tls},
                ]),
            ),
            ingress("lost", "no-such-vpc", serde_json::json!([{"name": "http", "port": 8081, "protocol": "HTTP"}])),
        ];
        let routes = [
            route("api", &["public"], &["api.example.com"]),
            route("everywhere", &["public", "zz-late"], &[]),
            route("dangling", &["nope"], &[]),
            route("elsewhere", &["public"], &["api.example.net"]),
            route("internal", &[], &["api.example.com"]),
        ];
        let vpcs = [vpc];
        let input = SnapshotInput {
            routes: (&routes).into(),
            vpcs: (&vpcs).into(),
            ingresses: (&ingresses).into(),
            reserved_ports: &[8080, 9090],
            ..Default::default()
        };
        let s = Snapshot::build(input, &EndpointStore::default());
        assert_eq!(format!("{:?}", Snapshot::report(input)), format!("{:?}", s.report), "the report-only build reports the same");
        let l = |name: &str| s.report.listeners.get(name).cloned().unwrap_or_else(|| panic!("{name} reported"));

        assert!(l("default/public/https").programmed && l("default/public/https").problems.is_empty());
        assert!(l("default/public/reserved").problems[0].contains("used by the gateway itself"));
        assert!(
            l("default/zz-late/plain").problems[0]
                .contains("protocol conflict: port 8443 is already HTTPS for listener default/public/https")
        );
        assert!(
            l("default/zz-late/dup").problems[0].contains("hostname conflict: listener default/public/https already serves *.example.com")
        );
        assert!(l("default/zz-late/other").programmed, "another hostname on the same port and protocol is fine");
        assert!(!l("default/lost/http").programmed);
        assert!(s.report.ingresses["default/lost"][0].contains("VPC default/no-such-vpc not found"));

        assert_eq!(l("default/public/https").attached_routes, 2, "api and everywhere");
        assert_eq!(l("default/zz-late/other").attached_routes, 1, "everywhere");
        let problems = |r: &str| s.report.routes.iter().find(|(k, _)| k.name == r).map(|(_, p)| p.join("; ")).unwrap();
        assert!(problems("dangling").contains("VPCIngress default/nope not found"));
        assert!(problems("elsewhere").contains("no programmed listener of VPCIngress default/public accepts"));
        let port = &s.ingress.ports[&8443];
        assert_eq!(port.protocol, ListenerProtocol::Https);
        let https = port.select(Some("api.example.com")).unwrap();
        assert_eq!(https.tls.as_ref().unwrap().client_ca.as_ref().unwrap().to_string(), "default/ca");
        let headers = http::HeaderMap::new();
        let view = |host| RequestView { host, path: "/", query: None, method: &http::Method::GET, headers: &headers };
        let served = |table: &RouteTable<RoutePolicy>, host| table.lookup(&view(host)).map(|r| r.action.key.name.clone());
        assert_eq!(served(&https.routes, "api.example.com").as_deref(), Some("api"));
        assert_eq!(served(&https.routes, "www.example.com").as_deref(), Some("everywhere"), "the listener's hostnames, intersected");
        assert_eq!(served(&https.routes, "api.example.net"), None);
        assert_eq!(
            served(&s.routes, "api.example.com").as_deref(),
            Some("internal"),
            "routes with ingressRefs stay off the internal listener"
        );
        assert_eq!(s.route_count, 5, "every compiled route counts as served");
    }
}
