//! Origins: where original objects come from.
//!
//! An [`Origin`] answers one [`FetchRequest`] (a normalised object key, an optional
//! byte range and revalidation validators) with a [`Fetched`] value: the object, a
//! "not modified" answer, or a typed [`OriginError`]. Origins know nothing of images
//! or the cache; they hand back opaque bytes and metadata.
//!
//! Bodies up to the caller's `buffer_limit` come back whole ([`Body::Full`]) so they
//! can be cached; larger ones come back as a stream ([`Body::Stream`]) that is passed
//! through to the client without being buffered.
//!
//! Network origins (`http`, `oss`, `s3`) share one pooled client (`http.rs`) and sign
//! through the pure functions in `sign.rs`. Credentials come in from the caller as
//! [`OriginCredentials`]; no origin reads the environment itself.

pub mod fs;
pub mod http;
pub mod oss;
pub mod s3;
pub mod sign;

pub use self::http::OriginConfig;
pub use self::sign::Credentials;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use std::time::SystemTime;

/// Metadata of an origin object, as needed for caching and response headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ObjectMeta {
    /// Content-Type as the origin stores it (None: derive from the key or sniff).
    pub content_type: Option<String>,
    /// Full length of the object in bytes.
    pub content_length: u64,
    /// Strong or weak ETag, quoted as on the wire.
    pub etag: Option<String>,
    /// Last modification time.
    pub last_modified: Option<SystemTime>,
    /// The origin's Cache-Control header, verbatim.
    pub cache_control: Option<String>,
    /// The origin's Expires header, parsed.
    pub expires: Option<SystemTime>,
    /// `Pragma: no-cache` was present.
    pub pragma_no_cache: bool,
}

/// A byte range already resolved against nothing (the origin resolves it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=first-last` (last inclusive) or `bytes=first-` (last = None).
    From {
        /// First byte offset.
        first: u64,
        /// Last byte offset, inclusive.
        last: Option<u64>,
    },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Resolves against an object length: `Some((start, end_exclusive))`, or None if
    /// unsatisfiable.
    pub fn resolve(&self, len: u64) -> Option<(u64, u64)> {
        match *self {
            ByteRange::From { first, last } => {
                if first >= len {
                    return None;
                }
                let end = last.map_or(len, |l| l.saturating_add(1).min(len));
                (end > first).then_some((first, end))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || len == 0 {
                    return None;
                }
                Some((len.saturating_sub(n), len))
            }
        }
    }
}

/// What to fetch.
#[derive(Debug, Clone, Default)]
pub struct FetchRequest<'a> {
    /// Normalised object key, without the leading `/`.
    pub key: &'a str,
    /// Only the headers are wanted (HEAD).
    pub head_only: bool,
    /// Send `If-None-Match` with this ETag (revalidation).
    pub if_none_match: Option<&'a str>,
    /// Send `If-Modified-Since` with this time (revalidation).
    pub if_modified_since: Option<SystemTime>,
    /// Objects up to this many bytes come back whole; larger ones as a stream.
    pub buffer_limit: u64,
    /// For streamed (uncacheable) objects only: the range the client asked for.
    pub range: Option<ByteRange>,
}

/// A streamed body: chunks in order, or an I/O error that ends the stream.
pub type BodyStream = BoxStream<'static, Result<Bytes, std::io::Error>>;

/// The body of a fetched object.
pub enum Body {
    /// The whole object (or nothing, for HEAD), read completely and length-checked.
    Full(Bytes),
    /// A large object, streamed; `range` says which bytes it carries.
    Stream {
        /// The chunks.
        stream: BodyStream,
        /// Half-open byte range of the object this stream carries.
        range: (u64, u64),
    },
    /// An object of unknown length (a chunked body) that went past the buffer limit
    /// while it was read: streamed, at most the origin's object limit, not cacheable.
    Chunked(BodyStream),
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Stream { range, .. } => write!(f, "Stream({range:?})"),
            Body::Chunked(_) => write!(f, "Chunked"),
        }
    }
}

