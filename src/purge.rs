//! The admin API's purge and prefetch, with the semantics of the CDN's
//! RefreshObjectCaches and PushObjectCache (spec f.5).
//!
//! A request is authenticated (constant-time bearer compare), then parsed whole
//! into [`PurgeTask`]s (JSON `{"type", "paths", "force"}` or the CDN's form
//! parameters `ObjectPath`, `ObjectType`, `Force`) before anything is touched.
//! File and IgnoreParams purges remove entries; Directory and Regex purges mark
//! them stale (the next request revalidates) unless `force` is set.

use crate::cache::key::CacheKey;
use crate::cache::PurgeTarget;
use crate::error::Error;
use crate::request::{normalize_path, process_param, ObjectRequest};
use crate::url::{escape_path, parse_host, query_pairs};
use crate::App;
use http::{header, HeaderMap};
use serde::Deserialize;
use std::sync::Arc;
use subtle::ConstantTimeEq;

/// Longest accepted path or pattern, as the CDN's limit.
const MAX_PATH_LEN: usize = 1024;
/// Per-call limits, as the CDN's: URLs, directories, regexes.
const MAX_FILES: usize = 1000;
const MAX_DIRECTORIES: usize = 100;
const MAX_REGEXES: usize = 10;
/// Compiled-regex size bound, so a pattern cannot eat memory or time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Purge kinds, named as in the CDN API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PurgeKind {
    /// One exact URL.
    File,
    /// Every URL under a directory.
    Directory,
    /// Every URL matching a pattern.
    Regex,
    /// Every variant of a path, whatever its query.
    IgnoreParams,
}

impl PurgeKind {
    fn parse(s: &str) -> Option<PurgeKind> {
        match s.to_ascii_lowercase().as_str() {
            "file" => Some(PurgeKind::File),
            "directory" => Some(PurgeKind::Directory),
            "regex" => Some(PurgeKind::Regex),
            "ignore_params" | "ignoreparams" | "exquery" => Some(PurgeKind::IgnoreParams),
            _ => None,
        }
    }
}

