//! One immutable routing configuration, built from API objects.
//!
//! A snapshot is self-contained: routes point at their destinations' services
//! and endpoint pickers directly, so a request resolves against exactly the
//! snapshot it started with, however many reloads happen meanwhile. Building
//! never fails as a whole — a route that cannot be compiled is left out and
//! reported, and a destination that does not resolve keeps its weight as
//! 500s — so one bad object never takes the others down.

use std::{
    collections::BTreeMap,
    fmt,
    net::{IpAddr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use regex::Regex;
use router_api::datum::Locality;
use router_api::galactic::VPC;
use router_api::v1alpha1::{
    CircuitBreaker, Cors, HashOn, HealthCheck, LoadBalancing, Redirect, RetryPolicy, RouteFilters, RouteMatch, ServiceProtocol,
    TrafficDistribution, UpstreamTls, VPCEgress, VPCIngress, VPCRoute, VPCService,
};

mod incremental;

pub use incremental::SnapshotBuilder;

use crate::{
    EndpointState, EndpointStore, Objects,
    balance::{DestinationCounters, DestinationLimits, EndpointPicker, Levels, WeightedSplit},
    breaker::BreakerConfig,
    conditions::Conditions,
    egress::{EgressPolicy, EgressTable},
    ingress::{IngressBuilder, IngressTable, ListenerReport},
    retry::RetryBudget,
    route_table::{CompiledRoute, PathMatch, RouteRule, RouteTable, RuleOrder},
};

/// namespace/name of a VPCService.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub namespace: String,
    pub name: String,
}

/// namespace/name of a VPCRoute.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RouteKey {
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

impl fmt::Display for RouteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A VPCService as the data plane needs it.
#[derive(Debug)]
pub struct ServiceTarget {
    pub key: ServiceKey,
    /// `namespace/name`, formatted once for metrics and logs.
    pub label: Arc<str>,
    pub protocol: ServiceProtocol,
    pub tls: Option<UpstreamTls>,
    /// The VRF device of the service's VPC (`G…V`), when Galactic assigned the VPC an identifier.
    pub vrf_device: Option<String>,
    /// Active health checking of the endpoints, if configured.
    pub health_check: Option<HealthCheck>,
    /// Ready endpoints (interned: shared with other snapshots).
    pub endpoints: Vec<Arc<EndpointState>>,
    /// Where each of `endpoints` is (as the status says), same order.
    pub localities: Vec<Locality>,
    pub traffic_distribution: TrafficDistribution,
    /// All endpoints the status lists, ready or not.
    pub total_endpoints: usize,
}

/// Where one weighted share of a route goes.
#[derive(Debug)]
pub enum DestinationTarget {
    Resolved {
        service: Arc<ServiceTarget>,
        picker: EndpointPicker,
    },
    /// The VPCService does not exist: this share is answered with 500.
    Unresolved {
        service: ServiceKey,
        label: Arc<str>,
    },
}

/// Route timeouts, parsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteTimeouts {
    pub request: Option<Duration>,
    pub per_try: Option<Duration>,
    pub idle: Option<Duration>,
}

/// Everything a matched request needs from its route.
#[derive(Debug)]
pub struct RoutePolicy {
    pub key: RouteKey,
    /// `namespace/name`, formatted once for metrics and logs.
    pub label: Arc<str>,
    pub request_headers: Option<router_api::v1alpha1::HeaderModifier>,
    pub response_headers: Option<router_api::v1alpha1::HeaderModifier>,
    pub url_rewrite: Option<router_api::v1alpha1::UrlRewrite>,
    pub redirect: Option<Redirect>,
    pub cors: Option<Cors>,
    pub mirror: Option<(DestinationTarget, u32)>,
    pub destinations: Vec<DestinationTarget>,
    pub split: WeightedSplit,
    pub hash_on: Option<HashOn>,
    pub timeouts: RouteTimeouts,
    pub retries: Option<RetryPolicy>,
    /// Present when `retries` is: the route's budget (default 20% of requests + 10/s).
    pub retry_budget: Option<RetryBudget>,
}

