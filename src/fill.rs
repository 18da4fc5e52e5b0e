//! The GET/HEAD fill: cache lookup → single-flight fill (origin fetch, the watermark
//! objects a pipeline names fetched from the same origin, processing on the worker pool,
//! revalidation of stale copies). [`crate::respond`] turns what it serves into a response.
//!
//! This is the only module that combines request, cache, origin, workers and
//! process. Only complete results enter the cache: a fill stores its entry after
//! the body was read whole (length-checked by the origin) and the encoder finished.

use crate::cache::lock::{Waiters, WritePermit};
use crate::cache::{CacheKey, CacheStatus, Entry, LockStatus, Locked};
use crate::error::Error;
use crate::origin::{Body as OriginBody, BodyStream, FetchRequest, Fetched, ObjectMeta, OriginError};
use crate::process::{self, RunContext};
use crate::request::ObjectRequest;
use crate::App;
use bytes::Bytes;
use http::StatusCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

mod original;

/// What a request is answered with, before headers are written.
pub enum Served {
    /// A complete response (from cache or a fill).
    Entry(Arc<Entry>, CacheStatus),
    /// A large object streamed from the origin, not cached.
    Stream {
        /// Origin metadata.
        meta: ObjectMeta,
        /// The bytes of `range`.
        stream: BodyStream,
        /// Half-open range of the object carried; `None` for a body of unknown
        /// length (sent without Content-Length, Range ignored).
        range: Option<(u64, u64)>,
        /// Content-Type to send.
        content_type: String,
    },
}

/// Result of one fill.
enum Filled {
    /// `purged_at`: the epoch the insert is checked from: the fill's start, or the
    /// epoch of its own purge of outdated variants (so that purge does not veto the
    /// insert); `None` when another purge already vetoed it.
    Entry {
        entry: Arc<Entry>,
        status: CacheStatus,
        cacheable: bool,
        purged_at: Option<u64>,
    },
    Stream(Served),
}

/// Looks up, fills and answers one object request.
///
/// # Errors
/// Any origin, processing or overload error.
pub async fn serve_object(app: &Arc<App>, req: &ObjectRequest) -> Result<Served, Error> {
    serve_object_until(app, req, Instant::now() + app.config.request_timeout()).await
}

/// [`serve_object`] under the request's one deadline, decided when it arrived: the
/// lock wait, the origin fetch and the processing all end by then.
///
/// # Errors
/// Any origin, processing or overload error; `Timeout` past the deadline.
pub async fn serve_object_until(app: &Arc<App>, req: &ObjectRequest, deadline: Instant) -> Result<Served, Error> {
    let process = req.canonical_chain();
    let key = CacheKey::new(
        &req.host,
        &req.path,
        req.query.as_deref(),
        process,
        req.format_class,
        &app.config.cache.ignore_params,
    );
    if let Some(entry) = app.cache.get(&key) {
        if entry.is_fresh(SystemTime::now()) {
            return Ok(Served::Entry(entry, CacheStatus::Hit));
        }
    } else if let Some(entry) = app.cache.get_from_disk(&key).await {
        // Promoted to memory; a stale one is revalidated by the fill below.
        if entry.is_fresh(SystemTime::now()) {
            return Ok(Served::Entry(entry, CacheStatus::DiskHit));
        }
    }
    // A fresh hit never waits; all that can (the lock, a fill, another request's fill)
    // runs under the request deadline, whose timer a hit then does not pay for.
    lock_and_fill(app, req, key, deadline).await
}

