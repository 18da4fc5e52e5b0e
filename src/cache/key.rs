//! Cache keys: one function turns a request (host, object path, query) into a
//! [`CacheKey`], and both GET and purge call it.
//!
//! The canonical URL is `host/path?query` where the query has URL-auth parameters
//! and configured ignored parameters removed, `x-oss-process` replaced by the
//! pipeline's canonical spelling, and the rest sorted. Equivalent URLs therefore
//! share one entry, and every processing variant is its own entry. The key is a
//! stable 128-bit hash (xxh3) of the canonical URL, never a per-process hasher.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use std::borrow::Cow;

/// Query parameter names that carry URL or origin signatures. They never enter
/// the cache key, or every signed URL would be its own entry.
const AUTH_PARAMS: &[&str] = &[
    "auth_key",
    "OSSAccessKeyId",
    "Expires",
    "Signature",
    "security-token",
    "x-oss-credential",
    "x-oss-date",
    "x-oss-expires",
    "x-oss-additional-headers",
    "x-oss-security-token",
    "X-Amz-Algorithm",
    "X-Amz-Credential",
    "X-Amz-Date",
    "X-Amz-Expires",
    "X-Amz-SignedHeaders",
    "X-Amz-Signature",
    "X-Amz-Security-Token",
];

/// True for query parameters that authenticate the URL rather than name content.
pub fn is_auth_param(name: &str) -> bool {
    AUTH_PARAMS.contains(&name) || name.starts_with("x-oss-signature")
}

/// The processing parameter, kept in every key.
pub const PROCESS_PARAM: &str = "x-oss-process";

/// Pseudo-parameter carrying the negotiated output class (auto-format).
pub const VARIANT_PARAM: &str = "~format";

/// Characters escaped in canonical query names and values.
const QUERY_ESCAPE: &AsciiSet =
    &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~').remove(b'/').remove(b',').remove(b'~');

/// A fixed-size cache key plus what purges need to match it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Stable 128-bit hash of `url`.
    pub hash: [u8; 16],
    /// Canonical `host/path[?query]`.
    pub url: String,
    /// Where the host and the path end in `url` (one allocation per key, not three).
    host_end: usize,
    path_end: usize,
}

impl CacheKey {
    /// Builds the key.
    ///
    /// `process` is the canonical pipeline (already parsed), used in place of the raw
    /// `x-oss-process` value; `ignore` names further parameters to leave out.
    pub fn new(
        host: &str,
        path: &str,
        query: Option<&str>,
        process: Option<&str>,
        variant: Option<&str>,
        ignore: &[String],
    ) -> CacheKey {
        let mut pairs: Vec<(Cow<'_, str>, Cow<'_, str>)> = Vec::new();
        for (name, raw_value) in query_tokens(query.unwrap_or("")) {
            if name == PROCESS_PARAM
                || name == VARIANT_PARAM
                || is_auth_param(&name)
                || ignore.iter().any(|i| *i == name)
            {
                continue;
            }
            pairs.push((name, decode_component(raw_value)));
        }
        if let Some(p) = process {
            pairs.push((Cow::Borrowed(PROCESS_PARAM), Cow::Borrowed(p)));
        }
        if let Some(class) = variant {
            // Cannot collide with a real parameter: `~` never starts one we keep.
            pairs.push((Cow::Borrowed(VARIANT_PARAM), Cow::Borrowed(class)));
        }
        pairs.sort();
        let mut url = String::with_capacity(host.len() + path.len() + 64);
        push_normalized_host(&mut url, host);
        let host_end = url.len();
        url.push_str(path);
        let path_end = url.len();
        for (i, (name, value)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            push_escaped(&mut url, name);
            if !value.is_empty() {
                url.push('=');
                push_escaped(&mut url, value);
            }
        }
        let hash = xxhash_rust::xxh3::xxh3_128(url.as_bytes()).to_le_bytes();
        CacheKey { hash, url, host_end, path_end }
    }

    /// Lower-case host (with port when not default).
    pub fn host(&self) -> &str {
        self.url.get(..self.host_end).unwrap_or_default()
    }

    /// Object path with its leading `/` (the "primary": all variants share it).
    pub fn path(&self) -> &str {
        self.url.get(self.host_end..self.path_end).unwrap_or_default()
    }

    /// The canonical URL without its host: `path[?query]`.
    pub fn path_and_query(&self) -> &str {
        self.url.get(self.host_end..).unwrap_or(&self.url)
    }

    /// `path_and_query` without the auto-format variant: every negotiated variant of
    /// one URL shares it (a purge of the URL purges them all).
    pub fn url_without_variant(&self) -> &str {
        let pq = self.path_and_query();
        match pq.find(&format!("{VARIANT_PARAM}=")) {
            Some(i) => pq.get(..i.saturating_sub(1)).unwrap_or(pq),
            None => pq,
        }
    }
}

