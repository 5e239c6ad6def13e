//! VPCRoutes compiled into a lookup structure.
//!
//! Lookup cost depends on the request (its host's labels, its path's
//! segments, the candidates at that path), not on the number of routes:
//!
//! 1. **Host** — a hash map of exact hostnames, then wildcard suffixes from
//!    the most specific (`*.b.example.com` before `*.example.com`), then the
//!    routes without hostnames. The Gateway API gives precedence to the route
//!    with the most specific matching hostname before anything else, so the
//!    buckets are tried in that order and the first that has a matching rule
//!    wins; a request costs at most one bucket per label of its host.
//! 2. **Path** — within a bucket: a hash map of exact paths, then regular
//!    expressions, then a trie of path segments walked from the longest
//!    matching prefix back to `/`. Prefixes match whole segments: `/api`
//!    matches `/api` and `/api/x`, never `/apix`.
//! 3. **Conditions** — candidates at one path are pre-sorted by Gateway API
//!    precedence and the first whose method, headers, query and gRPC checks
//!    hold wins.
//!
//! Precedence (Gateway API HTTPRoute, with the implementation-specific parts
//! fixed as Envoy Gateway does): most specific hostname (exact, then the
//! longest wildcard, then none); exact path > regular expression > longest
//! prefix; then a match with methods over one without; then more header
//! matches; then more query matches; then the oldest route
//! (creationTimestamp); then namespace/name alphabetically; then the order of
//! matches within the route.

use std::{collections::HashMap, sync::Arc};

use http::{HeaderMap, Method};
use regex::Regex;
use smallvec::SmallVec;

use crate::conditions::Conditions;

/// How a rule matches the path.
#[derive(Debug, Clone)]
pub enum PathMatch {
    Exact(String),
    /// Segment-aware prefix, stored without a trailing slash ("" for `/`).
    Prefix(String),
    Regex(Regex),
}

/// One match of one route, pointing at the route's shared action `A`.
#[derive(Debug)]
pub struct RouteRule<A> {
    pub action: Arc<A>,
    pub path: PathMatch,
    pub conditions: Conditions,
    /// Sort key for the tie-breaks after path specificity.
    pub order: RuleOrder,
}

/// The tie-break order within one path slot (smaller sorts first).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RuleOrder {
    pub no_methods: bool,
    pub fewer_headers: std::cmp::Reverse<usize>,
    pub fewer_query: std::cmp::Reverse<usize>,
    /// creationTimestamp in seconds (older first); i64::MAX when unknown.
    pub created: i64,
    pub namespace_name: (String, String),
    pub match_index: usize,
}

/// A route as the table compiler sees it: its hostnames and its rules. The
/// rules are shared: every table the route is in (the internal listener's,
/// VPCIngress listeners', the next snapshot's when the route did not change)
/// points at the same ones.
pub struct CompiledRoute<A> {
    pub hostnames: Vec<String>,
    pub rules: Vec<Arc<RouteRule<A>>>,
}

// A derive would ask `A: Clone`, but the rules are shared through Arcs.
impl<A> Clone for CompiledRoute<A> {
    fn clone(&self) -> Self {
        Self { hostnames: self.hostnames.clone(), rules: self.rules.clone() }
    }
}

/// What a lookup sees of the request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Lower-case host without port.
    pub host: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
}