/// The miss path: single-flight lock, then a fill or a wait for another request's.
///
/// The fill runs as its own task, so it goes on for the other waiters when the request
/// that started it leaves or reaches its deadline; it stops once no waiter is left.
async fn lock_and_fill(app: &Arc<App>, req: &ObjectRequest, key: CacheKey, deadline: Instant) -> Result<Served, Error> {
    let until = tokio::time::Instant::from_std(deadline);
    // One retry of the lock covers a writer that vanished (panic).
    for _ in 0..2 {
        match app.cache.lock(&key) {
            Locked::Write(permit, _guard) => {
                let task = tokio::spawn(crate::origin_clock::carry(write(
                    Arc::clone(app),
                    req.clone(),
                    key,
                    permit,
                    deadline,
                )));
                // Dropping `_guard` (this client left) cancels the fill if nobody else waits.
                return match tokio::time::timeout_at(until, task).await {
                    Ok(Ok(served)) => served,
                    Ok(Err(e)) => Err(Error::Internal(format!("fill task: {e}"))),
                    Err(_) => Err(Error::Timeout),
                };
            }
            Locked::Read(reader) => match reader.wait_until(until).await {
                // Locks are per hash: a writer for another key with the same hash
                // (a crafted collision) is not our answer; fetch on our own.
                Some(LockStatus::Done(entry)) if entry.key != key => break,
                Some(LockStatus::Done(entry)) => return Ok(Served::Entry(entry, CacheStatus::LockHit)),
                Some(LockStatus::Failed(e)) => return Err(Error::Shared(e)),
                Some(LockStatus::GiveUp) => break,
                Some(LockStatus::Dangling) | Some(LockStatus::Pending) => continue,
                None => return Err(Error::Timeout),
            },
        }
    }
    // The shared fill could not be used (a streamed object): fetch on our own, without caching.
    let own = tokio::time::timeout_at(until, fill(app, req, &key, None, app.cache.epoch(), deadline, None)).await;
    match own.unwrap_or(Err(Error::Timeout))? {
        Filled::Entry { entry, .. } => Ok(Served::Entry(entry, CacheStatus::Bypass)),
        Filled::Stream(served) => Ok(served),
    }
}

/// The writer's side of a fill: fetch/process under the starter's deadline, insert,
/// and tell every waiter how it ended. Stops early once every waiter left.
async fn write(
    app: Arc<App>,
    req: ObjectRequest,
    key: CacheKey,
    permit: WritePermit,
    deadline: Instant,
) -> Result<Served, Error> {
    let app = &app;
    let stale = match app.cache.get(&key) {
        Some(e) if e.is_fresh(SystemTime::now()) => {
            permit.release(LockStatus::Done(Arc::clone(&e)));
            return Ok(Served::Entry(e, CacheStatus::Hit));
        }
        other => other,
    };
    let started = app.cache.epoch();
    let waiters = permit.waiters();
    let work = fill(app, &req, &key, stale.as_deref(), started, deadline, Some(Arc::clone(&waiters)));
    let filled = tokio::select! {
        r = tokio::time::timeout_at(deadline.into(), work) => r.unwrap_or(Err(Error::Timeout)),
        () = waiters.cancelled() => Err(process::ProcessError::cancelled().into()),
    };
    match filled {
        Ok(Filled::Entry { entry, status, cacheable, purged_at }) => {
            // Checked against every purge since the fill started (its own purge of
            // outdated variants excepted): revalidations included.
            let stored = cacheable && purged_at.is_some_and(|epoch| app.cache.insert(Arc::clone(&entry), epoch));
            permit.release(LockStatus::Done(Arc::clone(&entry)));
            let status = if stored { status } else { CacheStatus::Bypass };
            Ok(Served::Entry(entry, status))
        }
        Ok(Filled::Stream(served)) => {
            permit.release(LockStatus::GiveUp);
            Ok(served)
        }
        Err(e) => {
            if let Some(stale) = stale.filter(|st| serves_stale_on(app, st, &e)) {
                permit.release(LockStatus::Done(Arc::clone(&stale)));
                return Ok(Served::Entry(stale, CacheStatus::StaleHit));
            }
            let shared = Arc::new(e);
            permit.release(LockStatus::Failed(Arc::clone(&shared)));
            Err(Error::Shared(shared))
        }
    }
}

/// `stale-if-error`: a stale copy may answer when the origin is down or failing,
/// for the configured grace past its TTL.
fn serves_stale_on(app: &App, stale: &Entry, err: &Error) -> bool {
    let grace = Duration::from_secs(app.config.origin_client.stale_if_error_secs);
    let origin_down = matches!(
        err.root(),
        Error::Origin(OriginError::Timeout | OriginError::Upstream(_) | OriginError::Io(_)) | Error::Timeout
    );
    origin_down && !grace.is_zero() && stale.age(SystemTime::now()) <= stale.ttl + grace
}

