//! Cache keys: one function turns a request (host, object path, query) into a
//! [`CacheKey`], and both GET and purge call it.
//!
//! The key is three parts kept apart: the validated, canonical host (no `/` can
//! occur in it, [`crate::url::parse_host`]), the decoded object path escaped so a
//! literal `?`, `#` or `%` in an object name cannot read as a delimiter
//! ([`crate::url::push_escaped_path`]), and the canonical query. The query has URL-auth
//! parameters and configured ignored parameters removed, `x-oss-process` replaced by
//! the pipeline's canonical spelling, the rest decoded to exact bytes, re-escaped and
//! sorted. Equivalent URLs therefore share one entry, and every processing variant
//! is its own entry. The three parts are written as the readable canonical URL
//! `host/path[?query]` (what purges match) and the boundaries are stored with it:
//! equality compares the whole text and both boundaries, and the stable 128-bit hash
//! (xxh3, never a per-process hasher) is seeded with the boundaries, so parts can
//! never slide into each other (a host `example.com/sub` with path `/a` is not
//! host `example.com` with path `/sub/a`, even for a caller that skipped validation).
//!
//! Documented equivalents (one entry): query parameter order, URL-auth parameters
//! and configured ignored parameters, the spelling of `x-oss-process`, percent-encoding
//! that decodes to the same bytes (in the path, `%2F` is `/` as in OSS), host case,
//! port 80 and a trailing dot of the host, and `a` versus `a=` in the query.

use crate::url::{decode_component_bytes, push_escaped_path, push_query_escaped};
use std::borrow::Cow;

// Re-exported so existing callers keep their paths; the helpers live in the leaf
// module `crate::url`.
pub use crate::url::{decode_component, query_pairs, query_tokens, PROCESS_PARAM};

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

/// Pseudo-parameter carrying the negotiated output class (auto-format).
pub const VARIANT_PARAM: &str = "~format";

/// One decoded query parameter, as exact bytes.
type QueryPair<'q> = (Cow<'q, [u8]>, Cow<'q, [u8]>);

/// A fixed-size cache key plus what purges need to match it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Stable 128-bit hash of `url` seeded with the part boundaries.
    pub hash: [u8; 16],
    /// Canonical `host/escaped-path[?query]`.
    pub url: String,
    /// Where the host and the path end in `url` (one allocation per key, not three).
    host_end: usize,
    path_end: usize,
}

impl CacheKey {
    /// Builds the key.
    ///
    /// `host` is the canonical host ([`crate::url::parse_host`]); `path` the decoded
    /// object path ([`crate::url::normalize_path`]); `query` the raw query.
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
        let mut pairs: Vec<QueryPair<'_>> = Vec::new();
        for token in query.unwrap_or("").split('&').filter(|t| !t.is_empty()) {
            let (raw_name, raw_value) = token.split_once('=').unwrap_or((token, ""));
            // Names are compared decoded (`x-oss-%70rocess` is the process parameter,
            // as request.rs reads it).
            let name = decode_component(raw_name);
            if name == PROCESS_PARAM
                || name == VARIANT_PARAM
                || is_auth_param(&name)
                || ignore.iter().any(|i| *i == name)
            {
                continue;
            }
            let exact_name = match name {
                Cow::Borrowed(n) => Cow::Borrowed(n.as_bytes()),
                // Decoded: take the exact bytes, not the lossy text.
                Cow::Owned(_) => decode_component_bytes(raw_name),
            };
            pairs.push((exact_name, decode_component_bytes(raw_value)));
        }
        if let Some(p) = process {
            pairs.push((Cow::Borrowed(PROCESS_PARAM.as_bytes()), Cow::Borrowed(p.as_bytes())));
        }
        if let Some(class) = variant {
            // Cannot collide with a real parameter: a client's `~format` is dropped above.
            pairs.push((Cow::Borrowed(VARIANT_PARAM.as_bytes()), Cow::Borrowed(class.as_bytes())));
        }
        pairs.sort();
        let mut url = String::with_capacity(host.len() + path.len() + 64);
        push_normalized_host(&mut url, host);
        let host_end = url.len();
        push_escaped_path(&mut url, path);
        let path_end = url.len();
        for (i, (name, value)) in pairs.iter().enumerate() {
            url.push(if i == 0 { '?' } else { '&' });
            push_query_escaped(&mut url, name);
            if !value.is_empty() {
                url.push('=');
                push_query_escaped(&mut url, value);
            }
        }
        let seed = ((host_end as u64) << 32) | path_end as u64;
        let hash = xxhash_rust::xxh3::xxh3_128_with_seed(url.as_bytes(), seed).to_le_bytes();
        CacheKey { hash, url, host_end, path_end }
    }

    /// A key read back from storage: the canonical URL and its part boundaries as
    /// [`CacheKey::bounds`] gave them; the hash is recomputed, never trusted. `None`
    /// when the boundaries do not fit the text.
    pub fn from_parts(url: String, host_end: usize, path_end: usize) -> Option<CacheKey> {
        if host_end > path_end || !url.is_char_boundary(host_end) || !url.is_char_boundary(path_end) {
            return None;
        }
        let seed = ((host_end as u64) << 32) | path_end as u64;
        let hash = xxhash_rust::xxh3::xxh3_128_with_seed(url.as_bytes(), seed).to_le_bytes();
        Some(CacheKey { hash, url, host_end, path_end })
    }

    /// Where the host and the path end in [`CacheKey::url`] (for [`CacheKey::from_parts`]).
    pub fn bounds(&self) -> (usize, usize) {
        (self.host_end, self.path_end)
    }

    /// Lower-case host (with port when not default).
    pub fn host(&self) -> &str {
        self.url.get(..self.host_end).unwrap_or_default()
    }

    /// Object path with its leading `/`, escaped as [`crate::url::escape_path`] does
    /// (the "primary": all variants share it). Purge targets escape their paths alike.
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
        let query_start = self.path_end - self.host_end;
        // Only in the query: a path may contain `~format=` literally.
        let query = pq.get(query_start..).unwrap_or_default();
        let found = [b'?', b'&'].iter().find_map(|&sep| {
            query.match_indices(VARIANT_PARAM).find(|(i, _)| {
                *i > 0
                    && query.as_bytes().get(i - 1) == Some(&sep)
                    && query.as_bytes().get(i + VARIANT_PARAM.len()) == Some(&b'=')
            })
        });
        match found {
            Some((i, _)) => pq.get(..query_start + i - 1).unwrap_or(pq),
            None => pq,
        }
    }
}