/// An object from the origin.
#[derive(Debug)]
pub struct Object {
    /// Its metadata.
    pub meta: ObjectMeta,
    /// Its bytes.
    pub body: Body,
}

/// The answer to a fetch.
#[derive(Debug)]
pub enum Fetched {
    /// The object.
    Object(Object),
    /// The validators matched: the cached copy is still good.
    NotModified(ObjectMeta),
}

/// Why an origin fetch failed. Each maps to a distinct client status in `error.rs`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OriginError {
    /// The object does not exist.
    #[error("object not found at origin")]
    NotFound,
    /// The origin refused access to the object (403 AccessDenied).
    #[error("origin denied access")]
    Denied,
    /// The origin rejected our credentials or signature.
    #[error("origin rejected credentials")]
    AuthFailed,
    /// Archived object that is not restored.
    #[error("object is archived")]
    ArchivedObject,
    /// The object exceeds the configured maximum source size.
    #[error("object larger than {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// Connect or read timeout.
    #[error("origin timed out")]
    Timeout,
    /// The bytes in flight from origins are at their budget (503, retry later).
    #[error("origin fetches over their memory budget")]
    Busy,
    /// The origin answered with an unexpected status or a broken response.
    #[error("upstream error: {0}")]
    Upstream(String),
    /// Local I/O failure (folder origin).
    #[error("origin I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The origin is misconfigured.
    #[error("origin configuration: {0}")]
    Config(String),
}

impl OriginError {
    /// Worth retrying (transient network or server trouble).
    pub fn is_transient(&self) -> bool {
        matches!(self, OriginError::Timeout | OriginError::Upstream(_))
    }
}

/// Credentials for private origins, filled by the caller (main.rs: from the
/// environment). `oss` signs `oss://` origins, `aws` signs `s3://` origins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OriginCredentials {
    /// Alibaba Cloud AccessKey (+ STS token).
    pub oss: Option<Credentials>,
    /// AWS-style access key (+ session token).
    pub aws: Option<Credentials>,
}

impl OriginCredentials {
    /// Reads `ALIBABA_CLOUD_ACCESS_KEY_ID` / `_SECRET` / `ALIBABA_CLOUD_SECURITY_TOKEN`
    /// and `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` / `AWS_SESSION_TOKEN`.
    /// Only main.rs should call this; components take the struct.
    pub fn from_env() -> Self {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Self::from_env`] with any variable source (tests). A pair with either half
    /// missing or empty counts as no credentials.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Self {
        let get = |n: &str| get(n).filter(|v| !v.is_empty());
        let pair = |id: &str, secret: &str, token: &str| {
            let creds = Credentials::new(get(id)?, get(secret)?);
            Some(match get(token) {
                Some(t) => creds.with_token(t),
                None => creds,
            })
        };
        OriginCredentials {
            oss: pair("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN"),
            aws: pair("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
        }
    }
}

/// How a bucket is addressed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Addressing {
    /// `Host: <bucket>.<endpoint>`, path `/<key>`.
    Virtual,
    /// `Host: <endpoint>`, path `/<bucket>/<key>`.
    Path,
    /// `Host: <endpoint>` (a custom domain bound to the bucket), path `/<key>`.
    Cname,
}

impl Addressing {
    /// The spelling used in origin specs.
    pub fn as_str(self) -> &'static str {
        match self {
            Addressing::Virtual => "virtual",
            Addressing::Path => "path",
            Addressing::Cname => "cname",
        }
    }
}

/// A service endpoint: scheme plus host with optional port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `http` or `https` (default `https`).
    pub scheme: String,
    /// Host, with `:port` if given.
    pub host: String,
}

impl Endpoint {
    /// Parses `host[:port]` or `http(s)://host[:port][/]`.
    ///
    /// # Errors
    /// `OriginError::Config` for other schemes, paths, user info or an empty host.
    pub fn parse(s: &str) -> Result<Self, OriginError> {
        let (scheme, rest) = match s.split_once("://") {
            Some((sc @ ("http" | "https"), rest)) => (sc, rest),
            Some(_) => return Err(OriginError::Config(format!("endpoint {s:?}: scheme must be http or https"))),
            None => ("https", s),
        };
        let host = rest.strip_suffix('/').unwrap_or(rest);
        let valid =
            !host.is_empty() && host.parse::<::http::uri::Authority>().is_ok() && !host.contains(['@', '/', '?', '#']);
        if !valid {
            return Err(OriginError::Config(format!("endpoint {s:?}: expected host[:port]")));
        }
        Ok(Endpoint { scheme: scheme.to_owned(), host: host.to_ascii_lowercase() })
    }

    /// True for IP literals and `localhost`, where `<bucket>.<host>` cannot resolve.
    fn is_ip_or_localhost(&self) -> bool {
        let name = match self.host.strip_prefix('[') {
            Some(v6) => return v6.contains(']'),
            None => self.host.rsplit_once(':').map_or(self.host.as_str(), |(h, _)| h),
        };
        name == "localhost" || name.parse::<std::net::IpAddr>().is_ok()
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)
    }
}

