//! `GET /explain?url=...` on the admin listener: how imgedge sees one URL — the
//! parsed pipeline, the cache key, what the cache holds, and a fresh (uncached) run
//! with the shrink-on-load factor and per-stage timings. Admin only (token-gated
//! when a token is configured), since it spends CPU on demand.

use crate::cache::CacheKey;
use crate::error::Error;
use crate::origin::{Body, FetchRequest, Fetched, OriginError};
use crate::request::ObjectRequest;
use crate::url::query_pairs;
use crate::{purge, App};
use http::{header, HeaderMap};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

fn ms(d: std::time::Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// Builds the explanation for the `url` query parameter.
///
/// # Errors
/// 400 without a usable `url`; origin and processing errors of the fresh run are
/// reported inside the JSON instead.
pub async fn explain(app: &Arc<App>, query: Option<&str>, headers: &HeaderMap) -> Result<Value, Error> {
    let url = query_pairs(query.unwrap_or(""))
        .find(|(n, _)| n == "url")
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| Error::InvalidArgument("give the URL to explain as ?url=...".into()))?;
    let mut req = purge::url_request(app, &url, headers.get(header::ACCEPT))?;
    req.negotiate_format(app.config.auto_webp(), app.config.auto_avif());
    let canonical = req.canonical_chain().map(str::to_owned);
    let key = CacheKey::new(
        &req.host,
        &req.path,
        req.query.as_deref(),
        canonical.as_deref(),
        req.format_class,
        &app.config.cache.ignore_params,
    );
    let now = SystemTime::now();
    // Which tier would answer: memory first, then the disk tier (looking there
    // promotes the entry to memory, as a request would).
    let (found, tier) = match app.cache.get(&key) {
        Some(e) => (Some(e), "memory"),
        None => match app.cache.get_from_disk(&key).await {
            Some(e) => (Some(e), "disk"),
            None => (None, "none"),
        },
    };
    let cache = match found {
        Some(e) => json!({
            "tier": tier,
            "state": if e.is_fresh(now) { "fresh" } else { "stale" },
            "age_secs": e.age(now).as_secs(),
            "ttl_secs": e.ttl.as_secs(),
            "bytes": e.body.len(),
            "content_type": e.content_type,
        }),
        None => json!({"state": "absent", "tier": tier, "disk_tier": app.cache.disk().is_some()}),
    };
    Ok(json!({
        "object_key": req.key(),
        "host": req.host,
        "pipeline": canonical,
        "format_class": req.format_class,
        "cache_key": {"url": key.url, "hash": key.hash.iter().map(|b| format!("{b:02x}")).collect::<String>()},
        "cache": cache,
        "run": fresh_run(app, &req).await,
    }))
}

/// Fetches the original and runs the pipeline once, uncached, reporting timings.
async fn fresh_run(app: &Arc<App>, req: &ObjectRequest) -> Value {
    let started = Instant::now();
    let fetch = FetchRequest { key: req.key(), buffer_limit: app.limits.max_source_bytes, ..FetchRequest::default() };
    let bytes = match app.origin.fetch(&fetch).await {
        Ok(Fetched::Object(o)) => match o.body {
            Body::Full(b) => b,
            Body::Stream { .. } | Body::Chunked(_) => {
                return json!({"error": Error::from(OriginError::TooLarge { limit: app.limits.max_source_bytes }).code()})
            }
        },
        Ok(Fetched::NotModified(_)) => return json!({"error": "unexpected 304"}),
        Err(e) => return json!({"error": Error::from(e).code()}),
    };
    let origin_ms = ms(started.elapsed());
    let Some(pipeline) = req.pipeline().cloned() else {
        return json!({"origin_ms": origin_ms, "source_bytes": bytes.len()});
    };
    let source_bytes = bytes.len();
    let result = crate::fill::process_source(app, &pipeline, bytes).await;
    match result {
        Ok(out) => json!({
            "origin_ms": origin_ms,
            "source_bytes": source_bytes,
            "shrink_on_load": format!("1/{}", out.trace.shrink.max(1)),
            "ac_refinement_skipped": out.trace.coarse_ac,
            "decode_ms": ms(out.trace.decode),
            "ops_ms": ms(out.trace.ops),
            "encode_ms": ms(out.trace.encode),
            "output_bytes": out.bytes.len(),
            "content_type": out.content_type,
        }),
        Err(e) => json!({"origin_ms": origin_ms, "error": e.code(), "message": e.public_message()}),
    }
}
