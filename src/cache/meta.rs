//! What the cache stores per key: the response body as `Bytes` plus the metadata
//! needed to answer, to judge freshness and to revalidate with the origin.

use super::key::CacheKey;
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Memory an entry holds besides its body and strings: measured 1.84 KB of RSS per
/// entry over 20,000 entries with a 19-byte body and a 35-byte URL.
pub const ENTRY_OVERHEAD: usize = 1700;

/// One stored (or shareable) response.
#[derive(Debug)]
pub struct Entry {
    /// The key it is stored under.
    pub key: CacheKey,
    /// 200 for objects and processed results, 404 for a cached miss.
    pub status: StatusCode,
    /// The complete body.
    pub body: Bytes,
    /// Content-Type of `body`.
    pub content_type: String,
    /// ETag of `body` (the origin's for untouched objects, a hash for processed ones).
    pub etag: Option<String>,
    /// Last-Modified of the original.
    pub last_modified: Option<SystemTime>,
    /// The original's ETag at the origin, for revalidation.
    pub origin_etag: Option<String>,
    /// When the copy was stored or last revalidated.
    pub stored_at: SystemTime,
    /// Freshness lifetime from `stored_at`.
    pub ttl: Duration,
    /// Content-coded copies of `body` (`("br", ..)`, `("gzip", ..)`), made once when the
    /// entry was filled so a hit only picks one; weighed with the entry.
    encoded: Vec<(&'static str, Bytes)>,
    /// Set by a soft purge: the next request revalidates.
    stale: AtomicBool,
    /// Header values that never change for this entry, formatted on first use so a
    /// hit only clones them.
    headers: OnceLock<EntryHeaders>,
}

/// An entry's fixed response header values.
#[derive(Debug)]
pub struct EntryHeaders {
    /// `Content-Type`.
    pub content_type: HeaderValue,
    /// `ETag`.
    pub etag: Option<HeaderValue>,
    /// `Last-Modified`.
    pub last_modified: Option<HeaderValue>,
    /// `X-Swift-SaveTime`.
    pub save_time: HeaderValue,
    /// `X-Swift-CacheTime`.
    pub cache_time: HeaderValue,
    /// `Cache-Control` for clients.
    pub cache_control: HeaderValue,
}

impl Entry {
    /// A new, fresh entry.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: CacheKey,
        status: StatusCode,
        body: Bytes,
        content_type: String,
        etag: Option<String>,
        last_modified: Option<SystemTime>,
        origin_etag: Option<String>,
        ttl: Duration,
    ) -> Entry {
        Entry {
            key,
            status,
            body,
            content_type,
            etag,
            last_modified,
            origin_etag,
            stored_at: SystemTime::now(),
            ttl,
            encoded: Vec::new(),
            stale: AtomicBool::new(false),
            headers: OnceLock::new(),
        }
    }

    /// The entry with content-coded copies of its body (token, bytes), made at fill.
    pub fn with_encodings(mut self, encoded: Vec<(&'static str, Bytes)>) -> Entry {
        self.encoded = encoded;
        self
    }

    /// The content-coded copies made at fill (for the disk tier's record).
    pub fn encodings(&self) -> &[(&'static str, Bytes)] {
        &self.encoded
    }

    /// The entry as stored at `stored_at` (a record read back from the disk tier).
    pub fn with_stored_at(mut self, stored_at: SystemTime) -> Entry {
        self.stored_at = stored_at;
        self
    }

    /// The body coded with `coding` (`br`, `gzip`), if a copy was made at fill.
    pub fn encoded(&self, coding: &str) -> Option<&Bytes> {
        self.encoded.iter().find(|(c, _)| *c == coding).map(|(_, b)| b)
    }

    /// The same response, revalidated now with a new TTL (after an origin 304).
    pub fn refreshed(&self, ttl: Duration) -> Entry {
        Entry {
            key: self.key.clone(),
            status: self.status,
            body: self.body.clone(),
            content_type: self.content_type.clone(),
            etag: self.etag.clone(),
            last_modified: self.last_modified,
            origin_etag: self.origin_etag.clone(),
            stored_at: SystemTime::now(),
            ttl,
            encoded: self.encoded.clone(),
            stale: AtomicBool::new(false),
            headers: OnceLock::new(),
        }
    }

    /// The fixed header values; `cache_control` is the client Cache-Control template
    /// (`{ttl}` → TTL seconds), the same for the whole process.
    pub fn headers(&self, cache_control: &str) -> &EntryHeaders {
        self.headers.get_or_init(|| {
            let value = |s: &str| HeaderValue::from_str(s).ok();
            EntryHeaders {
                content_type: value(&self.content_type).unwrap_or(HeaderValue::from_static("application/octet-stream")),
                etag: self.etag.as_deref().and_then(value),
                last_modified: self.last_modified.and_then(|t| value(&httpdate::fmt_http_date(t))),
                save_time: value(&httpdate::fmt_http_date(self.stored_at)).unwrap_or(HeaderValue::from_static("")),
                cache_time: HeaderValue::from(self.ttl.as_secs()),
                cache_control: value(&cache_control.replace("{ttl}", &self.ttl.as_secs().to_string()))
                    .unwrap_or(HeaderValue::from_static("no-cache")),
            }
        })
    }

    /// Fresh: within its TTL and not marked stale by a purge.
    pub fn is_fresh(&self, now: SystemTime) -> bool {
        !self.stale.load(Ordering::Acquire) && self.age(now) < self.ttl
    }

    /// Marks the entry so that the next request revalidates it.
    pub fn mark_stale(&self) {
        self.stale.store(true, Ordering::Release);
    }

    /// Time since stored.
    pub fn age(&self, now: SystemTime) -> Duration {
        now.duration_since(self.stored_at).unwrap_or_default()
    }

    /// Bytes this entry costs in memory: the body and its coded copies plus what holding it costs besides
    /// (headers, key, moka's node, the purge index), so a 64 MiB cache of small objects
    /// takes 64 MiB of RSS and not several times that.
    pub fn weight(&self) -> u32 {
        let overhead = ENTRY_OVERHEAD + 2 * self.key.url.len() + self.content_type.len();
        let encoded: usize = self.encoded.iter().map(|(_, b)| b.len()).sum();
        u32::try_from(self.body.len().saturating_add(encoded).saturating_add(overhead)).unwrap_or(u32::MAX)
    }
}
