//! Per-site HTTPS policy: the redirect of plain-HTTP requests to HTTPS (the CDN's
//! "force redirect", 301 or 308) and the HSTS header on HTTPS answers.

use crate::access::SiteConfig;
use crate::tls::Scheme;
use http::{HeaderValue, StatusCode, Uri};

/// The redirect a plain-HTTP request to `site` gets: status and `Location`
/// (`https://host[:https_port]/path?query`; the port is left out when 443).
pub fn redirect(
    site: Option<&SiteConfig>,
    scheme: Scheme,
    host: &str,
    uri: &Uri,
    https_port: u16,
) -> Option<(StatusCode, String)> {
    let code = site?.https_redirect?;
    if scheme != Scheme::Http {
        return None;
    }
    let status = StatusCode::from_u16(code).ok()?;
    // The host without its port (`[v6]:port` keeps its brackets).
    let name = match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && (!h.contains(':') || h.ends_with(']')) => h,
        _ => host,
    };
    let port = if https_port == 443 { String::new() } else { format!(":{https_port}") };
    let target = uri.path_and_query().map_or("/", http::uri::PathAndQuery::as_str);
    Some((status, format!("https://{name}{port}{target}")))
}

/// The `Strict-Transport-Security` value for an HTTPS answer of `site`.
pub fn hsts(site: Option<&SiteConfig>, scheme: Scheme) -> Option<HeaderValue> {
    let site = site?;
    let max_age = site.hsts_max_age?;
    if scheme != Scheme::Https {
        // RFC 6797 §7.2: not over plain HTTP.
        return None;
    }
    let mut value = format!("max-age={max_age}");
    if site.hsts_include_subdomains {
        value.push_str("; includeSubDomains");
    }
    if site.hsts_preload {
        value.push_str("; preload");
    }
    HeaderValue::from_str(&value).ok()
}

/// The cache-key variant of an HTTPS request when `tls.cache_key_scheme` splits the
/// cache by scheme: the auto-format class (if any) marked `https`. It rides in the
/// key's variant, which purges ignore, so a purge of the URL still drops both schemes'
/// entries.
pub fn https_variant(class: Option<&'static str>) -> &'static str {
    match class {
        Some("webp") => "https+webp",
        Some("avif") => "https+avif",
        _ => "https",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(text: &str) -> SiteConfig {
        toml::from_str(&format!("hosts = [\"a.test\"]\n{text}")).unwrap()
    }

    #[test]
    fn redirects_only_plain_http_and_keeps_path_and_query() {
        let s = site("https_redirect = 308");
        let uri: Uri = "/x.jpg?x-oss-process=image/resize,w_10".parse().unwrap();
        let (status, to) = redirect(Some(&s), Scheme::Http, "a.test:8080", &uri, 8443).unwrap();
        assert_eq!(status, StatusCode::PERMANENT_REDIRECT);
        assert_eq!(to, "https://a.test:8443/x.jpg?x-oss-process=image/resize,w_10");
        assert_eq!(redirect(Some(&s), Scheme::Http, "[::1]:80", &uri, 443).unwrap().1, format!("https://[::1]{uri}"));
        assert!(redirect(Some(&s), Scheme::Https, "a.test", &uri, 443).is_none());
        assert!(redirect(Some(&site("")), Scheme::Http, "a.test", &uri, 443).is_none());
        assert!(redirect(None, Scheme::Http, "a.test", &uri, 443).is_none());
    }

    #[test]
    fn hsts_only_over_https() {
        let s = site("hsts_max_age = 31536000\nhsts_include_subdomains = true");
        assert_eq!(hsts(Some(&s), Scheme::Https).unwrap(), "max-age=31536000; includeSubDomains");
        assert!(hsts(Some(&s), Scheme::Http).is_none());
        assert!(hsts(Some(&site("")), Scheme::Https).is_none());
    }
}
