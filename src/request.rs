//! Turns an HTTP request into an [`ObjectRequest`] before any work is done:
//! a normalised object key, the parsed processing pipeline, the range and the
//! client's validators. Anything malformed fails here with a 4xx, before the
//! cache, the origin or a pixel is touched.

use crate::error::Error;
use crate::origin::ByteRange;
use crate::process::{ChainMemo, ParsedChain, Pipeline};
use crate::url::{decode_component, encoded_process_param};
use http::{header, HeaderMap, Method, Uri, Version};
use std::sync::Arc;
use std::time::SystemTime;

/// A parsed GET/HEAD for an object.
#[derive(Debug, Clone)]
pub struct ObjectRequest {
    /// HEAD: headers only.
    pub head: bool,
    /// Host the request named (URI authority or Host header), validated and in its
    /// canonical form ([`crate::url::parse_host`]), for the cache key.
    pub host: String,
    /// Object path with leading `/`, percent-decoded.
    pub path: String,
    /// Raw query string, if any.
    pub query: Option<String>,
    /// The processing chain (with its canonical spelling), if `x-oss-process` was given.
    pub chain: Option<Arc<ParsedChain>>,
    /// Single byte range asked for (multi-range and malformed ranges are ignored).
    pub range: Option<ByteRange>,
    /// `If-None-Match`, verbatim.
    pub if_none_match: Option<String>,
    /// `If-Modified-Since`, parsed.
    pub if_modified_since: Option<SystemTime>,
    /// `Accept-Encoding`, verbatim (used for JSON/XML bodies only).
    pub accept_encoding: Option<String>,
    /// `Accept`, verbatim (auto-format negotiation).
    pub accept: Option<String>,
    /// The output class auto-format chose (`webp`); part of the cache key.
    pub format_class: Option<&'static str>,
    /// The answer depends on `Accept` (auto-format could apply): send `Vary: Accept`.
    pub vary_accept: bool,
    /// Path and query as parsed (after access rewrites): what a cluster node forwards
    /// to the key's owner, which parses it into the same request.
    pub uri: String,
    /// Forwarded by another cluster node (authenticated): never forwarded again.
    pub hop: bool,
}

impl ObjectRequest {
    /// The processing chain, if any.
    pub fn pipeline(&self) -> Option<&Pipeline> {
        self.chain.as_deref().map(|c| &c.pipeline)
    }

    /// The chain's canonical spelling (part of the cache key), if any.
    pub fn canonical_chain(&self) -> Option<&str> {
        self.chain.as_deref().map(|c| c.canonical.as_str())
    }

    /// The origin key: the path without its leading `/`.
    pub fn key(&self) -> &str {
        self.path.strip_prefix('/').unwrap_or(&self.path)
    }

    /// Parses method, URI and headers with HTTP/1.1 rules for the host: a Host header
    /// or an absolute URI is required ([`request_host`]).
    ///
    /// # Errors
    /// `InvalidKey` for unsafe paths, `InvalidArgument` for a missing or invalid
    /// Host, `MethodNotAllowed`, and processing parse errors.
    pub fn parse(method: &Method, uri: &Uri, headers: &HeaderMap, chains: &ChainMemo) -> Result<ObjectRequest, Error> {
        let host = request_host(Version::HTTP_11, uri, headers, String::new)?;
        ObjectRequest::parse_with_host(method, uri, host, headers, chains)
    }

    /// [`ObjectRequest::parse`] with the host already taken from the request by
    /// [`request_host`].
    ///
    /// # Errors
    /// As [`ObjectRequest::parse`].
    pub fn parse_with_host(
        method: &Method,
        uri: &Uri,
        host: String,
        headers: &HeaderMap,
        chains: &ChainMemo,
    ) -> Result<ObjectRequest, Error> {
        let head = match *method {
            Method::GET => false,
            Method::HEAD => true,
            _ => return Err(Error::MethodNotAllowed("GET, HEAD, OPTIONS")),
        };
        let mut path = normalize_path(uri.path())?;
        let query = uri.query().map(str::to_owned);
        let mut chain = match encoded_process_param(query.as_deref()) {
            Some(value) => Some(chains.parse_encoded(value)?),
            None => None,
        };
        if let Some((key_end, style)) =
            split_style_suffix(&path, chains.style_delimiters(), |name| chains.has_style(name))
        {
            if chain.is_some() {
                // Two chains for one request: which the client meant is a guess.
                return Err(Error::InvalidArgument("a style in the path and x-oss-process together".into()));
            }
            // Parsed as `style/<name>`, so the canonical chain (and the cache key) is the
            // one `?x-oss-process=style/<name>` gives.
            chain = Some(chains.parse(&format!("style/{style}"))?);
            path.truncate(key_end);
        }
        let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let uri_text = uri.path_and_query().map_or_else(|| uri.path().to_owned(), |pq| pq.as_str().to_owned());
        Ok(ObjectRequest {
            uri: uri_text,
            hop: false,
            head,
            host,
            path,
            query,
            chain,
            range: text(header::RANGE).and_then(parse_range),
            if_none_match: text(header::IF_NONE_MATCH).map(str::to_owned),
            if_modified_since: text(header::IF_MODIFIED_SINCE).and_then(|v| httpdate::parse_http_date(v).ok()),
            accept_encoding: text(header::ACCEPT_ENCODING).map(str::to_owned),
            accept: text(header::ACCEPT).map(str::to_owned),
            format_class: None,
            vary_accept: false,
        })
    }

