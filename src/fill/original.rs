//! The original a rendition is made from, got through the cache as an entry of its own.
//!
//! A rendition miss does not fetch its original from the origin: it asks the cache for
//! the key a plain GET of the same URL uses (the URL without `x-oss-process` or style),
//! through the same lookup, single-flight lock, TTL rules and ETag revalidation as that
//! plain GET ([`super::serve_object_until`]). So a srcset of four widths plus the plain
//! object costs one origin GET, and four concurrent widths of a new original share one
//! fetch. An original the origin marks `no-store`/`private` is not stored (the plain
//! fill decides, as for any GET) and neither are renditions made from it. An original
//! too large to cache (it streams) is too large to process under the default limits
//! (`limits.max_source_bytes` <= `cache.max_object_size`): 413 as before, from that one
//! fetch. Only when the processing limit is the larger one is it fetched again directly
//! (as renditions always were), under that limit. The decoded-source cache ([`crate::process::decoded`]) stays the layer above.
//!
//! Purges: a rendition is stored only if the original it was made from was current in
//! the cache when it was used (a fresh hit, or a fill that stored it): an original
//! shared by a fill that a purge vetoed is used for the answer but its renditions are
//! not stored, so a purge of the original always makes later renditions refetch it.
//! The rendition's own insert is still checked against every purge since its fill
//! started. A rendition is never fresher than its original: its TTL is what is left
//! of the original's, so both go stale together and the original's revalidation (which
//! drops every rendition of a changed original) comes first.

use super::{content_etag, precompress, process_source_until, serve_object_until, Filled, Served};
use crate::cache::lock::Waiters;
use crate::cache::{CacheKey, CacheStatus, Entry};
use crate::error::Error;
use crate::origin::OriginError;
use crate::request::ObjectRequest;
use crate::App;
use bytes::Bytes;
use http::StatusCode;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

/// The request a plain GET of the rendition's original makes: same host, path and
/// query (the cache key drops `x-oss-process`), no chain, range or validators.
///
/// Its `uri` is the plain URL too: a cluster forward sends `uri`, and the rendition's
/// URL there would bring back the owner's rendition, stored here as the original.
/// It is marked as a hop, so the original is fetched where the rendition is made,
/// never forwarded: a forwarded original would be a short-lived hot copy, and the
/// rendition's TTL (what is left of its original's) would shrink with it.
pub(super) fn plain_request(req: &ObjectRequest) -> ObjectRequest {
    let query = req.query.as_deref().map(crate::url::query_without_process).filter(|q| !q.is_empty());
    let mut uri = crate::url::uri_path(&req.path);
    if let Some(q) = &query {
        uri.push('?');
        uri.push_str(q);
    }
    ObjectRequest {
        uri,
        hop: true,
        head: false,
        chain: None,
        range: None,
        if_none_match: None,
        if_modified_since: None,
        accept_encoding: None,
        accept: None,
        format_class: None,
        vary_accept: false,
        ..req.clone()
    }
}

/// A boxed `Send` future.
pub(super) type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Fills a rendition from its original got through the cache. `Ok(None)`: the original
/// is too large to cache (it streamed), and the caller fetches it directly as before.
///
/// # Errors
/// The original's errors (origin, not found, too large to process) and processing errors.
///
/// Boxed (and declared `Send`): the rendition fill awaits a fill of another key, so the
/// fill future is recursive, and the box breaks the type cycle.
pub(super) fn fill_rendition<'a>(
    app: &'a Arc<App>,
    req: &'a ObjectRequest,
    key: &'a CacheKey,
    stale: Option<&'a Entry>,
    started_epoch: u64,
    deadline: Instant,
    waiters: Option<Arc<Waiters>>,
) -> Boxed<'a, Result<Option<Filled>, Error>> {
    Box::pin(rendition(app, req, key, stale, started_epoch, deadline, waiters))
}

