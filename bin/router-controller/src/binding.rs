//! ServiceBinding sync: the Service's selector → its pods → each pod's
//! Galactic attachment (the pod annotation) → the pod's VPC address (the
//! per-pod Galactic EndpointSlice labelled with the tenant id when there is
//! one, else the attachment's interface addresses) → endpoints on the mapped
//! ports, ready when the pod is Ready and its attachment too. Pods without
//! the annotation are listed in `unattachedPods`, never silently dropped.
//! With `autoSync: false` the endpoints are synced once and then kept.

use std::net::IpAddr;

use k8s_openapi::{api::core::v1::Pod, apimachinery::pkg::apis::meta::v1::Time, jiff::Timestamp};
use router_api::{
    datum::Locality,
    galactic::{POD_ATTACHMENT_ANNOTATION, TENANT_ID_LABEL, VPCAttachment, tenant_id},
    v1alpha1::{ServiceBinding, ServiceBindingStatus, ServiceEndpoint, condition_types, reasons},
};
use router_galactic::{family_allows, interface_ip};

use crate::world::{Desired, World, accepted, key, merge_conditions, rejected};

fn pod_ready(pod: &Pod) -> bool {
    pod.status.as_ref().and_then(|s| s.conditions.as_ref()).is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// The pod's VPC addresses: its Galactic EndpointSlice's, else its attachment's interface addresses.
fn pod_addresses(world: &World, namespace: &str, pod: &str, attachment: &VPCAttachment) -> Vec<IpAddr> {
    let vpc_id = world
        .vpc(attachment.vpc_namespace(namespace), attachment.spec.vpc.name.as_deref().unwrap_or_default())
        .and_then(|v| v.identifier().map(str::to_owned));
    let tenant = vpc_id.zip(attachment.identifier()).and_then(|(v, a)| tenant_id(&v, a).ok());
    let from_slices: Vec<IpAddr> = world
        .endpoint_slices_in(namespace)
        .filter(|s| {
            s.metadata.labels.as_ref().and_then(|l| l.get(TENANT_ID_LABEL)).is_some_and(|t| tenant.as_ref().is_none_or(|want| t == want))
        })
        .flat_map(|s| s.endpoints.iter())
        .filter(|e| e.target_ref.as_ref().is_some_and(|r| r.kind.as_deref() == Some("Pod") && r.name.as_deref() == Some(pod)))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .collect();
    if !from_slices.is_empty() {
        return from_slices;
    }
    attachment.spec.interface.addresses.iter().filter_map(|a| interface_ip(a).ok()).collect()
}

/// The status of `binding`, or None when it is already stored.
pub fn desired(binding: &ServiceBinding, world: &World, now: Timestamp) -> Option<ServiceBindingStatus> {
    let (namespace, _) = key(&binding.metadata);
    let stored = binding.status.clone().unwrap_or_default();
    let service = world.kube_service(&namespace, &binding.spec.service_ref.name);
    let vpc_service = world.service(&namespace, &binding.spec.vpc_service_ref.name);
    let mut missing = Vec::new();
    if service.is_none() {
        missing.push(format!("Service {namespace}/{} not found", binding.spec.service_ref.name));
    }
    if vpc_service.is_none() {
        missing.push(format!("VPCService {namespace}/{} not found", binding.spec.vpc_service_ref.name));
    }
    let resolved = Desired {
        type_: condition_types::RESOLVED_REFS,
        status: missing.is_empty(),
        reason: if missing.is_empty() { reasons::RESOLVED_REFS } else { reasons::REF_NOT_FOUND },
        message: if missing.is_empty() { "every reference resolves".to_owned() } else { missing.join("; ") },
    };

    let invalid = rejected(&world.invalid.bindings, &binding.metadata);
    let synced_once = !binding.spec.auto_sync && stored.last_sync_time.is_some();
    let (endpoints, unattached, synced) = match (service, vpc_service) {
        // Not acted on: what was synced stays, and service-discovery ignores the binding.
        _ if invalid.is_some() => (
            stored.endpoints.clone(),
            stored.unattached_pods.clone(),
            Desired { type_: condition_types::SYNCED, status: false, reason: reasons::INVALID, message: "not accepted".to_owned() },
        ),
        _ if synced_once => (
            stored.endpoints.clone(),
            stored.unattached_pods.clone(),
            Desired {
                type_: condition_types::SYNCED,
                status: true,
                reason: reasons::SYNCED,
                message: "autoSync is false: synced once, kept since".to_owned(),
            },
        ),
        (Some(service), Some(vpc_service)) => {
            let selector = service.spec.as_ref().and_then(|s| s.selector.clone()).unwrap_or_default();
            let ports: Vec<i32> = if binding.spec.port_mappings.is_empty() {
                vec![vpc_service.spec.port]
            } else {
                let mut p: Vec<i32> = binding.spec.port_mappings.iter().map(|m| m.vpc_port).collect();
                p.dedup();
                p
            };
            let mut pods: Vec<&Pod> = world
                .pods_in(&namespace)
                .filter(|p| {
                    !selector.is_empty() && selector.iter().all(|(k, v)| p.metadata.labels.as_ref().and_then(|l| l.get(k)) == Some(v))
                })
                .collect();
            pods.sort_by_key(|p| p.metadata.name.clone());
            let mut endpoints = Vec::new();
            let mut unattached = Vec::new();
            let mut notes = Vec::new();
            for pod in &pods {
                let pod_name = pod.metadata.name.clone().unwrap_or_default();
                let Some(reference) = pod.metadata.annotations.as_ref().and_then(|a| a.get(POD_ATTACHMENT_ANNOTATION)) else {
                    unattached.push(pod_name);
                    continue;
                };
                let (att_ns, att_name) = reference.split_once('/').unwrap_or((namespace.as_str(), reference.as_str()));
                let Some(attachment) = world.attachment(att_ns, att_name) else {
                    notes.push(format!("pod {pod_name}: VPCAttachment {att_ns}/{att_name} not found"));
                    continue;
                };
                let ready = pod_ready(pod) && attachment.is_ready();
                // Where the pod runs: its node's topology labels, then its attachment's.
                let locality = node_locality(world, pod).or(router_galactic::attachment_locality(attachment, att_ns, &[]));
                for ip in pod_addresses(world, &namespace, &pod_name, attachment)
                    .into_iter()
                    .filter(|ip| family_allows(vpc_service.spec.address_family, *ip))
                {
                    for port in &ports {
                        endpoints.push(ServiceEndpoint {
                            address: ip.to_string(),
                            port: *port,
                            attachment: Some(att_name.to_owned()),
                            pod: Some(pod_name.clone()),
                            ready,
                            zone: locality.zone.clone(),
                            region: locality.region.clone(),
                            city_code: locality.city_code.clone(),
                        });
                    }
                }
            }
            let synced = if selector.is_empty() {
                Desired {
                    type_: condition_types::SYNCED,
                    status: false,
                    reason: reasons::INVALID,
                    message: "the Service has no selector: no pods to sync".to_owned(),
                }
            } else if !unattached.is_empty() {
                Desired {
                    type_: condition_types::SYNCED,
                    status: true,
                    reason: reasons::UNATTACHED_PODS,
                    message: format!(
                        "{} endpoints from {} pods; {} pods have no {POD_ATTACHMENT_ANNOTATION} annotation (see unattachedPods){}",
                        endpoints.len(),
                        pods.len() - unattached.len(),
                        unattached.len(),
                        notes.iter().map(|n| format!("; {n}")).collect::<String>()
                    ),
                }
            } else {
                Desired {
                    type_: condition_types::SYNCED,
                    status: true,
                    reason: reasons::SYNCED,
                    message: format!(
                        "{} endpoints from {} pods{}",
                        endpoints.len(),
                        pods.len(),
                        notes.iter().map(|n| format!("; {n}")).collect::<String>()
                    ),
                }
            };
            (endpoints, unattached, synced)
        }
        _ => (
            Vec::new(),
            Vec::new(),
            Desired {
                type_: condition_types::SYNCED,
                status: false,
                reason: reasons::REF_NOT_FOUND,
                message: "references do not resolve".to_owned(),
            },
        ),
    };
    let ready_endpoints = i32::try_from(endpoints.iter().filter(|e| e.ready).count()).unwrap_or(i32::MAX);
    let accepted = invalid.unwrap_or_else(|| accepted("accepted"));
    let (conditions, changed) = merge_conditions(&stored.conditions, vec![accepted, resolved, synced], binding.metadata.generation, now);
    let content_changed =
        stored.endpoints != endpoints || stored.unattached_pods != unattached || stored.ready_endpoints != ready_endpoints;
    if !changed && !content_changed && stored.last_sync_time.is_some() {
        return None;
    }
    let last_sync_time = if content_changed || stored.last_sync_time.is_none() { Some(Time(now)) } else { stored.last_sync_time };
    Some(ServiceBindingStatus { conditions, endpoints, ready_endpoints, unattached_pods: unattached, last_sync_time })
}

/// The topology labels of the node `pod` is scheduled on, when the node is known.
fn node_locality(world: &World, pod: &Pod) -> Locality {
    let node = pod.spec.as_ref().and_then(|s| s.node_name.as_deref());
    let labels = node.and_then(|n| world.node(n)).and_then(|n| n.metadata.labels.as_ref());
    Locality::from_map(|k| labels.and_then(|l| l.get(k)))
}