/// Lower-cases a host and drops a default port (idempotent on a host from
/// [`crate::url::parse_host`], which callers should use to validate first).
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

#[cfg(test)]
mod tests {
    use super::*;

    fn key(q: Option<&str>, p: Option<&str>) -> CacheKey {
        CacheKey::new("Example.COM", "/a.jpg", q, p, None, &[])
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
        assert_eq!(k.hash, xxhash_rust::xxh3::xxh3_128_with_seed(b"h/a", (1 << 32) | 3).to_le_bytes());
    }

    /// Issue 15 A2: a key whose name holds an escaped delimiter is not the shorter
    /// key with a query.
    #[test]
    fn escaped_delimiters_in_the_path_are_not_the_query() {
        let new = |path: &str, q: Option<&str>| CacheKey::new("h", path, q, None, None, &[]);
        for (decoded_path, path, query) in [
            ("/a?q=1", "/a", "q=1"),
            ("/a?q=1&r=2", "/a", "q=1&r=2"),
            ("/a#q=1", "/a", "q=1"),
            ("/a?q%3D1", "/a", "q%3D1"),
            ("/a?q=%25", "/a", "q=%25"),
        ] {
            let escaped = new(decoded_path, None);
            let with_query = new(path, Some(query));
            assert_ne!(escaped, with_query, "{decoded_path}");
            assert_ne!(escaped.hash, with_query.hash, "{decoded_path}");
            assert_eq!(escaped.path(), crate::url::escape_path(decoded_path));
        }
        assert_eq!(new("/a?q=1", None).url, "h/a%3Fq=1");
        // A literal `%3F` in a name (sent as `%253F`) is neither `?` nor the query.
        assert_ne!(new("/a%3Fq=1", None), new("/a?q=1", None));
        // `~format=` in a path is not the variant.
        assert_eq!(new("/x~format=webp", None).url_without_variant(), "/x~format=webp");
        let v = CacheKey::new("h", "/x", Some("a=1"), None, Some("webp"), &[]);
        assert_eq!(v.url_without_variant(), "/x?a=1");
    }

    /// Issue 15 A3: parts are kept apart even when the text would read the same.
    #[test]
    fn host_and_path_cannot_slide_into_each_other() {
        let poisoned = CacheKey::new("example.com/sub", "/hello.txt", None, None, None, &[]);
        let real = CacheKey::new("example.com", "/sub/hello.txt", None, None, None, &[]);
        assert_eq!(poisoned.url, real.url, "same text: only the boundaries differ");
        assert_ne!(poisoned, real);
        assert_ne!(poisoned.hash, real.hash);
    }

    #[test]
    fn query_bytes_are_kept_exactly() {
        let new = |q: &str| CacheKey::new("h", "/a", Some(q), None, None, &[]);
        assert_ne!(new("a=%FF"), new("a=%FE"));
        assert_ne!(new("%FF=1"), new("%FE=1"));
        assert_ne!(new("a%3Db=c"), new("a=b%3Dc"));
        assert_ne!(new("a=1%262"), new("a=1&2"));
        assert_eq!(new("a=1+2"), new("a=1%202"));
        assert_eq!(new("x-oss-%70rocess=junk"), new(""));
    }
}