/// The host of an authority, lower-cased, without port or trailing dot.
pub fn normalize_host(authority: &str) -> String {
    let host = if let Some(rest) = authority.strip_prefix('[') {
        // [v6]:port
        rest.split(']').next().unwrap_or(rest)
    } else {
        authority.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(authority, |(h, _)| h)
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

#[derive(Debug)]
struct Bucket<A> {
    /// Every rule of the bucket, ordered by address: the next table's
    /// compilation shares this bucket when it would hold the same rules.
    members: Vec<Arc<RouteRule<A>>>,
    exact: HashMap<String, Vec<Arc<RouteRule<A>>>>,
    regex: Vec<Arc<RouteRule<A>>>,
    prefixes: Trie<A>,
}

impl<A> Default for Bucket<A> {
    fn default() -> Self {
        Self { members: Vec::new(), exact: HashMap::new(), regex: Vec::new(), prefixes: Trie::default() }
    }
}

#[derive(Debug)]
struct Trie<A> {
    children: HashMap<String, Trie<A>>,
    rules: Vec<Arc<RouteRule<A>>>,
}

impl<A> Default for Trie<A> {
    fn default() -> Self {
        Self { children: HashMap::new(), rules: Vec::new() }
    }
}

fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// Orders rules by address, the order [`Bucket::members`] keeps.
fn by_address<A>(rules: &mut [Arc<RouteRule<A>>]) {
    rules.sort_unstable_by_key(|r| Arc::as_ptr(r).addr());
}

impl<A> Bucket<A> {
    /// A bucket of `members` (ordered [`by_address`]), or `previous` when it holds exactly these rules.
    fn of(members: Vec<Arc<RouteRule<A>>>, previous: Option<&Arc<Bucket<A>>>) -> Arc<Self> {
        if let Some(previous) = previous
            && previous.members.len() == members.len()
            && previous.members.iter().zip(&members).all(|(a, b)| Arc::ptr_eq(a, b))
        {
            return previous.clone();
        }
        let mut bucket = Bucket::default();
        members.iter().for_each(|r| bucket.insert(r.clone()));
        bucket.sort();
        bucket.members = members;
        Arc::new(bucket)
    }

    fn insert(&mut self, rule: Arc<RouteRule<A>>) {
        match &rule.path {
            PathMatch::Exact(p) => self.exact.entry(p.clone()).or_default().push(rule),
            PathMatch::Regex(_) => self.regex.push(rule),
            PathMatch::Prefix(p) => {
                let mut node = &mut self.prefixes;
                for seg in segments(p) {
                    node = node.children.entry(seg.to_owned()).or_default();
                }
                node.rules.push(rule);
            }
        }
    }

    fn sort(&mut self) {
        for rules in self.exact.values_mut() {
            rules.sort_by(|a, b| a.order.cmp(&b.order));
        }
        // Longer patterns are taken as more specific among regular expressions.
        self.regex.sort_by(|a, b| {
            let len = |r: &RouteRule<A>| match &r.path {
                PathMatch::Regex(re) => std::cmp::Reverse(re.as_str().len()),
                _ => std::cmp::Reverse(0),
            };
            (len(a), &a.order).cmp(&(len(b), &b.order))
        });
        fn sort_trie<A>(t: &mut Trie<A>) {
            t.rules.sort_by(|a, b| a.order.cmp(&b.order));
            t.children.values_mut().for_each(sort_trie);
        }
        sort_trie(&mut self.prefixes);
    }

    fn lookup(&self, req: &RequestView<'_>) -> Option<&Arc<RouteRule<A>>> {
        let ok = |r: &&Arc<RouteRule<A>>| r.conditions.matches(req.method, req.headers, req.query);
        if let Some(r) = self.exact.get(req.path).and_then(|rules| rules.iter().find(ok)) {
            return Some(r);
        }
        if let Some(r) = self.regex.iter().filter(|r| matches!(&r.path, PathMatch::Regex(re) if re.is_match(req.path))).find(ok) {
            return Some(r);
        }
        // Walk down as far as the path goes, remembering each node with rules; try deepest first.
        // Few prefixes along one path have rules: they are kept on the stack, not allocated per request.
        let mut with_rules: SmallVec<[&Trie<A>; 8]> = SmallVec::new();
        let mut node = &self.prefixes;
        if !node.rules.is_empty() {
            with_rules.push(node);
        }
        for seg in segments(req.path) {
            match node.children.get(seg) {
                Some(child) => {
                    node = child;
                    if !node.rules.is_empty() {
                        with_rules.push(node);
                    }
                }
                None => break,
            }
        }
        with_rules.iter().rev().find_map(|n| n.rules.iter().find(ok))
    }
}

/// The compiled routes of a snapshot. Buckets are shared with the table
/// they were compiled from when their rules did not change
/// ([`RouteTable::compile_reusing`]), so a table is cheap to copy.
#[derive(Debug)]
pub struct RouteTable<A> {
    exact_hosts: HashMap<String, Arc<Bucket<A>>>,
    /// Keyed by the suffix after `*.`.
    wildcard_hosts: HashMap<String, Arc<Bucket<A>>>,
    any_host: Arc<Bucket<A>>,
}

impl<A> Default for RouteTable<A> {
    fn default() -> Self {
        Self { exact_hosts: HashMap::new(), wildcard_hosts: HashMap::new(), any_host: Arc::default() }
    }
}

// A derive would ask `A: Clone`; the buckets are shared.
impl<A> Clone for RouteTable<A> {
    fn clone(&self) -> Self {
        Self { exact_hosts: self.exact_hosts.clone(), wildcard_hosts: self.wildcard_hosts.clone(), any_host: self.any_host.clone() }
    }
}

impl<A> RouteTable<A> {
    pub fn compile<'a>(routes: impl IntoIterator<Item = &'a CompiledRoute<A>>) -> Self
    where
        A: 'a,
    {
        Self::compile_reusing(routes, &RouteTable::default())
    }

    /// Compiles `routes`, sharing every bucket of `previous` (one per host)
    /// whose rules are the same ones: after one route changed, one host's
    /// bucket is compiled again and the others are pointer copies.
    pub fn compile_reusing<'a>(routes: impl IntoIterator<Item = &'a CompiledRoute<A>>, previous: &RouteTable<A>) -> Self
    where
        A: 'a,
    {
        let (mut exact, mut wildcard) = (HashMap::<String, Vec<_>>::new(), HashMap::<String, Vec<_>>::new());
        let mut any = Vec::new();
        for route in routes {
            if route.hostnames.is_empty() {
                any.extend(route.rules.iter().cloned());
            }
            for host in &route.hostnames {
                let host = host.to_ascii_lowercase();
                let members = match host.strip_prefix("*.") {
                    Some(suffix) => wildcard.entry(suffix.to_owned()).or_default(),
                    None => exact.entry(host).or_default(),
                };
                members.extend(route.rules.iter().cloned());
            }
        }
        let buckets = |hosts: HashMap<String, Vec<Arc<RouteRule<A>>>>, previous: &HashMap<String, Arc<Bucket<A>>>| {
            hosts
                .into_iter()
                .map(|(host, mut members)| {
                    by_address(&mut members);
                    let bucket = Bucket::of(members, previous.get(&host));
                    (host, bucket)
                })
                .collect()
        };
        by_address(&mut any);
        RouteTable {
            exact_hosts: buckets(exact, &previous.exact_hosts),
            wildcard_hosts: buckets(wildcard, &previous.wildcard_hosts),
            any_host: Bucket::of(any, Some(&previous.any_host)),
        }
    }

    /// The winning rule for a request, or None (404).
    pub fn lookup(&self, req: &RequestView<'_>) -> Option<&Arc<RouteRule<A>>> {
        if let Some(rule) = self.exact_hosts.get(req.host).and_then(|b| b.lookup(req)) {
            return Some(rule);
        }
        let mut rest = req.host;
        while let Some((_, suffix)) = rest.split_once('.') {
            if let Some(rule) = self.wildcard_hosts.get(suffix).and_then(|b| b.lookup(req)) {
                return Some(rule);
            }
            rest = suffix;
        }
        self.any_host.lookup(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A test route: (name, hostnames, path, methods, header count, created).
    fn rule(name: &str, path: PathMatch, conditions: Conditions, created: i64, index: usize) -> RouteRule<String> {
        RouteRule {
            action: Arc::new(name.to_owned()),
            order: RuleOrder {
                no_methods: conditions.methods.is_empty(),
                fewer_headers: std::cmp::Reverse(conditions.headers.len()),
                fewer_query: std::cmp::Reverse(conditions.query.len()),
                created,
                namespace_name: ("default".into(), name.into()),
                match_index: index,
            },
            path,
            conditions,
        }
    }

    fn route(name: &str, hosts: &[&str], path: PathMatch) -> CompiledRoute<String> {
        CompiledRoute {
            hostnames: hosts.iter().map(|h| h.to_string()).collect(),
            rules: vec![Arc::new(rule(name, path, Conditions::default(), 0, 0))],
        }
    }

    fn prefix(p: &str) -> PathMatch {
        PathMatch::Prefix(p.trim_end_matches('/').to_owned())
    }

    fn find<'a>(t: &'a RouteTable<String>, host: &str, path: &str) -> Option<&'a str> {
        find_with(t, host, path, &Method::GET, &HeaderMap::new())
    }

    fn find_with<'a>(t: &'a RouteTable<String>, host: &str, path: &str, method: &Method, headers: &HeaderMap) -> Option<&'a str> {
        let (path, query) = path.split_once('?').map_or((path, None), |(p, q)| (p, Some(q)));
        t.lookup(&RequestView { host, path, query, method, headers }).map(|r| r.action.as_str())
    }

    #[test]
    fn prefixes_match_whole_segments_longest_first() {
        let t = RouteTable::compile(&[
            route("root", &[], prefix("/")),
            route("api", &[], prefix("/api")),
            route("v1", &[], prefix("/api/v1/")),
        ]);
        assert_eq!(find(&t, "x", "/api"), Some("api"));
        assert_eq!(find(&t, "x", "/api/"), Some("api"));
        assert_eq!(find(&t, "x", "/api/x"), Some("api"));
        assert_eq!(find(&t, "x", "/apix"), Some("root"));
        assert_eq!(find(&t, "x", "/api/v1/users?id=1"), Some("v1"));
        assert_eq!(find(&t, "x", "/api/v10"), Some("api"));
    }

    #[test]
    fn exact_beats_regex_beats_prefix() {
        let t = RouteTable::compile(&[
            route("prefix", &[], prefix("/users")),
            route("regex", &[], PathMatch::Regex(Regex::new("^(?:/users/[0-9]+)$").unwrap())),
            route("exact", &[], PathMatch::Exact("/users/42".into())),
        ]);
        assert_eq!(find(&t, "x", "/users/42"), Some("exact"));
        assert_eq!(find(&t, "x", "/users/7"), Some("regex"));
        assert_eq!(find(&t, "x", "/users/me"), Some("prefix"));
        assert_eq!(find(&t, "x", "/other"), None);
    }

    #[test]
    fn hosts_exact_then_most_specific_wildcard_then_any() {
        let t = RouteTable::compile(&[
            route("exact", &["api.example.com"], prefix("/")),
            route("wild", &["*.example.com"], prefix("/")),
            route("deeper", &["*.eu.example.com"], prefix("/")),
            route("any", &[], prefix("/")),
        ]);
        assert_eq!(find(&t, "api.example.com", "/"), Some("exact"));
        assert_eq!(find(&t, "web.example.com", "/"), Some("wild"));
        assert_eq!(find(&t, "a.b.example.com", "/"), Some("wild"), "wildcards cover several labels");
        assert_eq!(find(&t, "x.eu.example.com", "/"), Some("deeper"));
        assert_eq!(find(&t, "example.com", "/"), Some("any"), "*.example.com does not match the bare domain");
        assert_eq!(find(&t, "other.org", "/"), Some("any"));
    }

    #[test]
    fn a_specific_host_still_sees_less_specific_routes_for_other_paths() {
        let t = RouteTable::compile(&[
            route("exact-api", &["api.example.com"], prefix("/api")),
            route("wild", &["*.example.com"], prefix("/")),
        ]);
        assert_eq!(find(&t, "api.example.com", "/api/x"), Some("exact-api"));
        assert_eq!(find(&t, "api.example.com", "/static"), Some("wild"));
    }

    #[test]
    fn methods_then_headers_then_age_break_ties() {
        use router_api::v1alpha1::{HeaderMatch, HttpMethod, MatchType};
        let h = |n: &str| HeaderMatch { name: n.into(), value: Some("1".into()), type_: MatchType::Exact };
        let rules = vec![
            rule("plain-new", prefix("/"), Conditions::default(), 20, 0),
            rule("plain-old", prefix("/"), Conditions::default(), 10, 0),
            rule("get", prefix("/"), Conditions::compile(&[HttpMethod::Get], &[], &[], false).unwrap(), 30, 0),
            rule("two-headers", prefix("/"), Conditions::compile(&[], &[h("a"), h("b")], &[], false).unwrap(), 30, 0),
            rule("one-header", prefix("/"), Conditions::compile(&[], &[h("a")], &[], false).unwrap(), 30, 0),
        ];
        let routes: Vec<_> = rules.into_iter().map(|r| CompiledRoute { hostnames: vec![], rules: vec![Arc::new(r)] }).collect();
        let t = RouteTable::compile(&routes);
        let mut hm = HeaderMap::new();
        assert_eq!(find_with(&t, "x", "/", &Method::GET, &hm), Some("get"));
        assert_eq!(find_with(&t, "x", "/", &Method::POST, &hm), Some("plain-old"));
        hm.insert("a", "1".parse().unwrap());
        assert_eq!(find_with(&t, "x", "/", &Method::POST, &hm), Some("one-header"));
        hm.insert("b", "1".parse().unwrap());
        assert_eq!(find_with(&t, "x", "/", &Method::POST, &hm), Some("two-headers"));
    }

    #[test]
    fn a_recompiled_table_shares_the_buckets_whose_rules_did_not_change() {
        let (a, b) = (route("a", &["a.example.com"], prefix("/")), route("b", &["*.example.com"], prefix("/")));
        let (any, b2) = (route("any", &[], prefix("/")), route("b2", &["*.example.com"], prefix("/v2")));
        let first = RouteTable::compile([&a, &b, &any]);
        // The same rules in another order share every bucket; a new rule on one host rebuilds that host's alone.
        let same = RouteTable::compile_reusing([&any, &b, &a], &first);
        let changed = RouteTable::compile_reusing([&a, &b, &b2, &any], &same);
        assert!(Arc::ptr_eq(&first.exact_hosts["a.example.com"], &same.exact_hosts["a.example.com"]));
        assert!(Arc::ptr_eq(&first.wildcard_hosts["example.com"], &same.wildcard_hosts["example.com"]));
        assert!(Arc::ptr_eq(&first.any_host, &same.any_host));
        assert!(Arc::ptr_eq(&same.exact_hosts["a.example.com"], &changed.exact_hosts["a.example.com"]));
        assert!(!Arc::ptr_eq(&same.wildcard_hosts["example.com"], &changed.wildcard_hosts["example.com"]));
        assert_eq!(find(&changed, "x.example.com", "/v2/y"), Some("b2"));
        assert_eq!(find(&changed, "x.example.com", "/v1"), Some("b"));
        let without_b = RouteTable::compile_reusing([&a, &any], &changed);
        assert!(without_b.wildcard_hosts.is_empty(), "a host whose routes are gone has no bucket");
        assert_eq!(find(&without_b, "x.example.com", "/v2/y"), Some("any"));
    }

    #[test]
    fn host_normalisation() {
        assert_eq!(normalize_host("API.Example.com:8080"), "api.example.com");
        assert_eq!(normalize_host("example.com."), "example.com");
        assert_eq!(normalize_host("[::1]:80"), "::1");
        assert_eq!(normalize_host("10.0.0.1"), "10.0.0.1");
    }
}
