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

pub mod fs;
pub mod sign;

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
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Body::Full(b) => write!(f, "Full({} bytes)", b.len()),
            Body::Stream { range, .. } => write!(f, "Stream({range:?})"),
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

/// A configured origin.
#[derive(Debug)]
pub enum Origin {
    /// A local folder (the embedded default).
    Fs(fs::FsOrigin),
}

impl Origin {
    /// Builds an origin from its `--origin` spelling.
    ///
    /// # Errors
    /// `OriginError::Config` when the spelling is not understood or the folder is missing.
    pub fn from_spec(spec: &str) -> Result<Origin, OriginError> {
        if spec.contains("://") {
            return Err(OriginError::Config(format!(
                "unsupported origin scheme in {spec:?}; use a folder path"
            )));
        }
        Ok(Origin::Fs(fs::FsOrigin::new(spec)?))
    }

    /// Fetches one object.
    ///
    /// # Errors
    /// See [`OriginError`].
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched, OriginError> {
        match self {
            Origin::Fs(o) => o.fetch(req).await,
        }
    }

    /// A short description for logs (never with credentials).
    pub fn describe(&self) -> String {
        match self {
            Origin::Fs(o) => format!("folder {}", o.root().display()),
        }
    }
}

/// Answers a conditional request from metadata: true when the client's validators
/// say its copy is current (so the answer is 304).
pub fn is_not_modified(
    meta: &ObjectMeta,
    if_none_match: Option<&str>,
    if_modified_since: Option<SystemTime>,
) -> bool {
    if let Some(inm) = if_none_match {
        let Some(etag) = meta.etag.as_deref() else {
            return false;
        };
        return etag_list_matches(inm, etag);
    }
    match (if_modified_since, meta.last_modified) {
        (Some(since), Some(lm)) => truncate_to_secs(lm) <= truncate_to_secs(since),
        _ => false,
    }
}

/// Weak comparison of an If-None-Match list against one ETag.
pub fn etag_list_matches(list: &str, etag: &str) -> bool {
    let strip = |s: &str| s.trim().trim_start_matches("W/").to_owned();
    let want = strip(etag);
    list.split(',')
        .map(str::trim)
        .any(|t| t == "*" || strip(t) == want)
}

fn truncate_to_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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
    fn etag_matching_is_weak_and_handles_lists() {
        assert!(etag_list_matches("\"a\", \"b\"", "\"b\""));
        assert!(etag_list_matches("W/\"b\"", "\"b\""));
        assert!(etag_list_matches("*", "\"b\""));
        assert!(!etag_list_matches("\"c\"", "\"b\""));
    }
}
