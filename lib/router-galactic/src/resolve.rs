//! VPCService → endpoints.
//!
//! The attachments a service names (by reference or selector, in its own
//! namespace) each contribute their interface addresses of the wanted family,
//! on the service's port. An endpoint is ready only when both its attachment
//! and the attachment's VPC say so: Galactic has not finished plumbing
//! anything else, and packets sent there would be dropped.

use std::net::IpAddr;

use router_api::{
    datum::{LOCATION_LABEL, Locality, Location},
    galactic::{VPC, VPCAttachment},
    v1alpha1::{AddressFamily, ServiceEndpoint, VPCService, VpcIdentity},
};

use crate::{SelectorError, interface_ip, selector_matches};

/// Something that kept part of a service from resolving; becomes a condition message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveProblem {
    #[error("VPCAttachment {0} not found")]
    AttachmentNotFound(String),
    #[error("vpcAttachmentSelector matches no VPCAttachment")]
    NoAttachmentSelected,
    #[error("vpcAttachmentSelector is invalid: {0}")]
    InvalidSelector(SelectorError),
    #[error("VPC {vpc} of VPCAttachment {attachment} not found")]
    VpcNotFound { attachment: String, vpc: String },
    #[error("VPCAttachment {attachment}: {message}")]
    BadAddress { attachment: String, message: String },
    #[error("the selected attachments belong to different VPCs ({0}); endpoints from all are used")]
    MixedVpcs(String),
    #[error("VPCAttachment {attachment} has no {family:?} address")]
    NoAddressOfFamily { attachment: String, family: AddressFamily },
}

/// What a VPCService resolves to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resolution {
    /// The VPC of the (first) attachment.
    pub vpc: Option<VpcIdentity>,
    /// Endpoints, IPv6 first (preferred), then by address.
    pub endpoints: Vec<ServiceEndpoint>,
    pub problems: Vec<ResolveProblem>,
}

impl Resolution {
    pub fn ready_endpoints(&self) -> usize {
        self.endpoints.iter().filter(|e| e.ready).count()
    }
}

