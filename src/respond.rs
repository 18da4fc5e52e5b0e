//! Writes the HTTP response for a served request: validators (304), byte ranges (206),
//! content coding, and the CDN's cache headers (`X-Cache`, `Age`, `Via`, `X-Swift-*`).
//! It never touches the origin or the cache; [`crate::fill`] decides what is served.

use crate::cache::{CacheStatus, Entry};
use crate::encoding::Coding;
use crate::error::Error;
use crate::fill::Served;
use crate::origin::{BodyStream, ObjectMeta, OriginError};
use crate::request::ObjectRequest;
use crate::App;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody};
use std::time::{Instant, SystemTime};

/// The response body type of the whole server.
pub type ResponseBody = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// A whole body.
pub fn full_body(bytes: impl Into<Bytes>) -> ResponseBody {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed_unsync()
}

/// Writes the response for a served request: validators, range, cache headers.
///
/// # Errors
/// `InvalidRange` for an unsatisfiable range; `NoSuchKey` for a cached 404.
pub fn respond(
    app: &App,
    req: &ObjectRequest,
    served: Served,
    started: Instant,
) -> Result<Response<ResponseBody>, Error> {
    match served {
        Served::Entry(entry, status) => respond_entry(app, req, &entry, status, started),
        Served::Stream { meta, stream, range, content_type } => {
            respond_stream(req, meta, stream, range, content_type, started)
        }
    }
}

fn respond_entry(
    app: &App,
    req: &ObjectRequest,
    entry: &Entry,
    status: CacheStatus,
    started: Instant,
) -> Result<Response<ResponseBody>, Error> {
    if entry.status == StatusCode::NOT_FOUND {
        return Err(OriginError::NotFound.into());
    }
    let cached = status != CacheStatus::Bypass;
    let fixed = entry.headers(&app.config.cache.client_cache_control);
    // Built straight into a map sized for every header a hit carries: this runs on
    // every cache hit, where the response builder's per-header checks and map growth
    // were a measurable share of the CPU per request.
    let mut headers = HeaderMap::with_capacity(20);
    headers.insert(header::CONTENT_TYPE, fixed.content_type.clone());
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    headers.insert(X_CACHE, HeaderValue::from_static(status.as_str()));
    headers.insert(header::VIA, via(status, started, 200));
    headers.insert(TIMING_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    if let Some(etag) = &fixed.etag {
        headers.insert(header::ETAG, etag.clone());
    }
    if let Some(lm) = &fixed.last_modified {
        headers.insert(header::LAST_MODIFIED, lm.clone());
    }
    if req.vary_accept {
        headers.append(header::VARY, HeaderValue::from_static("Accept"));
    }
    if status == CacheStatus::StaleHit {
        headers.insert(header::WARNING, HeaderValue::from_static("110 imgedge \"Response is Stale\""));
    }
    if cached {
        let age = if status.is_hit() { entry.age(SystemTime::now()).as_secs() } else { 0 };
        headers.insert(header::AGE, HeaderValue::from(age));
        headers.insert(X_SWIFT_SAVETIME, fixed.save_time.clone());
        headers.insert(X_SWIFT_CACHETIME, fixed.cache_time.clone());
        headers.insert(header::CACHE_CONTROL, fixed.cache_control.clone());
    } else {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    }
    let cache_status = status;
    let respond = |status: StatusCode, headers: HeaderMap, body: Bytes| {
        let mut response = Response::new(full_body(body));
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response.extensions_mut().insert(cache_status);
        Ok(response)
    };
    if crate::origin::validators_match(
        entry.etag.as_deref(),
        entry.last_modified,
        req.if_none_match.as_deref(),
        req.if_modified_since,
    ) {
        return respond(StatusCode::NOT_MODIFIED, headers, Bytes::new());
    }
    if crate::encoding::is_compressible(&entry.content_type) {
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        // The coded copies were made at fill time (`fill::precompress`): a hit only
        // picks one, brotli first. Ranges are served from the identity body.
        let accept = req.accept_encoding.as_deref().unwrap_or("");
        let compressed = [Coding::Brotli, Coding::Gzip]
            .into_iter()
            .filter(|c| req.range.is_none() && crate::encoding::accepts(accept, *c))
            .find_map(|c| entry.encoded(c.as_str()).map(|b| (c, b.clone())));
        if let Some((coding, body)) = compressed {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static(coding.as_str()));
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
            let body = if req.head { Bytes::new() } else { body };
            return respond(StatusCode::OK, headers, body);
        }
    }
    let len = entry.body.len() as u64;
    let (status_code, body) = match req.range {
        Some(range) => {
            let (start, end) = range.resolve(len).ok_or(Error::InvalidRange { len })?;
            let content_range = HeaderValue::from_str(&format!("bytes {start}-{}/{len}", end - 1))
                .map_err(|e| Error::Internal(format!("Content-Range: {e}")))?;
            headers.insert(header::CONTENT_RANGE, content_range);
            // Offsets are bounded by `len`, which came from a usize.
            let slice = entry.body.slice(start as usize..end as usize);
            (StatusCode::PARTIAL_CONTENT, slice)
        }
        None => (StatusCode::OK, entry.body.clone()),
    };
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
    let body = if req.head { Bytes::new() } else { body };
    respond(status_code, headers, body)
}