/// Problems found while building, per object, for logs, `/config` and conditions.
#[derive(Debug, Default, Clone)]
pub struct SnapshotReport {
    pub routes: BTreeMap<RouteKey, Vec<String>>,
    pub services: BTreeMap<ServiceKey, Vec<String>>,
    /// VPCEgress problems, by `namespace/name`.
    pub egress: BTreeMap<String, Vec<String>>,
    /// VPCIngress problems, by `namespace/name`.
    pub ingresses: BTreeMap<String, Vec<String>>,
    /// Listeners, by `namespace/ingress/listener`.
    pub listeners: BTreeMap<String, ListenerReport>,
}

impl SnapshotReport {
    /// Records that an object of `kind` was left out of the snapshot, and why.
    pub fn reject(&mut self, kind: &str, namespace: String, name: String, problem: String) {
        match kind {
            "VPCRoute" => self.routes.entry(RouteKey { namespace, name }).or_default().push(problem),
            "VPCService" => self.services.entry(ServiceKey { namespace, name }).or_default().push(problem),
            "VPCIngress" => self.ingresses.entry(format!("{namespace}/{name}")).or_default().push(problem),
            "VPCEgress" => self.egress.entry(format!("{namespace}/{name}")).or_default().push(problem),
            _ => {}
        }
    }

    pub fn is_clean(&self) -> bool {
        self.routes.values().all(Vec::is_empty)
            && self.services.values().all(Vec::is_empty)
            && self.egress.values().all(Vec::is_empty)
            && self.ingresses.values().all(Vec::is_empty)
            && self.listeners.values().all(|l| l.problems.is_empty())
    }
}

/// The whole routing configuration.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The internal listener's routes: those without `ingressRefs`.
    pub routes: RouteTable<RoutePolicy>,
    /// VPCIngress listeners and the routes attached to them.
    pub ingress: IngressTable,
    pub egress: EgressTable,
    pub services: BTreeMap<ServiceKey, Arc<ServiceTarget>>,
    pub route_count: usize,
    pub report: SnapshotReport,
    /// Where the gateway this snapshot was built for is, when it knows.
    pub locality: Option<Locality>,
}

pub(crate) use router_api::manifest::object_key as key_of;

impl Snapshot {
    /// Builds a snapshot from the objects (VPCServices' `status.endpoints` say
    /// where they are). Endpoint state is interned in `store`. A gateway that
    /// builds one snapshot after another keeps a [`SnapshotBuilder`] instead,
    /// which recompiles only what changed.
    pub fn build(input: SnapshotInput<'_>, store: &EndpointStore) -> Snapshot {
        SnapshotBuilder::default().build(input, store)
    }

    /// What [`Snapshot::build`] reports about the objects, without assembling
    /// the tables a gateway serves from: the controller's view, which reads
    /// the report alone.
    pub fn report(input: SnapshotInput<'_>) -> SnapshotReport {
        let checker = RouteChecker::new(input);
        let checks: Vec<RouteCheck> = input.routes.iter().map(|r| checker.check(r)).collect();
        checker.report(&checks)
    }
}

fn route_key(route: &VPCRoute) -> RouteKey {
    let (namespace, name) = key_of(&route.metadata);
    RouteKey { namespace, name }
}

fn service_key(service: &VPCService) -> ServiceKey {
    let (namespace, name) = key_of(&service.metadata);
    ServiceKey { namespace, name }
}