/// Fetches (or revalidates) and, for processed variants, processes.
async fn fill(
    app: &Arc<App>,
    req: &ObjectRequest,
    key: &CacheKey,
    stale: Option<&Entry>,
    started_epoch: u64,
    deadline: Instant,
    waiters: Option<Arc<Waiters>>,
) -> Result<Filled, Error> {
    // Cluster: a key another node owns is fetched from it (its answer kept here as a
    // short-lived hot copy, checked against purges like any fill); None: fill here.
    if let Some(entry) = crate::cluster::forward::from_owner(app, req, key, deadline).await {
        let cacheable = !entry.ttl.is_zero();
        let entry = precompress(app, entry, deadline).await;
        return Ok(Filled::Entry {
            entry: Arc::new(entry),
            status: CacheStatus::Miss,
            cacheable,
            purged_at: Some(started_epoch),
        });
    }
    // A rendition's original comes through the cache, as an entry of its own.
    if let Some(filled) =
        original::fill_rendition(app, req, key, stale, started_epoch, deadline, waiters.clone()).await?
    {
        return Ok(filled);
    }
    let processing = req.chain.is_some();
    let fetch = FetchRequest {
        key: req.key(),
        head_only: false,
        if_none_match: stale.and_then(|s| s.origin_etag.as_deref()),
        if_modified_since: stale.and_then(|s| s.last_modified),
        buffer_limit: if processing { app.limits.max_source_bytes } else { app.config.cache.max_object_size },
        range: if processing { None } else { req.range },
    };
    app.stats.origin_fetch();
    let started = Instant::now();
    let fetched = app.origin.fetch(&fetch).await;
    app.stats.origin_result(started.elapsed(), &fetched);
    let now = SystemTime::now();
    let object = match fetched {
        Ok(Fetched::NotModified(mut meta)) => {
            let Some(stale) = stale else {
                return Err(OriginError::Upstream("304 to an unconditional request".into()).into());
            };
            // A 304 may repeat only some headers; the stored copy supplies the rest.
            meta.etag = meta.etag.or_else(|| stale.origin_etag.clone());
            meta.last_modified = meta.last_modified.or(stale.last_modified);
            let ttl = app.live().ttl.for_object(&req.path, &meta, now);
            let entry = Arc::new(stale.refreshed(ttl.unwrap_or_default()));
            return Ok(Filled::Entry {
                entry,
                status: CacheStatus::RefreshHit,
                cacheable: ttl.is_some(),
                purged_at: Some(started_epoch),
            });
        }
        Ok(Fetched::Object(object)) => object,
        Err(OriginError::NotFound) => {
            return match app.live().ttl.for_not_found() {
                Some(ttl) => Ok(Filled::Entry {
                    entry: Arc::new(Entry::new(
                        key.clone(),
                        StatusCode::NOT_FOUND,
                        Bytes::new(),
                        String::new(),
                        None,
                        None,
                        None,
                        ttl,
                    )),
                    status: CacheStatus::Miss,
                    cacheable: true,
                    purged_at: Some(started_epoch),
                }),
                None => Err(OriginError::NotFound.into()),
            };
        }
        Err(e) => return Err(e.into()),
    };
    let mut status = CacheStatus::Miss;
    let mut purged_at = Some(started_epoch);
    if let Some(stale) = stale {
        status = CacheStatus::RefreshMiss;
        if stale.origin_etag != object.meta.etag {
            // The original changed: every rendition of it is outdated. A purge that
            // landed during this fetch still vetoes the insert.
            purged_at = app.cache.remove_variants_for_fill(key, started_epoch);
        }
    }
    let meta = object.meta;
    let bytes = match object.body {
        OriginBody::Full(bytes) => bytes,
        OriginBody::Stream { stream, range } => {
            if processing {
                return Err(OriginError::TooLarge { limit: app.limits.max_source_bytes }.into());
            }
            let content_type = content_type_for(&req.path, meta.content_type.as_deref(), &[]);
            let stream = app.stats.count_streamed(stream);
            return Ok(Filled::Stream(Served::Stream { meta, stream, range: Some(range), content_type }));
        }
        OriginBody::Chunked(stream) => {
            // A chunked body that went past the buffer limit while it was read: as nginx
            // does with a response over its cache limit, it goes on to the client
            // uncached, at most the origin object limit.
            if processing {
                return Err(OriginError::TooLarge { limit: app.limits.max_source_bytes }.into());
            }
            let content_type = content_type_for(&req.path, meta.content_type.as_deref(), &[]);
            let stream = app.stats.count_streamed(stream);
            return Ok(Filled::Stream(Served::Stream { meta, stream, range: None, content_type }));
        }
    };
    let ttl = app.live().ttl.for_object(&req.path, &meta, now);
    let entry = match req.pipeline() {
        Some(pipeline) => {
            let output = process_source_until(app, pipeline, bytes, deadline, waiters).await?;
            // Copied out of the worker thread's malloc arena: long-lived cache bodies
            // then never pin the holes left by its transient multi-MB decode buffers
            // (PNG diverse cell peak RSS 156 → 138 MB, one 140 kB memcpy per miss).
            let body = Bytes::copy_from_slice(&output.bytes);
            let etag = content_etag(&body);
            Entry::new(
                key.clone(),
                StatusCode::OK,
                body,
                output.content_type.to_owned(),
                Some(etag),
                meta.last_modified,
                meta.etag.clone(),
                ttl.unwrap_or_default(),
            )
        }
        None => {
            let content_type = content_type_for(&req.path, meta.content_type.as_deref(), &bytes);
            Entry::new(
                key.clone(),
                StatusCode::OK,
                bytes,
                content_type,
                meta.etag.clone(),
                meta.last_modified,
                meta.etag.clone(),
                ttl.unwrap_or_default(),
            )
        }
    };
    let entry = precompress(app, entry, deadline).await;
    Ok(Filled::Entry { entry: Arc::new(entry), status, cacheable: ttl.is_some(), purged_at })
}

