//! Access control before the cache lookup: the Host header selects a configured
//! site, then its IP rules, referer rules and URL authentication run, in the CDN's
//! order. A signed URL is rewritten to its plain form before the cache key is
//! built, so signatures never split the cache.
//!
//! With no `[[sites]]` configured every host is served without rules. Once sites
//! are configured, a Host that names none of them is refused: the Host header can
//! only select configured sites.

pub mod rules;
pub mod url_auth;

use crate::error::Error;
use http::HeaderMap;
use rules::{IpMatcher, IpRules, RefererRules};
use serde::Deserialize;
use std::net::IpAddr;
use url_auth::UrlAuthConfig;

/// One site (a CDN "accelerated domain").
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// Host names this site answers (without port); `*` matches any host.
    pub hosts: Vec<String>,
    /// URL authentication (types A, B, C).
    #[serde(default)]
    pub url_auth: Option<UrlAuthConfig>,
    /// Referer allow/deny list.
    #[serde(default)]
    pub referer: Option<RefererRules>,
    /// IP allow/deny list.
    #[serde(default)]
    pub ip: Option<IpRules>,
    /// This site's certificate chain (PEM), chosen by SNI on the HTTPS listener.
    #[serde(default)]
    pub tls_cert: Option<std::path::PathBuf>,
    /// Its private key (PEM).
    #[serde(default)]
    pub tls_key: Option<std::path::PathBuf>,
    /// Answer plain-HTTP requests with a redirect to HTTPS, with this status (301 or
    /// 308; the CDN's "force redirect"). Default: no redirect.
    #[serde(default)]
    pub https_redirect: Option<u16>,
    /// Send `Strict-Transport-Security: max-age=N` on HTTPS answers. Default: none.
    #[serde(default)]
    pub hsts_max_age: Option<u64>,
    /// Add `includeSubDomains` to HSTS.
    #[serde(default)]
    pub hsts_include_subdomains: bool,
    /// Add `preload` to HSTS.
    #[serde(default)]
    pub hsts_preload: bool,
}

#[derive(Debug)]
struct Site {
    config: SiteConfig,
    ip: Option<IpMatcher>,
}

/// Compiled access rules for all sites.
#[derive(Debug, Default)]
pub struct Access {
    sites: Vec<Site>,
}

/// The request's path and query as rewritten by URL authentication (signature
/// removed). Requests that pass without a rewrite keep their URI as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admitted {
    /// Raw path (signature prefix removed).
    pub path: String,
    /// Raw query (signature parameters removed).
    pub query: Option<String>,
}

/// The parts of a request access control looks at.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    /// Host header (may carry a port).
    pub host: &'a str,
    /// Raw path.
    pub path: &'a str,
    /// Raw query.
    pub query: Option<&'a str>,
    /// Request headers (Referer, X-Forwarded-For).
    pub headers: &'a HeaderMap,
    /// TCP peer address.
    pub peer: IpAddr,
    /// Now, Unix seconds.
    pub now: u64,
}

impl Access {
    /// Compiles the sites.
    ///
    /// # Errors
    /// A message naming the bad entry.
    pub fn new(sites: &[SiteConfig]) -> Result<Access, String> {
        let sites = sites
            .iter()
            .enumerate()
            .map(|(i, s)| {
                if s.hosts.is_empty() {
                    return Err(format!("sites[{i}].hosts must not be empty"));
                }
                let ip = s.ip.as_ref().map(IpMatcher::new).transpose().map_err(|e| format!("sites[{i}].ip: {e}"))?;
                if s.https_redirect.is_some_and(|code| code != 301 && code != 308) {
                    return Err(format!("sites[{i}].https_redirect must be 301 or 308"));
                }
                if s.tls_cert.is_some() != s.tls_key.is_some() {
                    return Err(format!("sites[{i}].tls_cert and tls_key must be set together"));
                }
                Ok(Site { config: s.clone(), ip })
            })
            .collect::<Result<_, String>>()?;
        Ok(Access { sites })
    }

    /// The settings of the site `host` (a Host header value; a port is ignored).
    pub fn site_config(&self, host: &str) -> Option<&SiteConfig> {
        self.site(host).map(|s| &s.config)
    }