/// A VPCService compiled: its target and its problems (endpoints that are not an IP and port).
fn compile_service(svc: &VPCService, key: &ServiceKey, store: &EndpointStore) -> (Arc<ServiceTarget>, Vec<String>) {
    let mut problems = Vec::new();
    let status_endpoints = svc.status.as_ref().map(|s| s.endpoints.as_slice()).unwrap_or_default();
    let (mut endpoints, mut localities) = (Vec::new(), Vec::new());
    for ep in status_endpoints.iter().filter(|e| e.ready) {
        match (ep.address.parse::<IpAddr>(), u16::try_from(ep.port)) {
            (Ok(ip), Ok(port)) => {
                endpoints.push(store.get(SocketAddr::new(ip, port)));
                localities.push(ep.locality());
            }
            _ => problems.push(format!("endpoint {}:{} is not an IP and port", ep.address, ep.port)),
        }
    }
    let target = ServiceTarget {
        label: key.to_string().into(),
        key: key.clone(),
        protocol: svc.spec.protocol,
        tls: svc.spec.tls.clone(),
        health_check: svc.spec.health_check.clone(),
        vrf_device: svc
            .status
            .as_ref()
            .and_then(|s| s.vpc.as_ref())
            .and_then(|v| v.identifier.as_deref())
            .and_then(|id| router_api::galactic::vrf_device_name(id).ok()),
        endpoints,
        localities,
        traffic_distribution: svc.spec.traffic_distribution.unwrap_or_default(),
        total_endpoints: status_endpoints.len(),
    };
    (Arc::new(target), problems)
}

/// Everything but the routes, compiled and checked.
struct Prepared {
    report: SnapshotReport,
    targets: BTreeMap<ServiceKey, Arc<ServiceTarget>>,
    ingress: IngressBuilder,
    egress: EgressTable,
    locality: Option<Locality>,
}

impl Prepared {
    /// Compiles listeners and egress policies around the compiled services (`targets`,
    /// whose problems are in `report` already).
    fn new(input: SnapshotInput<'_>, targets: BTreeMap<ServiceKey, Arc<ServiceTarget>>, mut report: SnapshotReport) -> Self {
        let SnapshotInput { egress, vpcs, ingresses, reserved_ports, locality, .. } = input;
        let vpc_keys: Vec<(String, String)> = vpcs.iter().map(|v| key_of(&v.metadata)).collect();
        let ingress = IngressBuilder::new(ingresses, &vpc_keys, reserved_ports, &mut report);
        let egress = compile_egress(egress, vpcs, &mut report);
        Prepared { report, targets, ingress, egress, locality: locality.cloned() }
    }

    /// Compiles one route against the services. Depends on the route, on the
    /// services it names and on the locality, never on listeners or other routes.
    fn compile(&self, route: &VPCRoute, key: &RouteKey, store: &EndpointStore) -> RouteCompiled {
        let mut problems = Vec::new();
        let compiled = match compile_route(route, key, &self.targets, self.locality.as_ref(), store, &mut problems) {
            Ok(c) => Some(c),
            Err(e) => {
                problems.push(format!("not served: {e}"));
                None
            }
        };
        RouteCompiled { compiled, problems }
    }

    /// The listeners (by position) a compiled route attaches to, with the hostnames each serves of it.
    fn attachments(
        &self,
        route: &VPCRoute,
        namespace: &str,
        compiled: &RouteCompiled,
        problems: &mut Vec<String>,
    ) -> Vec<(usize, Vec<String>)> {
        match &compiled.compiled {
            Some(c) if !route.spec.ingress_refs.is_empty() => {
                self.ingress.attachments(namespace, &route.spec.ingress_refs, &c.hostnames, problems)
            }
            _ => Vec::new(),
        }
    }
}

/// One route compiled against the services: None when it cannot be served.
#[derive(Clone)]
struct RouteCompiled {
    compiled: Option<CompiledRoute<RoutePolicy>>,
    problems: Vec<String>,
}

/// What building a snapshot finds about one route: its problems, and the
/// listeners it attaches to.
#[derive(Debug, Clone)]
pub struct RouteCheck {
    pub key: RouteKey,
    pub problems: Vec<String>,
    /// Labels (`namespace/ingress/listener`) of the listeners serving it.
    pub listeners: Vec<Arc<str>>,
}

