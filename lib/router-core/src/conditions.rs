//! The parts of a match checked per request once the path has picked the
//! candidates: method, headers, query parameters and "is this gRPC".

use http::{HeaderMap, HeaderName, Method};
use regex::Regex;
use router_api::v1alpha1::{HeaderMatch, HttpMethod, MatchType, QueryParamMatch};

/// How one value is compared.
#[derive(Debug, Clone)]
pub enum ValueMatch {
    Exact(String),
    Regex(Regex),
    Present,
}

impl ValueMatch {
    fn compile(type_: MatchType, value: Option<&str>, what: &str) -> Result<Self, String> {
        Ok(match type_ {
            MatchType::Present => Self::Present,
            MatchType::Exact => Self::Exact(value.unwrap_or_default().to_owned()),
            MatchType::RegularExpression => {
                let re = value.unwrap_or_default();
                Self::Regex(Regex::new(&format!("^(?:{re})$")).map_err(|e| format!("{what}: invalid regular expression: {e}"))?)
            }
        })
    }

    fn matches(&self, value: &[u8]) -> bool {
        match self {
            Self::Present => true,
            Self::Exact(v) => v.as_bytes() == value,
            Self::Regex(re) => std::str::from_utf8(value).is_ok_and(|v| re.is_match(v)),
        }
    }
}

/// Everything but the path that a request must satisfy.
#[derive(Debug, Clone, Default)]
pub struct Conditions {
    /// Empty: any method.
    pub methods: Vec<Method>,
    pub headers: Vec<(HeaderName, ValueMatch)>,
    pub query: Vec<(String, ValueMatch)>,
    /// Only gRPC requests (content-type application/grpc...).
    pub grpc_only: bool,
}

impl Conditions {
    pub fn compile(methods: &[HttpMethod], headers: &[HeaderMatch], query: &[QueryParamMatch], grpc_only: bool) -> Result<Self, String> {
        let headers = headers
            .iter()
            .map(|h| {
                let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| format!("header name {:?} is invalid", h.name))?;
                Ok((name, ValueMatch::compile(h.type_, h.value.as_deref(), &format!("header {}", h.name))?))
            })
            .collect::<Result<_, String>>()?;
        let query = query
            .iter()
            .map(|q| Ok((q.name.clone(), ValueMatch::compile(q.type_, q.value.as_deref(), &format!("query parameter {}", q.name))?)))
            .collect::<Result<_, String>>()?;
        Ok(Self {
            methods: methods.iter().map(|m| Method::from_bytes(m.as_str().as_bytes()).expect("static method names are valid")).collect(),
            headers,
            query,
            grpc_only,
        })
    }

    /// Checks the request's method, headers and query against these conditions.
    pub fn matches(&self, method: &Method, headers: &HeaderMap, query: Option<&str>) -> bool {
        if !self.methods.is_empty() && !self.methods.contains(method) {
            return false;
        }
        if self.grpc_only && !headers.get(http::header::CONTENT_TYPE).is_some_and(|ct| ct.as_bytes().starts_with(b"application/grpc")) {
            return false;
        }
        for (name, want) in &self.headers {
            // A repeated header matches when any of its values does.
            if !headers.get_all(name).iter().any(|v| want.matches(v.as_bytes())) {
                return false;
            }
        }
        for (name, want) in &self.query {
            let found = query
                .into_iter()
                .flat_map(|q| q.split('&'))
                .filter_map(|pair| {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    (k == name).then_some(v)
                })
                .any(|v| want.matches(v.as_bytes()));
            if !found {
                return false;
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn header(name: &str, value: Option<&str>, type_: MatchType) -> HeaderMatch {
        HeaderMatch { name: name.into(), value: value.map(Into::into), type_ }
    }

    #[test]
    fn methods_headers_and_query_must_all_hold() {
        let c = Conditions::compile(
            &[HttpMethod::Get],
            &[header("x-canary", Some("true"), MatchType::Exact), header("x-user", Some("u[0-9]+"), MatchType::RegularExpression)],
            &[QueryParamMatch { name: "version".into(), value: Some("2".into()), type_: MatchType::Exact }],
            false,
        )
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-canary", HeaderValue::from_static("true"));
        h.insert("x-user", HeaderValue::from_static("u42"));
        assert!(c.matches(&Method::GET, &h, Some("a=1&version=2")));
        assert!(!c.matches(&Method::POST, &h, Some("version=2")), "method");
        assert!(!c.matches(&Method::GET, &h, Some("version=3")), "query value");
        assert!(!c.matches(&Method::GET, &h, None), "query missing");
        h.insert("x-user", HeaderValue::from_static("u42x"));
        assert!(!c.matches(&Method::GET, &h, Some("version=2")), "regex is anchored");
    }

    #[test]
    fn header_names_are_case_insensitive_and_present_ignores_value() {
        let c = Conditions::compile(&[], &[header("X-Debug", None, MatchType::Present)], &[], false).unwrap();
        let mut h = HeaderMap::new();
        assert!(!c.matches(&Method::GET, &h, None));
        h.insert("x-debug", HeaderValue::from_static(""));
        assert!(c.matches(&Method::GET, &h, None));
    }

    #[test]
    fn grpc_only_requires_the_grpc_content_type() {
        let c = Conditions::compile(&[], &[], &[], true).unwrap();
        let mut h = HeaderMap::new();
        assert!(!c.matches(&Method::POST, &h, None));
        h.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc+proto"));
        assert!(c.matches(&Method::POST, &h, None));
    }

    #[test]
    fn invalid_regex_is_an_error_naming_the_header() {
        let err = Conditions::compile(&[], &[header("x-a", Some("("), MatchType::RegularExpression)], &[], false).unwrap_err();
        assert!(err.starts_with("header x-a: invalid regular expression"), "{err}");
    }
}