/// One parsed purge: what to match and whether to remove or mark stale.
#[derive(Debug)]
pub struct PurgeTask {
    /// What it matches.
    pub target: PurgeTarget,
    /// Remove (true) or mark stale for revalidation (false).
    pub remove: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPurge {
    #[serde(rename = "type", default = "default_type")]
    kind: String,
    paths: Vec<String>,
    #[serde(default)]
    force: bool,
}

fn default_type() -> String {
    "file".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonPrefetch {
    paths: Vec<String>,
}

/// Checks the bearer token when one is configured.
///
/// # Errors
/// `Unauthorized` when it is missing or wrong.
pub fn authorize(app: &App, headers: &HeaderMap) -> Result<(), Error> {
    let live = app.live();
    let Some(token) = live.purge_token.as_deref() else {
        return Ok(());
    };
    let given = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(bearer_token).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(token.as_bytes())) {
        Ok(())
    } else {
        Err(Error::Unauthorized)
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme name is
/// case-insensitive (RFC 9110 11.1, RFC 6750 2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim_start_matches(' '))
}

/// Raw purge input: kind, paths, force (also read by the CDN API's
/// `RefreshObjectCaches`, to record its tasks).
///
/// # Errors
/// 400 for bad JSON, a body that is not UTF-8 or an unknown `ObjectType`.
pub fn read_purge_input(
    content_type: &str,
    body: &[u8],
    query: Option<&str>,
) -> Result<(PurgeKind, Vec<String>, bool), Error> {
    if content_type.starts_with("application/json") {
        let p: JsonPurge = serde_json::from_slice(body)
            .map_err(|e| Error::InvalidPurge("InvalidParameter", format!("bad JSON: {e}")))?;
        let kind = PurgeKind::parse(&p.kind).ok_or_else(|| bad_type(&p.kind))?;
        return Ok((kind, p.paths, p.force));
    }
    // CDN form parameters, in the body or the query string.
    let text = std::str::from_utf8(body).map_err(|_| malformed("body is not UTF-8"))?;
    let (mut kind, mut paths, mut force) = (PurgeKind::File, Vec::new(), false);
    for (name, value) in query_pairs(text).chain(query_pairs(query.unwrap_or(""))) {
        match &*name {
            "ObjectPath" => paths.extend(value.split('\n').map(|l| l.trim_end_matches('\r').to_owned())),
            "ObjectType" => kind = PurgeKind::parse(&value).ok_or_else(|| bad_type(&value))?,
            "Force" => force = value.eq_ignore_ascii_case("true"),
            _ => {}
        }
    }
    Ok((kind, paths, force))
}

fn bad_type(t: &str) -> Error {
    Error::InvalidPurge(
        "InvalidObjectType.Malformed",
        format!("unknown purge type {t:?}: use file, directory, regex or ignore_params"),
    )
}

fn malformed(why: &str) -> Error {
    Error::InvalidPurge("InvalidObjectPath.Malformed", why.to_owned())
}

/// Parses a purge request into tasks.
///
/// # Errors
/// 400 with the CDN's codes for bad JSON, unknown types, bad paths and bad regexes.
pub fn parse_purge(app: &App, content_type: &str, body: &[u8], query: Option<&str>) -> Result<Vec<PurgeTask>, Error> {
    let (kind, paths, force) = read_purge_input(content_type, body, query)?;
    let paths: Vec<String> = paths.into_iter().filter(|p| !p.trim().is_empty()).collect();
    if paths.is_empty() {
        return Err(malformed("no paths given"));
    }
    let max = match kind {
        PurgeKind::File | PurgeKind::IgnoreParams => MAX_FILES,
        PurgeKind::Directory => MAX_DIRECTORIES,
        PurgeKind::Regex => MAX_REGEXES,
    };
    if paths.len() > max {
        return Err(Error::InvalidPurge(
            "SingleRequest.OverLimit",
            format!("at most {max} paths of this type per call"),
        ));
    }
    paths
        .iter()
        .map(|p| {
            if p.len() > MAX_PATH_LEN {
                return Err(malformed("path longer than 1024 characters"));
            }
            let target = match kind {
                PurgeKind::Regex => PurgeTarget::Regex(compile_pattern(p.trim())?),
                _ => path_target(app, kind, p.trim())?,
            };
            let remove = force || matches!(kind, PurgeKind::File | PurgeKind::IgnoreParams);
            Ok(PurgeTask { target, remove })
        })
        .collect()
}

/// The GET that an admin-given URL (a full URL, or an absolute path served under the
/// public listener's address) stands for: prefetch and `/explain` key and fill exactly
/// as a client's GET would. `accept` is passed on for auto-format negotiation.
///
/// # Errors
/// 400 for a malformed URL or chain.
pub fn url_request(app: &App, url: &str, accept: Option<&http::HeaderValue>) -> Result<ObjectRequest, Error> {
    let (host, path, query) = split_url(url)?;
    let host = host.unwrap_or_else(|| app.default_host());
    let uri: http::Uri = match &query {
        Some(q) => format!("{path}?{q}"),
        None => path,
    }
    .parse()
    .map_err(|_| Error::InvalidArgument(format!("bad URL {url:?}")))?;
    let mut headers = HeaderMap::new();
    if let Ok(h) = http::HeaderValue::from_str(&host) {
        headers.insert(header::HOST, h);
    }
    if let Some(accept) = accept {
        headers.insert(header::ACCEPT, accept.clone());
    }
    ObjectRequest::parse(&http::Method::GET, &uri, &headers, &app.live().chains)
}

/// Splits a full URL or absolute path into (host, path, query).
pub fn split_url(url: &str) -> Result<(Option<String>, String, Option<String>), Error> {
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    let (host, path_query) = match rest {
        Some(rest) => {
            let slash = rest.find('/').unwrap_or(rest.len());
            let (h, pq) = rest.split_at(slash);
            if h.is_empty() {
                return Err(malformed("URL without host"));
            }
            let host = parse_host(h).map_err(malformed)?;
            (Some(host), if pq.is_empty() { "/" } else { pq })
        }
        None if url.starts_with('/') => (None, url),
        None => return Err(malformed("path must be a full URL or start with '/'")),
    };
    let path_query = path_query.split('#').next().unwrap_or(path_query);
    let (path, query) = match path_query.split_once('?') {
        Some((p, q)) => (p, Some(q.to_owned())),
        None => (path_query, None),
    };
    Ok((host, path.to_owned(), query))
}

fn path_target(app: &App, kind: PurgeKind, url: &str) -> Result<PurgeTarget, Error> {
    let (host, raw_path, query) = split_url(url)?;
    if kind == PurgeKind::Directory {
        let decoded = percent_encoding::percent_decode_str(&raw_path).decode_utf8_lossy();
        // Keys hold escaped paths (a literal `?` is `%3F`): compare like with like.
        let mut prefix = escape_path(&decoded);
        if !prefix.ends_with('/') {
            prefix.push('/');
        }
        return Ok(PurgeTarget::Directory { host, prefix });
    }
    let path = normalize_path(&raw_path).map_err(|_| malformed("invalid object path"))?;
    if kind == PurgeKind::IgnoreParams {
        return Ok(PurgeTarget::Path { host, path: escape_path(&path) });
    }
    // File: the same key function as GET, with the pipeline canonicalised.
    let process = match process_param(query.as_deref()) {
        Some(v) => Some(
            crate::process::parse(&v, app.live().chains.styles(), &app.limits)
                .map_err(|e| malformed(&format!("x-oss-process: {}", e.message())))?
                .canonical(),
        ),
        None => None,
    };
    let key = CacheKey::new(
        host.as_deref().unwrap_or(""),
        &path,
        query.as_deref(),
        process.as_deref(),
        None,
        &app.config.cache.ignore_params,
    );
    Ok(PurgeTarget::Url { host, key })
}

/// Compiles a purge pattern against canonical URLs (`host/path?query`). A leading
/// `http://`/`https://` is dropped (keys carry no scheme); a pattern starting with
/// `/` matches any host. Anchored at the start; size-limited.
fn compile_pattern(pattern: &str) -> Result<regex::Regex, Error> {
    let body = pattern
        .strip_prefix("http://")
        .or_else(|| pattern.strip_prefix("https://"))
        .map(str::to_owned)
        .unwrap_or_else(|| if pattern.starts_with('/') { format!("[^/]*{pattern}") } else { pattern.to_owned() });
    regex::RegexBuilder::new(&format!("^(?:{body})"))
        .size_limit(REGEX_SIZE_LIMIT)
        .dfa_size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| Error::InvalidPurge("InvalidObjectPath.Malformed", format!("bad regex: {e}")))
}

/// Applies parsed tasks; regex scans run off the reactor. Returns entries affected.
///
/// # Errors
/// `Internal` if the blocking scan fails.
pub async fn apply(app: &Arc<App>, tasks: Vec<PurgeTask>) -> Result<usize, Error> {
    let app = Arc::clone(app);
    tokio::task::spawn_blocking(move || tasks.into_iter().map(|t| app.cache.purge(t.target, t.remove)).sum::<usize>())
        .await
        .map_err(|e| Error::Internal(format!("purge task failed: {e}")))
}

/// Parses a prefetch: JSON `{"paths": [...]}`, or the CDN's PushObjectCache
/// parameters (`ObjectPath`, newline-separated; `ObjectType` `File` only) in the form
/// body or the query string, as `/purge` reads them.
///
/// # Errors
/// 400 for bad JSON, another object type, or no paths.
pub fn parse_prefetch(content_type: &str, body: &[u8], query: Option<&str>) -> Result<Vec<String>, Error> {
    let paths = if content_type.starts_with("application/json") {
        serde_json::from_slice::<JsonPrefetch>(body)
            .map_err(|e| Error::InvalidPurge("InvalidParameter", format!("bad JSON: {e}")))?
            .paths
    } else {
        let (kind, paths, _force) = read_purge_input(content_type, body, query)?;
        if kind != PurgeKind::File {
            return Err(Error::InvalidPurge(
                "InvalidObjectType.Malformed",
                "prefetch takes URLs: ObjectType must be File".into(),
            ));
        }
        paths.into_iter().map(|p| p.trim().to_owned()).collect()
    };
    let paths: Vec<String> = paths.into_iter().filter(|p| !p.is_empty()).collect();
    if paths.is_empty() || paths.len() > MAX_FILES {
        return Err(malformed("give 1 to 1000 paths"));
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_path_query() {
        let (h, p, q) = split_url("http://Example.com:80/a/b.jpg?x=1#frag").unwrap();
        assert_eq!((h.as_deref(), p.as_str(), q.as_deref()), (Some("example.com"), "/a/b.jpg", Some("x=1")));
        let (h, p, q) = split_url("/a.jpg").unwrap();
        assert_eq!((h, p.as_str(), q), (None, "/a.jpg", None));
        assert!(split_url("a.jpg").is_err());
        assert!(split_url("http:///a").is_err());
    }

    #[test]
    fn form_input_reads_cdn_parameters() {
        let (k, paths, force) = read_purge_input(
            "application/x-www-form-urlencoded",
            b"ObjectPath=http%3A%2F%2Fh%2Fa%2F%0D%0Ahttp%3A%2F%2Fh%2Fb%2F&ObjectType=Directory&Force=true",
            None,
        )
        .unwrap();
        assert_eq!(k, PurgeKind::Directory);
        assert_eq!(paths, vec!["http://h/a/", "http://h/b/"]);
        assert!(force);
    }

    #[test]
    fn json_input_rejects_unknown_types_and_fields() {
        assert!(read_purge_input("application/json", br#"{"type":"nope","paths":["/a"]}"#, None).is_err());
        assert!(read_purge_input("application/json", br#"{"paths":["/a"],"x":1}"#, None).is_err());
        assert!(read_purge_input("application/json", b"{", None).is_err());
        let (k, _, _) = read_purge_input("application/json", br#"{"paths":["/a"]}"#, None).unwrap();
        assert_eq!(k, PurgeKind::File);
    }

    #[test]
    fn patterns_compile_bounded_and_anchored() {
        let re = compile_pattern("http://www.example.com/[0-9][a-z].*.jpg").unwrap();
        assert!(re.is_match("www.example.com/1a.jpg"));
        assert!(!re.is_match("other.com/www.example.com/1a.jpg"));
        let any_host = compile_pattern("/img/.*").unwrap();
        assert!(any_host.is_match("h:1/img/a.jpg"));
        assert!(compile_pattern("(").is_err());
        assert!(compile_pattern("a{1000}{1000}").is_err());
    }
}