/// The snapshot's report one route at a time. A route's check depends on
/// the route, on which VPCServices exist and on the VPCIngresses and VPCs
/// (their listeners), never on other routes; so a caller that keeps checks
/// (the controller, per route generation) rechecks only the routes that
/// changed, and [`RouteChecker::report`] assembles what
/// [`Snapshot::build`] would report.
pub struct RouteChecker {
    prepared: Prepared,
    /// Pickers are built as for a gateway; their counters are the checker's own.
    store: EndpointStore,
}

impl RouteChecker {
    /// Compiles everything of `input` but its routes (the controller's view: no locality).
    pub fn new(input: SnapshotInput<'_>) -> Self {
        let store = EndpointStore::default();
        let mut report = SnapshotReport::default();
        let mut targets = BTreeMap::new();
        for svc in input.services {
            let key = service_key(svc);
            let (target, problems) = compile_service(svc, &key, &store);
            report.services.insert(key.clone(), problems);
            targets.insert(key, target);
        }
        let prepared = Prepared::new(SnapshotInput { locality: None, ..input }, targets, report);
        Self { prepared, store }
    }

    pub fn check(&self, route: &VPCRoute) -> RouteCheck {
        let key = route_key(route);
        let compiled = self.prepared.compile(route, &key, &self.store);
        let mut problems = compiled.problems.clone();
        let attachments = self.prepared.attachments(route, &key.namespace, &compiled, &mut problems);
        let listeners = attachments.into_iter().map(|(i, _)| self.prepared.ingress.label(i).clone()).collect();
        RouteCheck { key, problems, listeners }
    }

    /// The report of a snapshot of the routes these checks are of.
    pub fn report<'a>(&self, checks: impl IntoIterator<Item = &'a RouteCheck>) -> SnapshotReport {
        let mut report = self.prepared.report.clone();
        checks.into_iter().for_each(|c| report.add_route(c));
        report
    }
}

impl SnapshotReport {
    /// Adds a route, as its check found it, to a report of the same checker's.
    pub fn add_route(&mut self, check: &RouteCheck) {
        self.count(check, |n| *n += 1);
        self.routes.insert(check.key.clone(), check.problems.clone());
    }

    /// Takes back what [`SnapshotReport::add_route`] added.
    pub fn remove_route(&mut self, check: &RouteCheck) {
        self.count(check, |n| *n = n.saturating_sub(1));
        self.routes.remove(&check.key);
    }

    fn count(&mut self, check: &RouteCheck, change: impl Fn(&mut usize)) {
        for l in &check.listeners {
            if let Some(r) = self.listeners.get_mut(&**l) {
                change(&mut r.attached_routes);
            }
        }
    }
}

/// The objects a snapshot is built from.
#[derive(Debug, Clone, Copy, Default)]
pub struct SnapshotInput<'a> {
    pub services: Objects<'a, VPCService>,
    pub routes: Objects<'a, VPCRoute>,
    pub egress: Objects<'a, VPCEgress>,
    pub vpcs: Objects<'a, VPC>,
    pub ingresses: Objects<'a, VPCIngress>,
    /// Ports of the gateway's own listeners, which no VPCIngress listener may claim.
    pub reserved_ports: &'a [u16],
    /// Where the gateway is: destinations with trafficDistribution PreferClose group their endpoints by distance from it.
    pub locality: Option<&'a Locality>,
}