    /// Auto-format: when enabled and the chain names no format, serve AVIF (if enabled)
    /// or WebP to clients whose `Accept` lists them. The cache keys the class, not the raw header,
    /// so every browser that takes WebP shares one entry.
    pub fn negotiate_format(&mut self, auto_webp: bool, auto_avif: bool) {
        let Some(chain) = self.chain.clone() else {
            return;
        };
        let pipeline = &chain.pipeline;
        if !(auto_webp || auto_avif) || !pipeline.allows_auto_format() {
            return;
        }
        self.vary_accept = true;
        let accept = self.accept.as_deref().unwrap_or("");
        if auto_avif && list_accepts(accept, "image/avif") {
            self.chain = Some(Arc::new(ParsedChain::new(pipeline.with_auto_avif())));
            self.format_class = Some("avif");
        } else if auto_webp && accepts_webp(accept) {
            self.chain = Some(Arc::new(ParsedChain::new(pipeline.with_auto_webp())));
            self.format_class = Some("webp");
        }
    }
}

/// True when an `Accept` header lists `image/webp` with a non-zero quality.
pub fn accepts_webp(accept: &str) -> bool {
    list_accepts(accept, "image/webp")
}

/// True when a comma-separated negotiation header (`Accept`, `Accept-Encoding`) lists
/// `token` (case-insensitive) without `q=0`.
pub fn list_accepts(list: &str, token: &str) -> bool {
    list.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts
            .any(|p| p.trim().strip_prefix("q=").and_then(|q| q.trim().parse::<f32>().ok()).is_some_and(|q| q <= 0.0));
        name.eq_ignore_ascii_case(token) && !refused
    })
}

/// The `x-oss-process` value, percent-decoded once. The name is case-sensitive:
/// OSS ignores `X-Oss-Process`.
pub fn process_param(query: Option<&str>) -> Option<String> {
    encoded_process_param(query).map(|value| decode_component(value).into_owned())
}

/// The host a request names, validated and canonical ([`crate::url::parse_host`]).
///
/// The URI authority (HTTP/2 `:authority`, or an HTTP/1.1 absolute-form target) wins
/// over the Host header, as RFC 9112 §3.2.2 and RFC 9113 §8.3.1 say. A Host header
/// that is present is validated in every case, and more than one is refused. An
/// HTTP/1.1 request without a Host header is refused (RFC 9112 §3.2). HTTP/1.0 and
/// older, which had no Host requirement, fall back to `default` (the listener's
/// address), as nginx serves them from its default server. An invalid host is
/// refused, never folded into a default.
///
/// # Errors
/// `InvalidArgument` (400) naming what is wrong (not echoing the value).
pub fn request_host(
    version: Version,
    uri: &Uri,
    headers: &HeaderMap,
    default: impl FnOnce() -> String,
) -> Result<String, Error> {
    let bad = |why: &str| Error::InvalidArgument(format!("invalid Host: {why}"));
    let mut all = headers.get_all(header::HOST).iter();
    let header = all.next();
    if all.next().is_some() {
        return Err(bad("more than one Host header"));
    }
    let from_header = match header {
        Some(value) => Some(crate::url::parse_host(value.to_str().map_err(|_| bad("non-ASCII Host"))?).map_err(bad)?),
        None => None,
    };
    if let Some(authority) = uri.authority() {
        if version == Version::HTTP_11 && from_header.is_none() {
            return Err(bad("HTTP/1.1 request without Host"));
        }
        return crate::url::parse_host(authority.as_str()).map_err(bad);
    }
    match from_header {
        Some(host) => Ok(host),
        None if version == Version::HTTP_10 || version == Version::HTTP_09 => Ok(default()),
        None if version == Version::HTTP_11 => Err(bad("HTTP/1.1 request without Host")),
        None => Err(bad("no :authority or Host")),
    }
}