/// Compresses a compressible body once, at fill time, and keeps the copies with the
/// entry (see [`crate::encoding`]): small bodies here, large ones on the worker pool.
/// If the pool refuses (overload, deadline), the entry is kept without coded copies
/// and served as identity: compression is never worth failing a fill for.
async fn precompress(app: &Arc<App>, entry: Entry, deadline: Instant) -> Entry {
    if !crate::encoding::wants_precompress(&entry.content_type, entry.body.len()) {
        return entry;
    }
    let body = entry.body.clone();
    let encoded = if body.len() <= crate::encoding::INLINE_MAX {
        crate::encoding::precompress(&body)
    } else {
        match app.workers.run(deadline.into(), move || crate::encoding::precompress(&body)).await {
            Ok(encoded) => encoded,
            Err(e) => {
                tracing::debug!(error = %e, "fill-time compression skipped");
                return entry;
            }
        }
    };
    app.stats.fill_compressed();
    entry.with_encodings(encoded)
}

/// Runs a pipeline on a source on the worker pool: watermark objects are fetched
/// first, fonts come from start-up, stage times go to the metrics.
///
/// # Errors
/// Watermark fetch failures, overload, deadline and processing errors.
pub async fn process_source(
    app: &Arc<App>,
    pipeline: &process::Pipeline,
    bytes: Bytes,
) -> Result<process::Output, Error> {
    process_source_until(app, pipeline, bytes, Instant::now() + app.config.request_timeout(), None).await
}

/// [`process_source`] under the request's deadline (the one its origin fetch used, not
/// a new one), stopped between ops and inside long ops once every waiter left.
///
/// # Errors
/// Watermark fetch failures, overload, deadline, cancellation and processing errors.
pub async fn process_source_until(
    app: &Arc<App>,
    pipeline: &process::Pipeline,
    bytes: Bytes,
    deadline: Instant,
    waiters: Option<Arc<Waiters>>,
) -> Result<process::Output, Error> {
    let overlays = fetch_watermarks(app, pipeline).await?;
    let charge = charge_decode(app, pipeline, &bytes, &overlays, deadline).await?;
    let pipeline = pipeline.clone();
    let limits = app.limits.clone();
    let fonts = app.fonts.clone();
    let decoded = app.decoded.clone();
    let output = app
        .workers
        .run(deadline.into(), move || {
            // Held until the job ends, even when its request has gone.
            let _charge = charge;
            let ctx = RunContext {
                limits: &limits,
                deadline: Some(deadline),
                fonts: fonts.as_deref(),
                overlays: Some(&overlays),
                decoded: decoded.as_ref(),
                cancel: waiters.as_deref().map(Waiters::flag),
            };
            process::run(&bytes, &pipeline, &ctx)
        })
        .await??;
    app.stats.stage("decode", output.trace.decode);
    app.stats.stage("ops", output.trace.ops);
    app.stats.stage("encode", output.trace.encode);
    app.stats.decoded_source(output.trace.decoded_cache_hit);
    Ok(output)
}