/// One policy per VPC: with several VPCEgress objects for one VPC, the first
/// by namespace/name applies and the others are reported.
fn compile_egress(egress: Objects<'_, VPCEgress>, vpcs: Objects<'_, VPC>, report: &mut SnapshotReport) -> EgressTable {
    let mut sorted: Vec<&VPCEgress> = egress.iter().collect();
    sorted.sort_by_key(|e| key_of(&e.metadata));
    let mut policies = Vec::new();
    let mut served_vpcs: Vec<(String, String)> = Vec::new();
    for e in sorted {
        let (namespace, name) = key_of(&e.metadata);
        let mut problems = Vec::new();
        let vpc_key = (namespace.clone(), e.spec.vpc_ref.name.clone());
        match vpcs.iter().find(|v| key_of(&v.metadata) == vpc_key) {
            None => problems.push(format!("VPC {}/{} not found; not enforced", vpc_key.0, vpc_key.1)),
            Some(_) if served_vpcs.contains(&vpc_key) => {
                problems.push(format!("another VPCEgress already governs VPC {}/{}; not enforced", vpc_key.0, vpc_key.1))
            }
            Some(vpc) => {
                policies.push(EgressPolicy::compile(e, &vpc.spec.networks, &mut problems));
                served_vpcs.push(vpc_key);
            }
        }
        report.egress.insert(format!("{namespace}/{name}"), problems);
    }
    EgressTable::new(policies)
}

/// A route's circuitBreaker as picker settings: the per-endpoint breaker and the per-destination limits.
fn limits_of(cb: Option<&CircuitBreaker>) -> DestinationLimits {
    let Some(cb) = cb else { return DestinationLimits::default() };
    let default = BreakerConfig::default();
    let breaker = BreakerConfig {
        consecutive_failures: cb.consecutive_failures.and_then(|n| u32::try_from(n).ok()).unwrap_or(default.consecutive_failures),
        open_duration: cb.open_duration.map_or(default.open_duration, Into::into),
        half_open_requests: cb.half_open_requests.and_then(|n| u32::try_from(n).ok()).unwrap_or(default.half_open_requests),
    };
    DestinationLimits {
        breaker: Some(breaker),
        max_requests: cb.max_requests.and_then(|n| u32::try_from(n).ok()),
        max_retries: cb.max_retries.and_then(|n| u32::try_from(n).ok()),
        max_connections: cb.max_connections.and_then(|n| u32::try_from(n).ok()),
        max_pending: cb.max_pending_requests.and_then(|n| u32::try_from(n).ok()),
    }
}

/// How a destination picks: the route's strategy and limits, and, when it prefers close endpoints
/// (its own trafficDistribution, else its service's) and the gateway knows where it is, by level.
struct PickerSettings<'a> {
    lb: LoadBalancing,
    limits: DestinationLimits,
    /// Interned across snapshots (see `EndpointStore::destination`).
    counters: Arc<DestinationCounters>,
    traffic_distribution: Option<TrafficDistribution>,
    locality: Option<&'a Locality>,
}

fn destination(
    namespace: &str,
    r: &router_api::v1alpha1::NamespacedObjectReference,
    settings: PickerSettings<'_>,
    targets: &BTreeMap<ServiceKey, Arc<ServiceTarget>>,
    problems: &mut Vec<String>,
) -> DestinationTarget {
    let key = ServiceKey { namespace: r.namespace_or(namespace).to_owned(), name: r.name.clone() };
    match targets.get(&key) {
        Some(service) => {
            let mut picker =
                EndpointPicker::new(settings.lb, service.endpoints.clone()).with_limits_counted_in(settings.limits, settings.counters);
            let prefer_close = settings.traffic_distribution.unwrap_or(service.traffic_distribution) == TrafficDistribution::PreferClose;
            if let Some(locality) = settings.locality.filter(|l| prefer_close && !l.is_empty()) {
                picker = picker.with_levels(Levels::new(locality, &service.localities));
            }
            DestinationTarget::Resolved { picker, service: service.clone() }
        }
        None => {
            problems.push(format!("VPCService {key} not found; its share of traffic is answered with 500"));
            DestinationTarget::Unresolved { label: key.to_string().into(), service: key }
        }
    }
}

