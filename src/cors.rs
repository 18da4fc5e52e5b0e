//! CORS for browser use, configured like a bucket's CORS rule: allowed origins
//! (`*` or exact origins, `*` wildcards inside a host allowed), allowed methods
//! GET/HEAD, allowed request headers, exposed headers and the preflight max age.

use http::{header, HeaderMap, HeaderValue, Method};
use serde::Deserialize;

/// CORS settings; no allowed origins = CORS off.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CorsConfig {
    /// `*`, or origins such as `https://www.example.com`, `https://*.example.com`.
    pub allowed_origins: Vec<String>,
    /// Request headers a preflight may ask for (`*` = any).
    pub allowed_headers: Vec<String>,
    /// Response headers scripts may read.
    pub expose_headers: Vec<String>,
    /// Preflight cache time, seconds.
    pub max_age_secs: u64,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allowed_headers: vec!["*".into()],
            expose_headers: ["ETag", "X-Cache", "Age", "Content-Length", "x-oss-request-id"].map(String::from).to_vec(),
            max_age_secs: 600,
        }
    }
}

impl CorsConfig {
    fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.iter().any(|rule| rule == "*" || wildcard_match(rule, origin))
    }

    /// Headers to add to an actual response, if the request's Origin is allowed.
    pub fn response_headers(&self, request: &HeaderMap) -> Vec<(header::HeaderName, HeaderValue)> {
        let Some(origin) = request.get(header::ORIGIN).and_then(|o| o.to_str().ok()) else {
            return Vec::new();
        };
        if !self.origin_allowed(origin) {
            return Vec::new();
        }
        let allow = if self.allowed_origins.iter().any(|r| r == "*") { "*" } else { origin };
        let mut out = vec![(header::VARY, HeaderValue::from_static("Origin"))];
        if let Ok(v) = HeaderValue::from_str(allow) {
            out.push((header::ACCESS_CONTROL_ALLOW_ORIGIN, v));
        }
        if let Ok(v) = HeaderValue::from_str(&self.expose_headers.join(", ")) {
            out.push((header::ACCESS_CONTROL_EXPOSE_HEADERS, v));
        }
        out
    }

    /// Headers for a preflight, or None when it must be refused.
    pub fn preflight(&self, request: &HeaderMap) -> Option<Vec<(header::HeaderName, HeaderValue)>> {
        let mut out = self.response_headers(request);
        if out.is_empty() {
            return None;
        }
        let method = request
            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
            .and_then(|m| m.to_str().ok())
            .and_then(|m| m.parse::<Method>().ok());
        if !matches!(method, Some(Method::GET | Method::HEAD)) {
            return None;
        }
        let asked = request.get(header::ACCESS_CONTROL_REQUEST_HEADERS).and_then(|h| h.to_str().ok()).unwrap_or("");
        let any = self.allowed_headers.iter().any(|h| h == "*");
        let all_allowed = asked
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .all(|h| any || self.allowed_headers.iter().any(|a| a.eq_ignore_ascii_case(h)));
        if !all_allowed {
            return None;
        }
        out.push((header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, HEAD")));
        if let Ok(v) = HeaderValue::from_str(asked) {
            if !asked.is_empty() {
                out.push((header::ACCESS_CONTROL_ALLOW_HEADERS, v));
            }
        }
        out.push((header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(self.max_age_secs)));
        Some(out)
    }
}

/// `https://*.example.com` style match; `*` stands for any run of characters.
fn wildcard_match(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern.eq_ignore_ascii_case(text),
        Some((pre, post)) => {
            text.len() >= pre.len() + post.len()
                && text[..pre.len()].eq_ignore_ascii_case(pre)
                && text[text.len() - post.len()..].eq_ignore_ascii_case(post)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(header::HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn origins_match_exactly_or_by_wildcard() {
        let c = CorsConfig { allowed_origins: vec!["https://*.example.com".into()], ..CorsConfig::default() };
        assert!(!c.response_headers(&headers(&[("origin", "https://a.example.com")])).is_empty());
        assert!(c.response_headers(&headers(&[("origin", "https://evil.com")])).is_empty());
        assert!(c.response_headers(&headers(&[])).is_empty());
        assert!(CorsConfig::default().response_headers(&headers(&[("origin", "https://a.example.com")])).is_empty());
    }

    #[test]
    fn preflight_checks_method_and_headers() {
        let c = CorsConfig {
            allowed_origins: vec!["*".into()],
            allowed_headers: vec!["range".into()],
            ..CorsConfig::default()
        };
        let ok = c.preflight(&headers(&[
            ("origin", "https://x"),
            ("access-control-request-method", "GET"),
            ("access-control-request-headers", "Range"),
        ]));
        assert!(ok.is_some());
        assert!(c.preflight(&headers(&[("origin", "https://x"), ("access-control-request-method", "PUT")])).is_none());
        assert!(c
            .preflight(&headers(&[
                ("origin", "https://x"),
                ("access-control-request-method", "GET"),
                ("access-control-request-headers", "x-secret")
            ]))
            .is_none());
    }
}