/// Bucket names: 3-63 of `a-z 0-9 -`, not starting or ending with `-` (OSS rules).
/// S3 also allows dots (`allow_dots`); OSS does not.
pub(crate) fn check_bucket(bucket: &str, allow_dots: bool) -> Result<(), OriginError> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || (allow_dots && b == b'.'))
        && !bucket.starts_with('-')
        && !bucket.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(OriginError::Config(format!("invalid bucket name {bucket:?}")))
    }
}

/// `?k=v&k2` with the V4 encoding, or empty.
pub(crate) fn encode_query(query: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(&sign::uri_encode(k, false));
        if !v.is_empty() {
            out.push('=');
            out.push_str(&sign::uri_encode(v, false));
        }
    }
    out
}

/// A configured origin.
#[derive(Debug)]
pub enum Origin {
    /// A local folder (the embedded default).
    Fs(fs::FsOrigin),
    /// A plain HTTP(S) server.
    Http(self::http::HttpOrigin),
    /// An Alibaba Cloud OSS bucket.
    Oss(oss::OssOrigin),
    /// An S3-compatible bucket.
    S3(s3::S3Origin),
}

impl Origin {
    /// Builds an origin from its `--origin` spelling, without credentials and with
    /// default network settings. See [`Origin::from_spec_with`].
    ///
    /// # Errors
    /// `OriginError::Config` when the spelling is not understood or the folder is missing.
    pub fn from_spec(spec: &str) -> Result<Origin, OriginError> {
        Self::from_spec_with(spec, &OriginCredentials::default(), &OriginConfig::default())
    }