fn compile_route(
    route: &VPCRoute,
    key: &RouteKey,
    targets: &BTreeMap<ServiceKey, Arc<ServiceTarget>>,
    locality: Option<&Locality>,
    store: &EndpointStore,
    problems: &mut Vec<String>,
) -> Result<CompiledRoute<RoutePolicy>, String> {
    let route_label = key.to_string();
    let spec = &route.spec;
    let filters: RouteFilters = spec.filters.clone().unwrap_or_default();
    let lb = spec.load_balancing;
    let destinations: Vec<DestinationTarget> = spec
        .destinations
        .iter()
        .enumerate()
        .map(|(i, d)| {
            let limits = limits_of(spec.circuit_breaker.as_ref());
            let settings = PickerSettings {
                lb,
                limits,
                counters: store.destination(&route_label, i, limits.max_connections),
                traffic_distribution: d.traffic_distribution,
                locality,
            };
            destination(&key.namespace, &d.vpc_service_ref, settings, targets, problems)
        })
        .collect();
    let weights: Vec<u32> = spec.destinations.iter().map(|d| u32::try_from(d.weight).unwrap_or(0)).collect();
    let mirror = filters.mirror.as_ref().map(|m| {
        (
            destination(
                &key.namespace,
                &m.vpc_service_ref,
                PickerSettings {
                    lb: LoadBalancing::RoundRobin,
                    limits: DestinationLimits::default(),
                    counters: Arc::new(DestinationCounters::new(None)),
                    traffic_distribution: None,
                    locality,
                },
                targets,
                problems,
            ),
            u32::try_from(m.percent).unwrap_or(0).min(100),
        )
    });
    if let Some(cb) = &spec.circuit_breaker
        && cb.max_pending_requests.is_some()
        && cb.max_connections.is_none()
    {
        problems.push("circuitBreaker.maxPendingRequests has no effect without maxConnections: nothing waits for a connection".to_owned());
    }
    if filters.redirect.is_none() && weights.iter().all(|&w| w == 0) {
        problems.push("every destination has weight 0: matching requests are answered with 500".to_owned());
    }
    let timeouts = spec.timeouts.as_ref().map_or_else(RouteTimeouts::default, |t| RouteTimeouts {
        request: t.request.map(Into::into),
        per_try: t.per_try.map(Into::into),
        idle: t.idle.map(Into::into),
    });
    let policy = Arc::new(RoutePolicy {
        key: key.clone(),
        label: key.to_string().into(),
        request_headers: filters.request_headers,
        response_headers: filters.response_headers,
        url_rewrite: filters.url_rewrite,
        redirect: filters.redirect,
        cors: filters.cors,
        mirror,
        destinations,
        split: WeightedSplit::new(&weights),
        hash_on: spec.hash_on.clone(),
        timeouts,
        retry_budget: spec.retries.as_ref().map(|r| {
            let (percent, min) = r.budget.as_ref().map_or((20, 10), |b| (b.percent, b.min_per_second));
            RetryBudget::new(u32::try_from(percent).unwrap_or(20), u32::try_from(min).unwrap_or(10), std::time::Instant::now())
        }),
        retries: spec.retries.clone(),
    });

    let matches: Vec<RouteMatch> = match (&spec.r#match, spec.matches.is_empty()) {
        (Some(m), _) => vec![m.clone()],
        (None, false) => spec.matches.clone(),
        (None, true) => vec![RouteMatch::default()],
    };
    let created = route.metadata.creation_timestamp.as_ref().map_or(i64::MAX, |t| t.0.as_second());
    let mut rules = Vec::with_capacity(matches.len());
    for (index, m) in matches.iter().enumerate() {
        let (path, grpc_only) = path_of(m)?;
        let conditions = Conditions::compile(&m.methods, &m.headers, &m.query_params, grpc_only)?;
        rules.push(Arc::new(RouteRule {
            order: RuleOrder {
                no_methods: conditions.methods.is_empty(),
                fewer_headers: std::cmp::Reverse(conditions.headers.len()),
                fewer_query: std::cmp::Reverse(conditions.query.len()),
                created,
                namespace_name: (key.namespace.clone(), key.name.clone()),
                match_index: index,
            },
            action: policy.clone(),
            path,
            conditions,
        }));
    }
    Ok(CompiledRoute { hostnames: spec.hostnames.clone(), rules })
}