    fn site(&self, host: &str) -> Option<&Site> {
        let host =
            host.rsplit_once(':').filter(|(_, p)| p.bytes().all(|b| b.is_ascii_digit())).map_or(host, |(h, _)| h);
        self.sites
            .iter()
            .find(|s| s.config.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)))
            .or_else(|| self.sites.iter().find(|s| s.config.hosts.iter().any(|h| h == "*")))
    }

    /// Runs the rules for one request: `Some` with the rewritten path and query when
    /// URL authentication stripped its parameters, `None` when the URI stands as sent.
    ///
    /// # Errors
    /// `AccessDenied` (403) for unknown hosts, IP and referer refusals; `UrlAuth`
    /// (403 with `X-Tengine-Error`) for failed URL signatures.
    pub fn admit(&self, req: RequestParts<'_>) -> Result<Option<Admitted>, Error> {
        if self.sites.is_empty() {
            return Ok(None);
        }
        let site = self.site(req.host).ok_or_else(|| Error::AccessDenied("This host is not served here.".into()))?;
        let header = |name: &str| req.headers.get(name).and_then(|v| v.to_str().ok());
        if let Some(ip) = &site.ip {
            if !ip.allows(req.peer, header("x-forwarded-for")) {
                return Err(Error::AccessDenied("Access denied by IP rules.".into()));
            }
        }
        if let Some(referer) = &site.config.referer {
            if !referer.allows(header("referer")) {
                return Err(Error::AccessDenied("Access denied by referer rules.".into()));
            }
        }
        let Some(auth) = &site.config.url_auth else {
            return Ok(None);
        };
        let processing = crate::url::encoded_process_param(req.query).is_some();
        match auth.verify(req.path, req.query, req.now) {
            Ok(v) => Ok(Some(Admitted { path: v.path, query: v.query })),
            Err(url_auth::AuthFailure::Missing) if auth.only_processing && !processing => Ok(None),
            Err(e) => Err(Error::UrlAuth(e.as_str())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts<'a>(host: &'a str, path: &'a str, query: Option<&'a str>, headers: &'a HeaderMap) -> RequestParts<'a> {
        RequestParts { host, path, query, headers, peer: "127.0.0.1".parse().unwrap(), now: 1444435200 }
    }

    #[test]
    fn unknown_hosts_are_refused_once_sites_exist() {
        let h = HeaderMap::new();
        assert!(Access::default().admit(parts("any", "/a", None, &h)).is_ok());
        let a = Access::new(&[SiteConfig {
            hosts: vec!["media.example.com".into()],
            url_auth: None,
            referer: None,
            ip: None,
            tls_cert: None,
            tls_key: None,
            https_redirect: None,
            hsts_max_age: None,
            hsts_include_subdomains: false,
            hsts_preload: false,
        }])
        .unwrap();
        assert!(a.admit(parts("media.example.com:8080", "/a", None, &h)).is_ok());
        assert!(matches!(a.admit(parts("evil.com", "/a", None, &h)), Err(Error::AccessDenied(_))));
    }

    #[test]
    fn only_processing_urls_need_signatures_when_configured() {
        let toml = r#"
            hosts = ["*"]
            [url_auth]
            type = "A"
            primary_key = "aliyuncdnexp1234"
            only_processing = true
        "#;
        let site: SiteConfig = toml::from_str(toml).unwrap();
        let a = Access::new(&[site]).unwrap();
        let h = HeaderMap::new();
        assert!(a.admit(parts("x", "/video/standard/test.mp4", None, &h)).is_ok());
        assert!(matches!(
            a.admit(parts("x", "/a.jpg", Some("x-oss-process=image/resize,w_10"), &h)),
            Err(Error::UrlAuth(_))
        ));
        let ok = a
            .admit(parts(
                "x",
                "/video/standard/test.mp4",
                Some("auth_key=1444435200-0-0-23bf85053008f5c0e791667a313e28ce&x-oss-process=image/info"),
                &h,
            ))
            .unwrap()
            .unwrap();
        assert_eq!(ok.query.as_deref(), Some("x-oss-process=image/info"));
    }
}