/// Validates and decodes an object path ([`crate::url::normalize_path`]): `%2F`
/// is a `/`, as in OSS; traversal, NUL, backslashes, empty segments and invalid
/// UTF-8 are refused.
///
/// # Errors
/// `Error::InvalidKey` naming the problem.
pub fn normalize_path(raw: &str) -> Result<String, Error> {
    crate::url::normalize_path(raw).map_err(Error::InvalidKey)
}

/// OSS style URLs (spec §1.1, §4.18): with style delimiters configured, a decoded
/// object path `<key><delimiter><style>` names `<key>` processed by the configured style
/// `<style>`. Returns where the object path ends and the style name, or `None` when the
/// path is an object key as it stands.
///
/// The rule, exactly:
/// - delimiters are tried in the order `-`, `_`, `/`, `!` (the spec's [decision]; only
///   those in `delimiters`); the first that gives a split wins;
/// - for one delimiter, its occurrences are tried from the last one back, and the first
///   whose right side is the name of a configured style (`is_style`) splits there;
/// - the left side must stay a valid key: not empty, not ending in `/`;
/// - for `!`, a left side ending in `@` (OSS's `a.jpg@!style` spelling) drops the `@`,
///   unless that leaves nothing.
///
/// A suffix that names no configured style is not a split: the path stays the object
/// key as named (so `photo-2024.jpg` is served with `-` as a delimiter and no style
/// `2024.jpg`, and an unknown style answers as a missing object, 404 NoSuchKey). The
/// spec does not say what OSS answers there; this keeps every key with a delimiter in
/// its name reachable.
pub fn split_style_suffix<'p>(
    path: &'p str,
    delimiters: &str,
    is_style: impl Fn(&str) -> bool,
) -> Option<(usize, &'p str)> {
    if delimiters.is_empty() {
        return None;
    }
    for delimiter in crate::config::STYLE_DELIMITERS.chars().filter(|c| delimiters.contains(*c)) {
        for (at, _) in path.rmatch_indices(delimiter) {
            let (left, style) = (&path[..at], &path[at + 1..]);
            if left.len() <= 1 || left.ends_with('/') || !is_style(style) {
                continue;
            }
            let key_end = match left.strip_suffix('@') {
                Some(rest) if delimiter == '!' && rest.len() > 1 && !rest.ends_with('/') => rest.len(),
                _ => left.len(),
            };
            return Some((key_end, style));
        }
    }
    None
}