    /// Builds an origin from its spelling:
    ///
    /// * a folder path;
    /// * `http(s)://host[:port]/prefix`;
    /// * `oss://BUCKET?endpoint=oss-cn-beijing.aliyuncs.com&region=cn-beijing`
    ///   `[&signature=v1|v4][&addressing=virtual|path|cname]` (V4 and virtual by
    ///   default; path when the endpoint is an IP or localhost);
    /// * `s3://BUCKET?endpoint=...&region=...[&addressing=path|virtual]`
    ///   (virtual by default; path when the endpoint is an IP or localhost).
    ///
    /// The endpoint may carry a scheme and a port (`endpoint=http://127.0.0.1:9000`).
    /// `oss://` signs with `creds.oss`, `s3://` with `creds.aws`; without credentials
    /// requests are anonymous.
    ///
    /// # Errors
    /// `OriginError::Config` naming what is wrong.
    pub fn from_spec_with(spec: &str, creds: &OriginCredentials, config: &OriginConfig) -> Result<Origin, OriginError> {
        let Some((scheme, rest)) = spec.split_once("://") else {
            return Ok(Origin::Fs(fs::FsOrigin::new(spec)?));
        };
        match scheme {
            "http" | "https" => {
                let client = self::http::HttpClient::new(config)?;
                Ok(Origin::Http(self::http::HttpOrigin::new(spec, client)?))
            }
            "oss" | "s3" => {
                let (bucket, query) = rest.split_once('?').unwrap_or((rest, ""));
                let bucket = bucket.trim_end_matches('/');
                let params = parse_params(query)?;
                let get = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
                let allowed: &[&str] = if scheme == "oss" {
                    &["endpoint", "region", "signature", "addressing"]
                } else {
                    &["endpoint", "region", "addressing"]
                };
                if let Some((unknown, _)) = params.iter().find(|(n, _)| !allowed.contains(&n.as_str())) {
                    return Err(OriginError::Config(format!("{scheme}:// origin: unknown parameter {unknown:?}")));
                }
                let endpoint = Endpoint::parse(
                    get("endpoint")
                        .ok_or_else(|| OriginError::Config(format!("{scheme}:// origin needs endpoint=")))?,
                )?;
                let region = get("region").unwrap_or("");
                let addressing = match get("addressing") {
                    None if endpoint.is_ip_or_localhost() => Addressing::Path,
                    None | Some("virtual") => Addressing::Virtual,
                    Some("path") => Addressing::Path,
                    Some("cname") if scheme == "oss" => Addressing::Cname,
                    Some(other) => {
                        return Err(OriginError::Config(format!("{scheme}:// origin: unknown addressing {other:?}")))
                    }
                };
                let client = self::http::HttpClient::new(config)?;
                if scheme == "s3" {
                    return Ok(Origin::S3(s3::S3Origin::new(
                        bucket,
                        endpoint,
                        region,
                        addressing,
                        creds.aws.clone(),
                        client,
                    )?));
                }
                let version = match get("signature") {
                    None | Some("v4" | "V4") => oss::SignatureVersion::V4,
                    Some("v1" | "V1") => oss::SignatureVersion::V1,
                    Some(other) => {
                        return Err(OriginError::Config(format!("oss:// origin: unknown signature {other:?}")))
                    }
                };
                Ok(Origin::Oss(oss::OssOrigin::new(
                    bucket,
                    endpoint,
                    region,
                    version,
                    addressing,
                    creds.oss.clone(),
                    client,
                )?))
            }
            other => Err(OriginError::Config(format!(
                "unsupported origin scheme {other:?}; use a folder, http(s)://, oss:// or s3://"
            ))),
        }
    }

    /// Fetches one object.
    ///
    /// # Errors
    /// See [`OriginError`].
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched, OriginError> {
        if !matches!(self, Origin::Fs(_)) && !is_plain_key(req.key) {
            return Err(OriginError::NotFound);
        }
        match self {
            Origin::Fs(o) => o.fetch(req).await,
            Origin::Http(o) => o.fetch(req).await,
            Origin::Oss(o) => o.fetch(req).await,
            Origin::S3(o) => o.fetch(req).await,
        }
    }

    /// A short description for logs (never with credentials).
    pub fn describe(&self) -> String {
        match self {
            Origin::Fs(o) => format!("folder {}", o.root().display()),
            Origin::Http(o) => format!("http {}", o.base_url()),
            Origin::Oss(o) => o.describe(),
            Origin::S3(o) => o.describe(),
        }
    }
}

/// Keys a network origin may be asked for. request.rs validates keys already; this
/// is the second line: an empty key would address the bucket itself (a listing), and
/// `.`/`..` segments could be normalised by an HTTP server to escape the prefix. OSS
/// keys are 1-1024 bytes and must not start with `/` or `\`.
fn is_plain_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 1024
        && !key.starts_with(['/', '\\'])
        && !key.contains(['\0', '\r', '\n'])
        && key.split('/').all(|seg| seg != "." && seg != "..")
}

