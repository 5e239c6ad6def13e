//! URL rewrite, redirect and CORS: Gateway API filter semantics.

use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use router_api::v1alpha1::{Cors, Redirect, RedirectScheme, UrlRewrite};
use router_core::route_table::PathMatch;

/// The path after `rewrite`, given what the rule matched.
pub fn rewrite_path(path: &str, matched: &PathMatch, rewrite: &UrlRewrite) -> Option<String> {
    let modifier = rewrite.path.as_ref()?;
    if let Some(full) = &modifier.replace_full_path {
        return Some(full.clone());
    }
    let replacement = modifier.replace_prefix_match.as_deref()?;
    match matched {
        PathMatch::Prefix(prefix) => {
            let rest = &path[prefix.len().min(path.len())..];
            // Join without doubling or dropping the slash between the parts.
            let replacement = replacement.trim_end_matches('/');
            Some(match (replacement.is_empty(), rest.is_empty()) {
                (true, true) => "/".to_owned(),
                (true, false) => rest.to_owned(),
                (false, _) => format!("{replacement}{rest}"),
            })
        }
        // replacePrefixMatch on anything but a prefix match replaces the whole path.
        _ => Some(replacement.to_owned()),
    }
}

/// The Location and status of a redirect for a request.
pub fn redirect_location(
    redirect: &Redirect,
    request_scheme: &str,
    host: &str,
    request_port: Option<u16>,
    path_and_query: (&str, Option<&str>),
    matched: &PathMatch,
) -> (StatusCode, String) {
    let scheme = match redirect.scheme {
        Some(RedirectScheme::Http) => "http",
        Some(RedirectScheme::Https) => "https",
        None => request_scheme,
    };
    let host = redirect.hostname.as_deref().unwrap_or(host);
    // Gateway API: a scheme change without an explicit port drops to that scheme's default port.
    let port = match (redirect.port, redirect.scheme) {
        (Some(p), _) => u16::try_from(p).ok(),
        (None, Some(_)) => None,
        (None, None) => request_port,
    };
    let port = port.filter(|p| !matches!((scheme, *p), ("http", 80) | ("https", 443)));
    let (path, query) = path_and_query;
    let path = redirect
        .path
        .as_ref()
        .and_then(|m| rewrite_path(path, matched, &UrlRewrite { hostname: None, path: Some(m.clone()) }))
        .unwrap_or_else(|| path.to_owned());
    let mut location = format!("{scheme}://{host}");
    if let Some(p) = port {
        location.push_str(&format!(":{p}"));
    }
    location.push_str(&path);
    if let Some(q) = query {
        location.push('?');
        location.push_str(q);
    }
    let status = StatusCode::from_u16(redirect.status_code.code()).unwrap_or(StatusCode::FOUND);
    (status, location)
}

/// Whether `origin` is allowed by the CORS policy; returns the value to echo.
pub fn allowed_origin<'a>(cors: &Cors, origin: &'a str) -> Option<&'a str> {
    cors.allow_origins
        .iter()
        .any(|allowed| {
            allowed == "*"
                || allowed == origin
                || allowed.split_once("://*.").is_some_and(|(scheme, suffix)| {
                    origin.strip_prefix(scheme).and_then(|o| o.strip_prefix("://")).is_some_and(|host| {
                        host.len() > suffix.len() && host.ends_with(suffix) && host.as_bytes()[host.len() - suffix.len() - 1] == b'.'
                    })
                })
        })
        .then_some(origin)
}