/// Appends a query component with [`QUERY_ESCAPE`] applied; most need no escaping
/// (a canonical `x-oss-process` value never does), so check before encoding.
fn push_escaped(url: &mut String, component: &str) {
    let plain = |b: &u8| b.is_ascii_alphanumeric() || b"-_.~/,".contains(b);
    if component.as_bytes().iter().all(plain) {
        url.push_str(component);
    } else {
        url.extend(utf8_percent_encode(component, QUERY_ESCAPE));
    }
}

/// Lower-cases a host and drops a default port.
pub fn normalize_host(host: &str) -> String {
    let mut out = String::with_capacity(host.len());
    push_normalized_host(&mut out, host);
    out
}

/// [`normalize_host`] appended to `out`.
fn push_normalized_host(out: &mut String, host: &str) {
    let host = host.trim();
    let host = host.strip_suffix(":80").unwrap_or(host);
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
}

/// Splits a raw query into percent-decoded (name, value) pairs; empty tokens are skipped.
pub fn query_pairs(query: &str) -> impl Iterator<Item = (Cow<'_, str>, Cow<'_, str>)> {
    query_tokens(query).map(|(name, value)| (name, decode_component(value)))
}

/// [`query_pairs`] with the values left raw, for callers that skip most values
/// (decoding a long `x-oss-process` value on every request only to drop it costs).
pub fn query_tokens(query: &str) -> impl Iterator<Item = (Cow<'_, str>, &str)> {
    query.split('&').filter(|t| !t.is_empty()).map(|token| {
        let (n, v) = token.split_once('=').unwrap_or((token, ""));
        (decode_component(n), v)
    })
}

/// One percent-encoded query component, `+` read as a space.
pub fn decode_component(s: &str) -> Cow<'_, str> {
    if !s.as_bytes().iter().any(|&b| b == b'%' || b == b'+') {
        return Cow::Borrowed(s);
    }
    if s.contains('+') {
        let spaced = s.replace('+', " ");
        return Cow::Owned(percent_decode_str(&spaced).decode_utf8_lossy().into_owned());
    }
    percent_decode_str(s).decode_utf8_lossy()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: Option<&str>, p: Option<&str>) -> CacheKey {
        CacheKey::new("Example.COM", "/a.jpg", q, p, None, &[])
    }

    #[test]
    fn the_unescaped_shortcut_matches_the_encoder() {
        for component in ["image/resize,w_400/quality,q_80", "a b", "é", "a&b=c", "x%2Fy", "~-_.", "a+b", ""] {
            let mut url = String::new();
            push_escaped(&mut url, component);
            assert_eq!(url, utf8_percent_encode(component, QUERY_ESCAPE).to_string(), "{component}");
        }
        assert_eq!(decode_component("plain,value/x_1"), Cow::Borrowed("plain,value/x_1"));
        assert_eq!(decode_component("a%20b+c"), "a b c");
    }

    #[test]
    fn parameter_order_and_encoding_do_not_matter() {
        assert_eq!(key(Some("b=2&a=1"), None), key(Some("a=1&b=2"), None));
        assert_eq!(key(Some("a=%31"), None), key(Some("a=1"), None));
        assert_ne!(key(Some("a=1"), None), key(Some("a=2"), None));
    }

    #[test]
    fn auth_params_are_dropped_and_process_kept() {
        let plain = key(None, None);
        assert_eq!(key(Some("auth_key=1-0-0-abc"), None), plain);
        assert_eq!(key(Some("OSSAccessKeyId=x&Expires=1&Signature=s"), None), plain);
        assert_eq!(key(Some("x-oss-signature-version=OSS4-HMAC-SHA256"), None), plain);
        let processed = key(None, Some("image/resize,w_100"));
        assert_ne!(processed, plain);
        assert!(processed.url.ends_with("?x-oss-process=image/resize,w_100"));
    }

    #[test]
    fn host_is_case_insensitive_and_port_80_implied() {
        assert_eq!(
            CacheKey::new("example.com:80", "/a.jpg", None, None, None, &[]),
            CacheKey::new("EXAMPLE.com", "/a.jpg", None, None, None, &[])
        );
        assert_ne!(
            CacheKey::new("example.com:8080", "/a.jpg", None, None, None, &[]).hash,
            CacheKey::new("example.com", "/a.jpg", None, None, None, &[]).hash
        );
    }

    #[test]
    fn ignored_params_are_dropped() {
        let ignore = vec!["utm_source".to_owned()];
        assert_eq!(
            CacheKey::new("h", "/a", Some("utm_source=x&v=1"), None, None, &ignore),
            CacheKey::new("h", "/a", Some("v=1"), None, None, &ignore)
        );
    }

    #[test]
    fn hash_is_stable_across_processes() {
        // A fixed value: the key must never depend on a random per-process seed.
        let k = CacheKey::new("h", "/a", None, None, None, &[]);
        assert_eq!(k.url, "h/a");
        assert_eq!(k.hash, xxhash_rust::xxh3::xxh3_128(b"h/a").to_le_bytes());
    }
}