/// Decodes `a=b&c=d` (percent-decoding values) for origin specs.
fn parse_params(query: &str) -> Result<Vec<(String, String)>, OriginError> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let v = percent_encoding::percent_decode_str(v)
                .decode_utf8()
                .map_err(|_| OriginError::Config(format!("origin parameter {k:?} is not UTF-8")))?;
            Ok((k.to_owned(), v.into_owned()))
        })
        .collect()
}

/// Answers a conditional request from metadata: true when the client's validators
/// say its copy is current (so the answer is 304).
pub fn is_not_modified(meta: &ObjectMeta, if_none_match: Option<&str>, if_modified_since: Option<SystemTime>) -> bool {
    validators_match(meta.etag.as_deref(), meta.last_modified, if_none_match, if_modified_since)
}

/// [`is_not_modified`] on the validators alone (no metadata to build).
pub fn validators_match(
    etag: Option<&str>,
    last_modified: Option<SystemTime>,
    if_none_match: Option<&str>,
    if_modified_since: Option<SystemTime>,
) -> bool {
    if let Some(inm) = if_none_match {
        let Some(etag) = etag else {
            return false;
        };
        return etag_list_matches(inm, etag);
    }
    match (if_modified_since, last_modified) {
        // RFC 9110 13.1.3: a date later than our clock is invalid and is ignored (else a
        // client, or a cache in front of us, could pin any object as "not modified").
        (Some(since), Some(lm)) if since <= SystemTime::now() => truncate_to_secs(lm) <= truncate_to_secs(since),
        _ => false,
    }
}

/// Weak comparison of an If-None-Match list against one ETag.
pub fn etag_list_matches(list: &str, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_owned();
    let want = strip(etag);
    list.split(',').map(str::trim).any(|t| t == "*" || strip(t) == want)
}