/// Whether a request is a CORS preflight (the gateway answers those itself).
pub fn is_preflight(method: &Method, headers: &HeaderMap) -> bool {
    method == Method::OPTIONS && headers.contains_key(header::ORIGIN) && headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// Headers of the answer to a preflight; None when the origin is not allowed
/// (the browser then blocks the request — the gateway still answers 204).
pub fn preflight_headers(cors: &Cors, request: &HeaderMap) -> HeaderMap {
    let mut h = HeaderMap::new();
    let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()).and_then(|o| allowed_origin(cors, o)) else {
        return h;
    };
    add_origin_headers(cors, origin, &mut h);
    let methods: Vec<&str> =
        if cors.allow_methods.is_empty() { vec!["GET", "HEAD", "POST"] } else { cors.allow_methods.iter().map(|m| m.as_str()).collect() };
    if let Ok(v) = HeaderValue::from_str(&methods.join(", ")) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if !cors.allow_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.allow_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age_seconds {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    h
}

/// Headers added to an actual (non-preflight) response for an allowed origin.
pub fn add_origin_headers(cors: &Cors, origin: &str, h: &mut HeaderMap) {
    let Ok(v) = HeaderValue::from_str(origin) else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    if cors.allow_credentials {
        h.insert(header::ACCESS_CONTROL_ALLOW_CREDENTIALS, HeaderValue::from_static("true"));
    }
    if !cors.expose_headers.is_empty()
        && let Ok(v) = HeaderValue::from_str(&cors.expose_headers.join(", "))
    {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
}

#[cfg(test)]
mod tests {
    use router_api::v1alpha1::{HttpMethod, PathModifier, RedirectStatus};

    use super::*;

    fn prefix_rewrite(to: &str) -> UrlRewrite {
        UrlRewrite { hostname: None, path: Some(PathModifier { replace_full_path: None, replace_prefix_match: Some(to.into()) }) }
    }

    #[test]
    fn prefix_rewrite_keeps_the_rest_of_the_path() {
        let m = PathMatch::Prefix("/api".into());
        assert_eq!(rewrite_path("/api/users", &m, &prefix_rewrite("/v2")).unwrap(), "/v2/users");
        assert_eq!(rewrite_path("/api", &m, &prefix_rewrite("/v2")).unwrap(), "/v2");
        assert_eq!(rewrite_path("/api/users", &m, &prefix_rewrite("/")).unwrap(), "/users");
        assert_eq!(rewrite_path("/api", &m, &prefix_rewrite("/")).unwrap(), "/");
    }

    #[test]
    fn full_path_rewrite_replaces_everything() {
        let rw = UrlRewrite {
            hostname: None,
            path: Some(PathModifier { replace_full_path: Some("/health".into()), replace_prefix_match: None }),
        };
        assert_eq!(rewrite_path("/anything/here", &PathMatch::Prefix(String::new()), &rw).unwrap(), "/health");
    }

    #[test]
    fn redirect_to_https_drops_the_port_and_keeps_path_and_query() {
        let r = Redirect { scheme: Some(RedirectScheme::Https), status_code: RedirectStatus::MovedPermanently, ..Default::default() };
        let (status, loc) =
            redirect_location(&r, "http", "api.example.com", Some(8080), ("/a/b", Some("x=1")), &PathMatch::Prefix(String::new()));
        assert_eq!(status, StatusCode::MOVED_PERMANENTLY);
        assert_eq!(loc, "https://api.example.com/a/b?x=1");
    }

    #[test]
    fn redirect_with_port_and_host() {
        let r = Redirect { hostname: Some("new.example.com".into()), port: Some(8443), ..Default::default() };
        let (status, loc) = redirect_location(&r, "http", "old.example.com", None, ("/", None), &PathMatch::Prefix(String::new()));
        assert_eq!(status, StatusCode::FOUND);
        assert_eq!(loc, "http://new.example.com:8443/");
    }

    #[test]
    fn cors_origins_exact_wildcard_and_star() {
        let cors = Cors {
            allow_origins: vec!["https://app.example.com".into(), "https://*.example.org".into()],
            allow_methods: vec![HttpMethod::Get, HttpMethod::Post],
            max_age_seconds: Some(600),
            ..Default::default()
        };
        assert!(allowed_origin(&cors, "https://app.example.com").is_some());
        assert!(allowed_origin(&cors, "https://a.b.example.org").is_some());
        assert!(allowed_origin(&cors, "https://example.org").is_none());
        assert!(allowed_origin(&cors, "http://app.example.com").is_none());
        let mut req = HeaderMap::new();
        req.insert(header::ORIGIN, "https://app.example.com".parse().unwrap());
        req.insert(header::ACCESS_CONTROL_REQUEST_METHOD, "POST".parse().unwrap());
        assert!(is_preflight(&Method::OPTIONS, &req));
        let h = preflight_headers(&cors, &req);
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_ORIGIN], "https://app.example.com");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, POST");
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "600");
    }
}