/// Charges a run's working memory, estimated from the headers, against the decode
/// budget before it is queued: more than the whole budget is 400 ImageTooLarge at once;
/// a run that does not fit beside the others waits for at most half of what is left of
/// the request's deadline (so the client gets 503 + Retry-After rather than a 504), or is refused
/// at once when as many runs wait as the worker queue holds.
///
/// # Errors
/// 4xx from the header check, `ImageTooLarge`, `Overloaded`.
async fn charge_decode(
    app: &Arc<App>,
    pipeline: &process::Pipeline,
    bytes: &[u8],
    overlays: &process::Overlays,
    deadline: Instant,
) -> Result<Option<crate::budget::Charge>, Error> {
    let Some(budget) = &app.decode_budget else { return Ok(None) };
    // Header parsing only (no pixel, no decompression): cheap enough for the reactor.
    let need = process::run_cost(bytes, pipeline, Some(overlays), &app.limits)?;
    let wait_until = tokio::time::Instant::now() + deadline.saturating_duration_since(Instant::now()) / 2;
    match budget.charge(need, wait_until).await {
        Ok(charge) => Ok(Some(charge)),
        Err(crate::budget::BudgetError::TooLarge { need, budget }) => {
            tracing::info!(need, budget, "decode refused: working memory above limits.decode_memory");
            Err(process::ProcessError::memory_too_large().into())
        }
        Err(crate::budget::BudgetError::Busy) => Err(Error::Overloaded),
    }
}

/// Fetches the watermark objects a pipeline names (spec §4.15: same bucket) through the
/// same origin, whole and capped at the source size limit. The keys were normalised at
/// parse time, so they cannot leave the origin's namespace.
///
/// # Errors
/// 400 `WatermarkError` for a missing, too large or streamed object; other origin
/// failures (timeouts, 5xx) as themselves.
async fn fetch_watermarks(app: &Arc<App>, pipeline: &process::Pipeline) -> Result<process::Overlays, Error> {
    let mut overlays = process::Overlays::new();
    for key in pipeline.watermark_objects() {
        let fetch = FetchRequest {
            key: &key,
            head_only: false,
            if_none_match: None,
            if_modified_since: None,
            buffer_limit: app.limits.max_source_bytes,
            range: None,
        };
        app.stats.origin_fetch();
        let started = Instant::now();
        let fetched = app.origin.fetch(&fetch).await;
        app.stats.origin_result(started.elapsed(), &fetched);
        let bytes = match fetched {
            Ok(Fetched::Object(object)) => match object.body {
                OriginBody::Full(bytes) => bytes,
                OriginBody::Stream { .. } | OriginBody::Chunked(_) => {
                    return Err(watermark_error("The watermark object is too large."))
                }
            },
            Ok(Fetched::NotModified(_)) => {
                return Err(OriginError::Upstream("304 to an unconditional request".into()).into())
            }
            Err(OriginError::NotFound) => {
                return Err(watermark_error(format!("The watermark object does not exist: {key}")))
            }
            Err(OriginError::TooLarge { .. }) => return Err(watermark_error("The watermark object is too large.")),
            Err(e) => return Err(e.into()),
        };
        overlays.insert(key, bytes);
    }
    Ok(overlays)
}

fn watermark_error(msg: impl Into<String>) -> Error {
    process::ProcessError::watermark(msg).into()
}

/// ETag of processed bytes: a stable content hash.
fn content_etag(body: &[u8]) -> String {
    format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(body))
}

/// Content-Type: the origin's, else by extension, else by sniffing magic bytes.
fn content_type_for(path: &str, origin: Option<&str>, body: &[u8]) -> String {
    if let Some(ct) = origin {
        return ct.to_owned();
    }
    if let Some(mime) = mime_guess::from_path(path).first_raw() {
        return mime.to_owned();
    }
    sniff(body).unwrap_or("application/octet-stream").to_owned()
}

fn sniff(body: &[u8]) -> Option<&'static str> {
    const MAGIC: &[(&[u8], &str)] = &[
        (b"\xFF\xD8\xFF", "image/jpeg"),
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"BM", "image/bmp"),
        (b"II*\0", "image/tiff"),
        (b"MM\0*", "image/tiff"),
    ];
    if body.len() >= 12 && &body[0..4] == b"RIFF" && &body[8..12] == b"WEBP" {
        return Some("image/webp");
    }
    if body.len() >= 12 && &body[4..8] == b"ftyp" {
        return Some("video/mp4");
    }
    MAGIC.iter().find(|(m, _)| body.starts_with(m)).map(|(_, t)| *t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffing_knows_common_magic() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0rest"), Some("image/jpeg"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff(b"hello"), None);
        assert_eq!(content_type_for("/noext", None, b"GIF89a.."), "image/gif");
        assert_eq!(content_type_for("/a.png", None, b""), "image/png");
    }
}
