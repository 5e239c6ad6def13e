//! VPCEgress: which outside destinations a VPC's clients may reach through
//! the gateway when they use it as their HTTP proxy (CONNECT tunnels and
//! absolute-form requests).
//!
//! A client belongs to the VPC whose `spec.networks` contain its source
//! address. Rules are tried in order; the first whose destination (host name
//! exact or `*.` wildcard, or, for an IP literal, a CIDR) and port match
//! decides; otherwise `defaultAction` does. Host names are not resolved to
//! match CIDRs: a rule about addresses speaks about addresses.

use std::{net::IpAddr, sync::Arc};

use ipnet::IpNet;
use router_api::v1alpha1::{EgressAction, VPCEgress};

/// The verdict on one destination, naming what decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EgressDecision {
    pub allowed: bool,
    /// `namespace/name` of the VPCEgress.
    pub policy: Arc<str>,
    /// The rule's name, or `default` when defaultAction decided.
    pub rule: Arc<str>,
}

#[derive(Debug)]
struct EgressRule {
    name: Arc<str>,
    hosts: Vec<String>,
    cidrs: Vec<IpNet>,
    ports: Vec<u16>,
    allow: bool,
}

/// The compiled VPCEgress of one VPC.
#[derive(Debug)]
pub struct EgressPolicy {
    label: Arc<str>,
    networks: Vec<IpNet>,
    default_allow: bool,
    rules: Vec<EgressRule>,
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() + 1 && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.',
        None => pattern == host,
    }
}

impl EgressPolicy {
    /// Compiles `egress` for a VPC with `networks`; entries that do not parse are reported in `problems`.
    pub fn compile(egress: &VPCEgress, networks: &[String], problems: &mut Vec<String>) -> Self {
        let label: Arc<str> = format!(
            "{}/{}",
            egress.metadata.namespace.as_deref().unwrap_or("default"),
            egress.metadata.name.as_deref().unwrap_or_default()
        )
        .into();
        let parse_net = |s: &str, problems: &mut Vec<String>| match s.parse::<IpNet>() {
            Ok(n) => Some(n),
            Err(_) => {
                problems.push(format!("{s:?} is not a CIDR; ignored"));
                None
            }
        };
        let rules = egress
            .spec
            .rules
            .iter()
            .map(|r| EgressRule {
                name: r.name.as_str().into(),
                hosts: r.to.hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                cidrs: r.to.cidrs.iter().filter_map(|c| parse_net(c, problems)).collect(),
                ports: r.ports.iter().filter_map(|p| u16::try_from(*p).ok()).collect(),
                allow: r.action == EgressAction::Allow,
            })
            .collect();
        Self {
            label,
            networks: networks.iter().filter_map(|n| parse_net(n, problems)).collect(),
            default_allow: egress.spec.default_action == EgressAction::Allow,
            rules,
        }
    }

    /// Whether `client` is in this policy's VPC.
    pub fn covers(&self, client: IpAddr) -> bool {
        self.networks.iter().any(|n| n.contains(&client))
    }

    /// The verdict for `host:port` (`host` lower-case, an IP literal without brackets, or a name).
    pub fn decide(&self, host: &str, port: u16) -> EgressDecision {
        let ip: Option<IpAddr> = host.parse().ok();
        let rule = self.rules.iter().find(|r| {
            let to = match ip {
                Some(ip) => r.cidrs.iter().any(|c| c.contains(&ip)),
                None => r.hosts.iter().any(|p| host_matches(p, host)),
            };
            to && (r.ports.is_empty() || r.ports.contains(&port))
        });
        match rule {
            Some(r) => EgressDecision { allowed: r.allow, policy: self.label.clone(), rule: r.name.clone() },
            None => EgressDecision { allowed: self.default_allow, policy: self.label.clone(), rule: "default".into() },
        }
    }
}

/// Every VPC's egress policy.
#[derive(Debug, Default)]
pub struct EgressTable {
    policies: Vec<EgressPolicy>,
}

impl EgressTable {
    pub fn new(policies: Vec<EgressPolicy>) -> Self {
        Self { policies }
    }

    /// The policy of the VPC `client` is in, if any.
    pub fn policy_for(&self, client: IpAddr) -> Option<&EgressPolicy> {
        self.policies.iter().find(|p| p.covers(client))
    }
}

#[cfg(test)]
mod tests {
    use router_api::v1alpha1::{EgressRule as ApiRule, EgressTarget, LocalObjectReference, VPCEgressSpec};

    use super::*;

    fn policy(default_action: EgressAction) -> EgressPolicy {
        let rule = |name: &str, hosts: &[&str], cidrs: &[&str], ports: &[i32], action| ApiRule {
            name: name.into(),
            to: EgressTarget { hosts: hosts.iter().map(|s| s.to_string()).collect(), cidrs: cidrs.iter().map(|s| s.to_string()).collect() },
            ports: ports.to_vec(),
            action,
        };
        let mut e = VPCEgress::new(
            "egress",
            VPCEgressSpec {
                vpc_ref: LocalObjectReference::new("vpc"),
                default_action,
                rules: vec![
                    rule("block-metadata", &[], &["169.254.169.254/32"], &[], EgressAction::Deny),
                    rule("payments", &["api.stripe.com", "*.googleapis.com"], &["203.0.113.0/24"], &[443], EgressAction::Allow),
                ],
            },
        );
        e.metadata.namespace = Some("default".into());
        let mut problems = Vec::new();
        let p = EgressPolicy::compile(&e, &["10.0.0.0/24".into()], &mut problems);
        assert!(problems.is_empty(), "{problems:?}");
        p
    }

    #[test]
    fn first_matching_rule_decides_then_the_default() {
        let p = policy(EgressAction::Deny);
        let d = p.decide("api.stripe.com", 443);
        assert!(d.allowed);
        assert_eq!((&*d.policy, &*d.rule), ("default/egress", "payments"));
        assert!(p.decide("storage.googleapis.com", 443).allowed);
        assert!(p.decide("a.b.googleapis.com", 443).allowed, "wildcards cover several labels");
        assert!(!p.decide("googleapis.com", 443).allowed, "but not the bare domain");
        assert!(!p.decide("api.stripe.com", 80).allowed, "wrong port");
        assert_eq!(&*p.decide("api.stripe.com", 80).rule, "default");
        assert!(p.decide("203.0.113.9", 443).allowed, "IP literals match CIDRs");
        let d = p.decide("169.254.169.254", 80);
        assert!(!d.allowed);
        assert_eq!(&*d.rule, "block-metadata");
        assert!(policy(EgressAction::Allow).decide("example.org", 80).allowed, "defaultAction Allow");
    }

    #[test]
    fn clients_belong_to_the_vpc_whose_networks_contain_them() {
        let table = EgressTable::new(vec![policy(EgressAction::Deny)]);
        assert!(table.policy_for("10.0.0.7".parse().unwrap()).is_some());
        assert!(table.policy_for("10.0.1.7".parse().unwrap()).is_none());
    }
}