fn truncate_to_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_resolve_like_rfc7233() {
        let r = |first, last| ByteRange::From { first, last };
        assert_eq!(r(0, Some(9)).resolve(100), Some((0, 10)));
        assert_eq!(r(90, Some(200)).resolve(100), Some((90, 100)));
        assert_eq!(r(100, None).resolve(100), None);
        assert_eq!(r(5, None).resolve(100), Some((5, 100)));
        assert_eq!(ByteRange::Suffix(10).resolve(100), Some((90, 100)));
        assert_eq!(ByteRange::Suffix(500).resolve(100), Some((0, 100)));
        assert_eq!(ByteRange::Suffix(0).resolve(100), None);
    }

    #[test]
    fn oss_specs_parse() {
        let creds = OriginCredentials { oss: Some(Credentials::new("LTAIid", "sekrit").with_token("tok")), aws: None };
        let cfg = OriginConfig::default();
        let o = Origin::from_spec_with(
            "oss://media-bucket?endpoint=oss-cn-beijing.aliyuncs.com&region=cn-beijing",
            &creds,
            &cfg,
        )
        .unwrap();
        let d = o.describe();
        assert_eq!(
            d,
            "oss bucket media-bucket at https://oss-cn-beijing.aliyuncs.com (region cn-beijing, V4, virtual, signed)"
        );
        assert!(!d.contains("sekrit") && !d.contains("tok") && !format!("{o:?}").contains("sekrit"));
        let o = Origin::from_spec_with(
            "oss://media-bucket?endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=cn-beijing&signature=v1",
            &creds,
            &cfg,
        )
        .unwrap();
        assert!(
            o.describe().contains("http://127.0.0.1:9000") && o.describe().contains("V1, path"),
            "{}",
            o.describe()
        );
        let o = Origin::from_spec_with(
            "oss://media-bucket?endpoint=img.example.com&region=cn-beijing&addressing=cname",
            &creds,
            &cfg,
        )
        .unwrap();
        assert!(o.describe().contains("cname"));
        for bad in [
            "oss://media-bucket?region=cn-beijing",
            "oss://Bad_Bucket?endpoint=e.com&region=r",
            "oss://media-bucket?endpoint=e.com",
            "oss://media-bucket?endpoint=e.com&region=r&signature=v2",
            "oss://media-bucket?endpoint=e.com&region=r&addressing=sideways",
            "oss://media-bucket?endpoint=ftp://e.com&region=r",
            "oss://media-bucket?endpoint=e.com&region=r&secret=x",
            "s3://media-bucket?endpoint=e.com&region=r&addressing=cname",
            "s3://media-bucket?endpoint=e.com",
            "gopher://x",
        ] {
            assert!(matches!(Origin::from_spec_with(bad, &creds, &cfg), Err(OriginError::Config(_))), "{bad}");
        }
    }

    #[test]
    fn s3_and_http_specs_parse() {
        let o = Origin::from_spec("s3://media?endpoint=http://127.0.0.1:9000&region=us-east-1").unwrap();
        assert_eq!(o.describe(), "s3 bucket media at http://127.0.0.1:9000 (region us-east-1, path, anonymous)");
        let o = Origin::from_spec("s3://media?endpoint=s3.amazonaws.com&region=us-east-1").unwrap();
        assert!(o.describe().contains("virtual"));
        let o = Origin::from_spec("http://127.0.0.1:8080/images/").unwrap();
        assert_eq!(o.describe(), "http http://127.0.0.1:8080/images");
    }

    #[test]
    fn network_keys_are_checked() {
        for bad in ["", "/abs", "\\x", "a/../b", "..", "./a", "a/.", "a\0b", "a\nb", &"k".repeat(1025)] {
            assert!(!is_plain_key(bad), "{bad:?}");
        }
        for good in ["a.jpg", "dir/a b+c.png", "用户/头像.png", "a..b/c", ".hidden"] {
            assert!(is_plain_key(good), "{good:?}");
        }
    }

    #[tokio::test]
    async fn network_origins_refuse_bad_keys_without_a_request() {
        // Port 9 (discard) on loopback: nothing is sent because the key is refused first.
        let o = Origin::from_spec("http://127.0.0.1:9/base").unwrap();
        let req = FetchRequest { key: "../etc/passwd", ..FetchRequest::default() };
        assert!(matches!(o.fetch(&req).await, Err(OriginError::NotFound)));
        let req = FetchRequest { key: "", ..FetchRequest::default() };
        assert!(matches!(o.fetch(&req).await, Err(OriginError::NotFound)));
    }

    #[test]
    fn credentials_come_from_a_lookup() {
        let env = |n: &str| match n {
            "ALIBABA_CLOUD_ACCESS_KEY_ID" => Some("STS.id".to_owned()),
            "ALIBABA_CLOUD_ACCESS_KEY_SECRET" => Some("s".to_owned()),
            "ALIBABA_CLOUD_SECURITY_TOKEN" => Some("t".to_owned()),
            "AWS_ACCESS_KEY_ID" => Some("AKIA".to_owned()),
            "AWS_SECRET_ACCESS_KEY" => Some(String::new()),
            _ => None,
        };
        let c = OriginCredentials::from_lookup(env);
        assert_eq!(c.oss, Some(Credentials::new("STS.id", "s").with_token("t")));
        assert_eq!(c.aws, None, "an empty secret is no credential");
    }

    #[test]
    fn etag_matching_is_weak_and_handles_lists() {
        assert!(etag_list_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_list_matches("W/\"b\"", "\"b\""));
        assert!(etag_list_matches("*", "\"b\""));
        assert!(!etag_list_matches("\"c\"", "\"b\""));
    }
}