/// Resolves `service` against every known attachment and VPC (any namespace;
/// only the service's own namespace is considered).
pub fn resolve_endpoints(service: &VPCService, attachments: &[VPCAttachment], vpcs: &[VPC], locations: &[Location]) -> Resolution {
    let namespace = service.metadata.namespace.as_deref().unwrap_or("default");
    let in_namespace = |a: &&VPCAttachment| a.metadata.namespace.as_deref().unwrap_or("default") == namespace;
    let mut out = Resolution::default();

    let selected: Vec<&VPCAttachment> = match (&service.spec.vpc_attachment_ref, &service.spec.vpc_attachment_selector) {
        (Some(r), _) => {
            let found: Vec<_> =
                attachments.iter().filter(in_namespace).filter(|a| a.metadata.name.as_deref() == Some(r.name.as_str())).collect();
            if found.is_empty() {
                out.problems.push(ResolveProblem::AttachmentNotFound(r.name.clone()));
            }
            found
        }
        (None, Some(sel)) => {
            let mut found = Vec::new();
            for a in attachments.iter().filter(in_namespace) {
                match selector_matches(sel, a.metadata.labels.as_ref()) {
                    Ok(true) => found.push(a),
                    Ok(false) => {}
                    Err(e) => {
                        out.problems.push(ResolveProblem::InvalidSelector(e));
                        return out;
                    }
                }
            }
            if found.is_empty() {
                out.problems.push(ResolveProblem::NoAttachmentSelected);
            }
            found
        }
        (None, None) => Vec::new(),
    };

    let family = service.spec.address_family;
    let mut vpc_names: Vec<String> = Vec::new();
    for att in selected {
        let att_name = att.metadata.name.clone().unwrap_or_default();
        let vpc_name = att.spec.vpc.name.clone().unwrap_or_default();
        let vpc_ns = att.vpc_namespace(namespace);
        let vpc = vpcs.iter().find(|v| {
            v.metadata.name.as_deref() == Some(vpc_name.as_str()) && v.metadata.namespace.as_deref().unwrap_or("default") == vpc_ns
        });
        let vpc_ready = match vpc {
            Some(v) => v.is_ready(),
            None => {
                out.problems.push(ResolveProblem::VpcNotFound { attachment: att_name.clone(), vpc: vpc_name.clone() });
                false
            }
        };
        if !vpc_names.contains(&vpc_name) {
            vpc_names.push(vpc_name.clone());
        }
        if out.vpc.is_none() {
            out.vpc = Some(VpcIdentity { name: vpc_name.clone(), identifier: vpc.and_then(|v| v.identifier()).map(str::to_owned) });
        }
        let ready = vpc_ready && att.is_ready();
        let locality = attachment_locality(att, namespace, locations);
        let mut contributed = false;
        for address in &att.spec.interface.addresses {
            let ip = match interface_ip(address) {
                Ok(ip) => ip,
                Err(e) => {
                    out.problems.push(ResolveProblem::BadAddress { attachment: att_name.clone(), message: e.to_string() });
                    continue;
                }
            };
            if !family_allows(family, ip) {
                continue;
            }
            contributed = true;
            out.endpoints.push(ServiceEndpoint {
                address: ip.to_string(),
                port: service.spec.port,
                attachment: Some(att_name.clone()),
                pod: None,
                ready,
                zone: locality.zone.clone(),
                region: locality.region.clone(),
                city_code: locality.city_code.clone(),
            });
        }
        if !contributed {
            out.problems.push(ResolveProblem::NoAddressOfFamily { attachment: att_name, family });
        }
    }
    if vpc_names.len() > 1 {
        out.problems.push(ResolveProblem::MixedVpcs(vpc_names.join(", ")));
    }
    out.endpoints.sort_by_key(|e| {
        let ip: Option<IpAddr> = e.address.parse().ok();
        (!ip.is_some_and(|ip| ip.is_ipv6()), ip, e.port)
    });
    out.endpoints.dedup_by(|a, b| a.address == b.address && a.port == b.port);
    out
}

/// Where an attachment is: its own topology labels (region, zone, city code),
/// then, for what they leave out, the Location its `networking.datumapis.com/location`
/// label names (`<namespace>/<name>`, or `<name>` in the attachment's namespace).
pub fn attachment_locality(att: &VPCAttachment, namespace: &str, locations: &[Location]) -> Locality {
    let labels = att.metadata.labels.as_ref();
    let own = Locality::from_map(|k| labels.and_then(|l| l.get(k)));
    let Some(named) = labels.and_then(|l| l.get(LOCATION_LABEL)) else { return own };
    let (ns, name) = named.split_once('/').unwrap_or((namespace, named.as_str()));
    let location =
        locations.iter().find(|l| l.metadata.name.as_deref() == Some(name) && l.metadata.namespace.as_deref().unwrap_or("default") == ns);
    own.or(location.map(Location::locality).unwrap_or_default())
}