async fn rendition(
    app: &Arc<App>,
    req: &ObjectRequest,
    key: &CacheKey,
    stale: Option<&Entry>,
    started_epoch: u64,
    deadline: Instant,
    waiters: Option<Arc<Waiters>>,
) -> Result<Option<Filled>, Error> {
    let Some(pipeline) = req.pipeline() else { return Ok(None) };
    let plain = plain_request(req);
    let (original, how) = match serve_object_until(app, &plain, deadline).await? {
        Served::Entry(entry, how) => (entry, how),
        // Too large to cache: too large to process too (the default, one fetch), or
        // fetched again directly under the larger processing limit.
        Served::Stream { .. } if app.limits.max_source_bytes <= app.config.cache.max_object_size => {
            return Err(OriginError::TooLarge { limit: app.limits.max_source_bytes }.into())
        }
        Served::Stream { .. } => return Ok(None),
    };
    let current = is_current(app, &original, how);
    if original.status == StatusCode::NOT_FOUND {
        // A cached 404 of the original: the rendition is the same 404.
        let Some(ttl) = app.live().ttl.for_not_found() else { return Err(OriginError::NotFound.into()) };
        let entry = Entry::new(key.clone(), StatusCode::NOT_FOUND, Bytes::new(), String::new(), None, None, None, ttl);
        return Ok(Some(Filled::Entry {
            entry: Arc::new(entry),
            status: CacheStatus::Miss,
            cacheable: current,
            purged_at: Some(started_epoch),
        }));
    }
    if original.body.len() as u64 > app.limits.max_source_bytes {
        return Err(OriginError::TooLarge { limit: app.limits.max_source_bytes }.into());
    }
    let now = SystemTime::now();
    let ttl = if original.is_fresh(now) { original.ttl.saturating_sub(original.age(now)) } else { Default::default() };
    let mut status = CacheStatus::Miss;
    if let Some(stale) = stale {
        if current && same_original(stale, &original) {
            // The original is unchanged: the stale rendition is still right.
            return Ok(Some(Filled::Entry {
                entry: Arc::new(stale.refreshed(ttl)),
                status: CacheStatus::RefreshHit,
                cacheable: true,
                purged_at: Some(started_epoch),
            }));
        }
        status = CacheStatus::RefreshMiss;
    }
    let output = process_source_until(app, pipeline, original.body.clone(), deadline, waiters).await?;
    // Copied out of the worker thread's malloc arena (see `fill`).
    let body = Bytes::copy_from_slice(&output.bytes);
    let etag = content_etag(&body);
    let entry = Entry::new(
        key.clone(),
        StatusCode::OK,
        body,
        output.content_type.to_owned(),
        Some(etag),
        original.last_modified,
        original.origin_etag.clone(),
        ttl,
    );
    let entry = precompress(app, entry, deadline).await;
    Ok(Some(Filled::Entry { entry: Arc::new(entry), status, cacheable: current, purged_at: Some(started_epoch) }))
}

/// True when the original was current in the cache when it was used: a fresh hit, a
/// fill (this request's) that stored it, or another request's fill whose entry is the
/// one stored now (a fill a purge vetoed shares its bytes but is not in the cache).
/// Not stored (`no-store`, vetoed) and stale-if-error copies are not current.
///
/// Written with `is_hit` rather than a list of every status, so that a tier's own fresh
/// hit status (the disk tier's, which is checked against purges on hit) counts as
/// current without this module naming it.
fn is_current(app: &App, original: &Arc<Entry>, how: CacheStatus) -> bool {
    match how {
        CacheStatus::LockHit => app.cache.get(&original.key).is_some_and(|stored| Arc::ptr_eq(&stored, original)),
        CacheStatus::Bypass | CacheStatus::StaleHit => false,
        CacheStatus::Miss | CacheStatus::RefreshMiss => true,
        // Fresh hits from a tier, and a 304-refreshed copy (stored by this fill).
        other => other.is_hit(),
    }
}

/// The stale rendition was made from this version of the original: same origin ETag,
/// or, without ETags, the same Last-Modified.
fn same_original(rendition: &Entry, original: &Entry) -> bool {
    match (&rendition.origin_etag, &original.origin_etag) {
        (Some(a), Some(b)) => a == b,
        (None, None) => rendition.last_modified.is_some() && rendition.last_modified == original.last_modified,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_plain_request_names_the_original_and_is_never_forwarded() {
        let chains =
            crate::process::ChainMemo::new(crate::process::Styles::new(), crate::process::Limits::default(), 16);
        let uri: http::Uri = "/d/a%20b.jpg?v=1&x-oss-process=image/resize,w_100".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, "img.test".parse().unwrap());
        let req = ObjectRequest::parse(&http::Method::GET, &uri, &headers, &chains).unwrap();
        let plain = plain_request(&req);
        assert_eq!(plain.uri, "/d/a%20b.jpg?v=1");
        assert!(plain.hop && plain.chain.is_none());
        let reparsed =
            ObjectRequest::parse(&http::Method::GET, &plain.uri.parse().unwrap(), &headers, &chains).unwrap();
        assert_eq!(reparsed.path, req.path);
        assert!(reparsed.chain.is_none());
    }

    fn entry(origin_etag: Option<&str>, last_modified: Option<SystemTime>) -> Entry {
        Entry::new(
            CacheKey::new("h", "/a.jpg", None, None, None, &[]),
            StatusCode::OK,
            Bytes::from_static(b"x"),
            "image/jpeg".into(),
            None,
            last_modified,
            origin_etag.map(str::to_owned),
            Duration::from_secs(60),
        )
    }

    #[test]
    fn a_rendition_matches_its_original_by_etag_else_by_last_modified() {
        let t = Some(SystemTime::UNIX_EPOCH + Duration::from_secs(10));
        assert!(same_original(&entry(Some("\"a\""), None), &entry(Some("\"a\""), t)));
        assert!(!same_original(&entry(Some("\"a\""), t), &entry(Some("\"b\""), t)));
        assert!(same_original(&entry(None, t), &entry(None, t)));
        assert!(!same_original(&entry(None, None), &entry(None, None)));
        assert!(!same_original(&entry(Some("\"a\""), t), &entry(None, t)));
    }
}