/// `X-Cache`: how the cache answered (for clients; stats and the access log read the
/// [`CacheStatus`] response extension instead).
pub const X_CACHE: HeaderName = HeaderName::from_static("x-cache");
const TIMING_ALLOW_ORIGIN: HeaderName = HeaderName::from_static("timing-allow-origin");
const X_SWIFT_SAVETIME: HeaderName = HeaderName::from_static("x-swift-savetime");
const X_SWIFT_CACHETIME: HeaderName = HeaderName::from_static("x-swift-cachetime");

fn respond_stream(
    req: &ObjectRequest,
    meta: ObjectMeta,
    stream: BodyStream,
    range: Option<(u64, u64)>,
    content_type: String,
    started: Instant,
) -> Result<Response<ResponseBody>, Error> {
    let len = meta.content_length;
    let mut builder = Response::builder()
        .header(header::CONTENT_TYPE, content_type)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(X_CACHE, CacheStatus::Bypass.as_str())
        .header(header::VIA, via(CacheStatus::Bypass, started, 200))
        .header(TIMING_ALLOW_ORIGIN, "*")
        .header(header::CACHE_CONTROL, "no-cache");
    if let Some(etag) = &meta.etag {
        builder = builder.header(header::ETAG, etag);
    }
    if let Some(lm) = meta.last_modified {
        builder = builder.header(header::LAST_MODIFIED, httpdate::fmt_http_date(lm));
    }
    if crate::origin::is_not_modified(&meta, req.if_none_match.as_deref(), req.if_modified_since) {
        return finish(builder.status(StatusCode::NOT_MODIFIED), full_body(Bytes::new()));
    }
    // Without a known length (a chunked origin body) the whole body goes out chunked:
    // a server may ignore Range (RFC 9110 §14.2).
    let status = match (req.range, range) {
        (Some(r), Some(_)) if r.resolve(len).is_none() => return Err(Error::InvalidRange { len }),
        (Some(_), Some(range)) => {
            builder = builder.header(header::CONTENT_RANGE, format!("bytes {}-{}/{len}", range.0, range.1 - 1));
            StatusCode::PARTIAL_CONTENT
        }
        _ => StatusCode::OK,
    };
    if let Some(range) = range {
        builder = builder.header(header::CONTENT_LENGTH, range.1 - range.0);
    }
    let body = if req.head {
        full_body(Bytes::new())
    } else {
        let frames = futures_util::StreamExt::map(stream, |chunk| chunk.map(http_body::Frame::data));
        BodyExt::boxed_unsync(StreamBody::new(frames))
    };
    finish(builder.status(status), body)
}

fn finish(builder: http::response::Builder, body: ResponseBody) -> Result<Response<ResponseBody>, Error> {
    builder.extension(CacheStatus::Bypass).body(body).map_err(|e| Error::Internal(format!("response build: {e}")))
}

/// `Via` entry in the CDN's format: `node[ms,status-0,H|M]`.
fn via(status: CacheStatus, started: Instant, code: u16) -> HeaderValue {
    let ms = started.elapsed().as_millis();
    let hit = status.is_hit();
    if hit && ms == 0 && code == 200 {
        // Nearly every memory hit: the one value worth not formatting per request.
        return HeaderValue::from_static(concat!("imgedge/", env!("CARGO_PKG_VERSION"), "[0,200-0,H]"));
    }
    let hm = if hit { 'H' } else { 'M' };
    HeaderValue::from_str(&format!("imgedge/{}[{ms},{code}-0,{hm}]", env!("CARGO_PKG_VERSION")))
        .unwrap_or_else(|_| HeaderValue::from_static("imgedge"))
}