/// Whether a VPCService of `family` uses an address.
pub fn family_allows(family: AddressFamily, ip: IpAddr) -> bool {
    match family {
        AddressFamily::DualStack => true,
        AddressFamily::IPv4 => ip.is_ipv4(),
        AddressFamily::IPv6 => ip.is_ipv6(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::{api::core::v1::ObjectReference, apimachinery::pkg::apis::meta::v1::LabelSelector};
    use router_api::{
        galactic::{AttachmentInterface, VPCAttachmentSpec, VPCAttachmentStatus, VPCSpec, VPCStatus},
        v1alpha1::{LocalObjectReference, VPCServiceSpec},
    };

    use super::*;

    fn vpc(name: &str, ready: bool) -> VPC {
        let mut v = VPC::new(name, VPCSpec { networks: vec!["10.0.0.0/8".into()] });
        v.metadata.namespace = Some("default".into());
        v.status = Some(VPCStatus { identifier: Some("0a1b2c3d4e5f".into()), ready });
        v
    }

    fn attachment(name: &str, vpc: &str, addresses: &[&str], ready: bool, app: &str) -> VPCAttachment {
        let mut a = VPCAttachment::new(
            name,
            VPCAttachmentSpec {
                vpc: ObjectReference { name: Some(vpc.into()), ..Default::default() },
                interface: AttachmentInterface { name: "galactic0".into(), addresses: addresses.iter().map(|s| s.to_string()).collect() },
                routes: None,
            },
        );
        a.metadata.namespace = Some("default".into());
        a.metadata.labels = Some(BTreeMap::from([("app".to_string(), app.to_string())]));
        a.status = Some(VPCAttachmentStatus { identifier: Some("1f2e".into()), ready });
        a
    }

    fn service(spec: VPCServiceSpec) -> VPCService {
        let mut s = VPCService::new("svc", spec);
        s.metadata.namespace = Some("default".into());
        s
    }

    /// An IPv4 service on port 80 selecting the attachments labelled `app: <app>`.
    fn selecting(app: &str) -> VPCService {
        service(VPCServiceSpec {
            vpc_attachment_selector: Some(LabelSelector {
                match_labels: Some(BTreeMap::from([("app".to_owned(), app.to_owned())])),
                ..Default::default()
            }),
            port: 80,
            address_family: AddressFamily::IPv4,
            ..Default::default()
        })
    }

    fn by_ref(name: &str, family: AddressFamily) -> VPCService {
        service(VPCServiceSpec {
            vpc_attachment_ref: Some(LocalObjectReference::new(name)),
            port: 8080,
            address_family: family,
            ..Default::default()
        })
    }

    #[test]
    fn dual_stack_lists_ipv6_first_on_the_service_port() {
        let r = resolve_endpoints(
            &by_ref("a", AddressFamily::DualStack),
            &[attachment("a", "v", &["10.1.1.1/24", "2001:10:1:1::1/64"], true, "x")],
            &[vpc("v", true)],
            &[],
        );
        let got: Vec<_> = r.endpoints.iter().map(|e| (e.address.as_str(), e.port, e.ready)).collect();
        assert_eq!(got, [("2001:10:1:1::1", 8080, true), ("10.1.1.1", 8080, true)]);
        assert_eq!(r.vpc.unwrap().identifier.as_deref(), Some("0a1b2c3d4e5f"));
        assert!(r.problems.is_empty());
    }

    #[test]
    fn address_family_filters() {
        let atts = [attachment("a", "v", &["10.1.1.1/24", "2001:10:1:1::1/64"], true, "x")];
        let v4 = resolve_endpoints(&by_ref("a", AddressFamily::IPv4), &atts, &[vpc("v", true)], &[]);
        assert_eq!(v4.endpoints.len(), 1);
        assert_eq!(v4.endpoints[0].address, "10.1.1.1");
        let v6 = resolve_endpoints(&by_ref("a", AddressFamily::IPv6), &atts, &[vpc("v", true)], &[]);
        assert_eq!(v6.endpoints[0].address, "2001:10:1:1::1");
    }

    #[test]
    fn only_ready_attachment_in_ready_vpc_gives_ready_endpoints() {
        for (att_ready, vpc_ready, want) in [(true, true, true), (false, true, false), (true, false, false)] {
            let r = resolve_endpoints(
                &by_ref("a", AddressFamily::IPv4),
                &[attachment("a", "v", &["10.1.1.1/24"], att_ready, "x")],
                &[vpc("v", vpc_ready)],
                &[],
            );
            assert_eq!(r.endpoints[0].ready, want, "attachment {att_ready} vpc {vpc_ready}");
        }
    }

    #[test]
    fn selector_collects_every_matching_attachment_in_the_namespace() {
        let svc = selecting("api");
        let mut elsewhere = attachment("c", "v", &["10.1.3.1/24"], true, "api");
        elsewhere.metadata.namespace = Some("other".into());
        let atts = [
            attachment("a", "v", &["10.1.1.1/24"], true, "api"),
            attachment("b", "v", &["10.1.2.1/24"], true, "api"),
            attachment("d", "v", &["10.1.4.1/24"], true, "web"),
            elsewhere,
        ];
        let r = resolve_endpoints(&svc, &atts, &[vpc("v", true)], &[]);
        let got: Vec<_> = r.endpoints.iter().map(|e| e.address.as_str()).collect();
        assert_eq!(got, ["10.1.1.1", "10.1.2.1"]);
    }

    #[test]
    fn problems_are_reported_not_swallowed() {
        let r = resolve_endpoints(&by_ref("missing", AddressFamily::DualStack), &[], &[], &[]);
        assert_eq!(r.problems, [ResolveProblem::AttachmentNotFound("missing".into())]);

        let r = resolve_endpoints(
            &by_ref("a", AddressFamily::IPv4),
            &[attachment("a", "gone", &["bogus", "10.1.1.1/24"], true, "x")],
            &[],
            &[],
        );
        assert!(matches!(r.problems[0], ResolveProblem::VpcNotFound { .. }));
        assert!(matches!(r.problems[1], ResolveProblem::BadAddress { .. }));
        assert_eq!(r.endpoints.len(), 1, "the good address still counts");
        assert!(!r.endpoints[0].ready, "but not ready without its VPC");

        let r = resolve_endpoints(
            &by_ref("a", AddressFamily::IPv6),
            &[attachment("a", "v", &["10.1.1.1/24"], true, "x")],
            &[vpc("v", true)],
            &[],
        );
        assert!(matches!(r.problems[0], ResolveProblem::NoAddressOfFamily { .. }));
    }

    #[test]
    fn endpoints_carry_their_attachments_locality_from_labels_then_the_named_location() {
        use router_api::datum::{GcpProvider, LocationProvider, LocationSpec};
        let mut labelled = attachment("labelled", "v", &["10.0.0.1/24"], true, "x");
        let labels = labelled.metadata.labels.as_mut().unwrap();
        labels.insert("topology.kubernetes.io/zone".into(), "us-south1-a".into());
        labels.insert("topology.kubernetes.io/region".into(), "us-south1".into());
        let mut located = attachment("located", "v", &["10.0.0.2/24"], true, "x");
        let labels = located.metadata.labels.as_mut().unwrap();
        labels.insert("networking.datumapis.com/location".into(), "datum-system/dfw".into());
        labels.insert("topology.kubernetes.io/zone".into(), "own-zone".into());
        let mut location = Location::new(
            "dfw",
            LocationSpec {
                location_class_name: "datum-managed".into(),
                topology: BTreeMap::from([("topology.datum.net/city-code".to_string(), "DFW".to_string())]),
                provider: LocationProvider {
                    gcp: Some(GcpProvider { project_id: "p".into(), region: "us-south1".into(), zone: "us-south1-b".into() }),
                    ..Default::default()
                },
                coordinates: None,
            },
        );
        location.metadata.namespace = Some("datum-system".into());
        let nowhere = attachment("nowhere", "v", &["10.0.0.3/24"], true, "x");
        let svc = selecting("x");
        let r = resolve_endpoints(&svc, &[labelled, located, nowhere], &[vpc("v", true)], &[location]);
        let by_attachment = |name: &str| r.endpoints.iter().find(|e| e.attachment.as_deref() == Some(name)).unwrap().locality();
        assert_eq!(
            by_attachment("labelled"),
            Locality { region: Some("us-south1".into()), zone: Some("us-south1-a".into()), city_code: None }
        );
        assert_eq!(
            by_attachment("located"),
            Locality { region: Some("us-south1".into()), zone: Some("own-zone".into()), city_code: Some("DFW".into()) },
            "labels win, the Location fills in the rest"
        );
        assert_eq!(by_attachment("nowhere"), Locality::default());
    }
}