/// Parses a single `bytes=` range; multi-range and malformed values give None
/// (the whole object is served, as RFC 9110 allows).
pub fn parse_range(value: &str) -> Option<ByteRange> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (first, last) = spec.split_once('-')?;
    let (first, last) = (first.trim(), last.trim());
    if first.is_empty() {
        return last.parse().ok().map(ByteRange::Suffix);
    }
    let first: u64 = first.parse().ok()?;
    let last: Option<u64> = if last.is_empty() { None } else { Some(last.parse().ok()?) };
    if last.is_some_and(|l| l < first) {
        return None;
    }
    Some(ByteRange::From { first, last })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_paths_are_invalid_keys() {
        assert!(matches!(normalize_path("/a/../b"), Err(Error::InvalidKey("dot segment"))));
        assert_eq!(normalize_path("/a%2Fb.jpg").unwrap(), "/a/b.jpg");
    }

    fn host_of(version: Version, uri: &str, hosts: &[&str]) -> Result<String, Error> {
        let uri: Uri = uri.parse().unwrap();
        let mut headers = HeaderMap::new();
        for h in hosts {
            headers.append(header::HOST, header::HeaderValue::from_bytes(h.as_bytes()).unwrap());
        }
        request_host(version, &uri, &headers, || "default:1".to_owned())
    }

    /// Issue 15 A1: the Host is an RFC 3986 authority or the request is refused.
    #[test]
    fn host_is_validated_per_http_version() {
        use Version as V;
        assert_eq!(host_of(V::HTTP_11, "/a", &["Example.com:80"]).unwrap(), "example.com");
        assert!(host_of(V::HTTP_11, "/a", &["example.com/sub"]).is_err());
        assert!(host_of(V::HTTP_11, "/a", &["a@b"]).is_err());
        assert!(host_of(V::HTTP_11, "/a", &[""]).is_err());
        assert!(host_of(V::HTTP_11, "/a", &["bücher.de"]).is_err());
        assert!(host_of(V::HTTP_11, "/a", &["a.com", "b.com"]).is_err());
        assert!(host_of(V::HTTP_11, "/a", &[]).is_err(), "HTTP/1.1 needs Host");
        assert_eq!(host_of(V::HTTP_10, "/a", &[]).unwrap(), "default:1");
        assert!(host_of(V::HTTP_10, "/a", &["a b"]).is_err(), "a bad Host is never defaulted");
        // The absolute-form authority wins over Host, and both are checked.
        assert_eq!(host_of(V::HTTP_11, "http://a.com/x", &["b.com"]).unwrap(), "a.com");
        assert!(host_of(V::HTTP_11, "http://a.com/x", &[]).is_err());
        assert!(host_of(V::HTTP_11, "http://a.com/x", &["b/c"]).is_err());
        assert!(host_of(V::HTTP_11, "http://u@a.com/x", &["a.com"]).is_err());
        // HTTP/2: :authority, no Host needed.
        assert_eq!(host_of(V::HTTP_2, "http://[::1]:8080/x", &[]).unwrap(), "[::1]:8080");
        assert!(host_of(V::HTTP_2, "/x", &[]).is_err());
    }

    #[test]
    fn webp_acceptance_by_browser() {
        assert!(accepts_webp("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"));
        assert!(accepts_webp("image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5"));
        assert!(accepts_webp("image/avif,image/webp,*/*"));
        assert!(!accepts_webp("*/*"));
        assert!(!accepts_webp("image/webp;q=0, */*"));
    }

    /// Issue 16 item 7: `<key><delimiter><style>` splits only on a configured
    /// delimiter and a configured style.
    #[test]
    fn style_suffixes_split_on_configured_styles_only() {
        let styles = |name: &str| matches!(name, "thumb" | "small" | "x-y" | "y");
        let split = |path: &'static str, delims: &str| {
            split_style_suffix(path, delims, styles).map(|(end, style)| (&path[..end], style))
        };
        assert_eq!(split("/a.jpg!thumb", "!"), Some(("/a.jpg", "thumb")));
        assert_eq!(split("/a.jpg@!thumb", "!"), Some(("/a.jpg", "thumb")));
        assert_eq!(split("/dir/a.jpg!thumb", "!"), Some(("/dir/a.jpg", "thumb")));
        assert_eq!(split("/a.jpg!thumb", ""), None, "off by default");
        assert_eq!(split("/a.jpg!thumb", "-"), None, "only configured delimiters");
        assert_eq!(split("/a.jpg!nosuch", "!"), None, "an unknown style is the object as named");
        assert_eq!(split("/photo-2024.jpg", "-"), None, "keys with a delimiter keep working");
        assert_eq!(split("/photo-2024.jpg-small", "-"), Some(("/photo-2024.jpg", "small")));
        // The last occurrence whose right side is a style: `x-y` is not tried before `y`.
        assert_eq!(split("/a.jpg-x-y", "-"), Some(("/a.jpg-x", "y")));
        assert_eq!(split("/a.jpg-x-z", "-"), None);
        // Delimiters in the spec's order: `-` before `_` and `!`.
        assert_eq!(split("/a.jpg_x-y", "_-"), Some(("/a.jpg_x", "y")));
        assert_eq!(split("/a.jpg!x-y", "!"), Some(("/a.jpg", "x-y")));
        assert_eq!(split("/a.jpg/thumb", "/"), Some(("/a.jpg", "thumb")));
        // The key must stay a key.
        assert_eq!(split("/!thumb", "!"), None);
        assert_eq!(split("/dir/!thumb", "!"), None);
        assert_eq!(split("/@!thumb", "!"), Some(("/@", "thumb")), "`@` alone is the key");
        assert_eq!(split("/a.jpg@-thumb", "-"), Some(("/a.jpg@", "thumb")), "`@` is dropped for `!` only");
    }

    #[test]
    fn ranges_parse() {
        assert_eq!(parse_range("bytes=0-9"), Some(ByteRange::From { first: 0, last: Some(9) }));
        assert_eq!(parse_range("bytes=5-"), Some(ByteRange::From { first: 5, last: None }));
        assert_eq!(parse_range("bytes=-5"), Some(ByteRange::Suffix(5)));
        assert_eq!(parse_range("bytes=0-1,4-5"), None);
        assert_eq!(parse_range("bytes=9-1"), None);
        assert_eq!(parse_range("items=0-1"), None);
        assert_eq!(parse_range("bytes=a-b"), None);
    }

    #[test]
    fn process_param_is_case_sensitive_and_decoded() {
        assert_eq!(process_param(Some("x-oss-process=image%2Fresize%2Cw_100")).as_deref(), Some("image/resize,w_100"));
        assert_eq!(process_param(Some("X-Oss-Process=image/resize,w_1")), None);
        assert_eq!(process_param(None), None);
    }
}