/// The path condition of a match; a gRPC match is a path condition on /service/method.
fn path_of(m: &RouteMatch) -> Result<(PathMatch, bool), String> {
    if let Some(g) = &m.grpc {
        let path = match (&g.service, &g.method) {
            (Some(s), Some(me)) => PathMatch::Exact(format!("/{s}/{me}")),
            (Some(s), None) => PathMatch::Prefix(format!("/{s}")),
            (None, Some(me)) => PathMatch::Regex(Regex::new(&format!("^/[^/]+/{}$", regex::escape(me))).map_err(|e| e.to_string())?),
            (None, None) => PathMatch::Prefix(String::new()),
        };
        return Ok((path, true));
    }
    let path = if let Some(p) = &m.path {
        PathMatch::Exact(p.clone())
    } else if let Some(re) = &m.path_regex {
        PathMatch::Regex(Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("pathRegex: invalid regular expression: {e}"))?)
    } else {
        PathMatch::Prefix(m.path_prefix.as_deref().unwrap_or("/").trim_end_matches('/').to_owned())
    };
    Ok((path, false))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects() -> (Vec<VPCService>, Vec<VPCRoute>) {
        let service: VPCService = serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCService",
            "metadata": {"name": "svc", "namespace": "default"},
            "spec": {"port": 80},
            "status": {"endpoints": [{"address": "10.0.0.1", "port": 80, "ready": true}], "readyEndpoints": 1}
        }))
        .expect("a service");
        let route: VPCRoute = serde_json::from_value(serde_json::json!({
            "apiVersion": "router.datum.net/v1alpha1", "kind": "VPCRoute",
            "metadata": {"name": "r", "namespace": "default"},
            "spec": {"destinations": [{"vpcServiceRef": {"name": "svc"}}], "circuitBreaker": {"maxRequests": 1, "maxConnections": 1}}
        }))
        .expect("a route");
        (vec![service], vec![route])
    }

    fn picker(snapshot: &Snapshot) -> &EndpointPicker {
        let view = crate::RequestView { host: "x", path: "/", query: None, method: &http::Method::GET, headers: &http::HeaderMap::new() };
        let rule = snapshot.routes.lookup(&view).expect("the route");
        match &rule.action.destinations[0] {
            DestinationTarget::Resolved { picker, .. } => picker,
            DestinationTarget::Unresolved { .. } => panic!("resolved"),
        }
    }

    #[tokio::test]
    async fn destination_limits_count_across_a_reload() {
        let store = EndpointStore::default();
        let (services, routes) = objects();
        let input = SnapshotInput { services: (&services).into(), routes: (&routes).into(), ..Default::default() };
        let before = Snapshot::build(input, &store);
        let in_flight = picker(&before).start_request().expect("the first request");
        let slot = picker(&before).connection_slot().await.expect("not overflowing").expect("a connection slot");
        let after = Snapshot::build(input, &store);
        assert!(picker(&after).start_request().is_none(), "the request admitted before the reload still counts");
        drop((in_flight, slot));
        assert!(picker(&after).start_request().is_some(), "and frees its place when it ends");
        assert!(picker(&after).connection_slot().await.expect("not overflowing").is_some());
        drop(before);
        // A fresh store (another gateway) counts on its own.
        assert!(picker(&Snapshot::build(input, &EndpointStore::default())).start_request().is_some());
    }
}
