//! The HTTP transport shared by the plain HTTP, OSS and S3 origins, and the plain
//! HTTP origin itself.
//!
//! [`HttpClient`] owns one pooled hyper-util client (keep-alive; HTTPS via rustls with
//! the ring provider and the bundled webpki roots) and runs one fetch as a sequence of
//! attempts: each attempt rebuilds the request through a caller closure (so signed
//! origins sign again with a fresh date on every retry, as OSS's 15-minute skew window
//! requires), applies the connect/read timeouts, and classifies the answer:
//!
//! * 200/206 → [`Fetched::Object`]: the body is size-checked (Content-Length first,
//!   then a hard cap while reading); up to `buffer_limit` it is read whole, larger
//!   objects come back as a [`Body::Stream`].
//! * 304 → [`Fetched::NotModified`].
//! * 404/410 → `NotFound`; 403 → `Denied`, `AuthFailed` or `ArchivedObject` from the
//!   XML `<Code>`; 401 → `AuthFailed`. The origin's body is read (bounded) only to find
//!   that code and is never put into an error.
//! * connect errors, timeouts, resets and 5xx are retried with bounded exponential
//!   backoff and jitter, then end as `Timeout` or `Upstream`.

use super::{Body, BodyStream, ByteRange, FetchRequest, Fetched, Object, ObjectMeta, OriginError};
use crate::budget::{BudgetError, Charge, MemoryBudget};
use bytes::Bytes;
use futures_util::StreamExt;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Timeouts, retries and size limits for network origins. Plain data with safe
/// defaults; `config.rs` embeds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginConfig {
    /// TCP (+TLS) connect timeout.
    pub connect_timeout: Duration,
    /// Longest wait for the response head, and for each body chunk after it.
    pub read_timeout: Duration,
    /// Attempts per fetch, first one included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the second attempt; doubles per retry (with jitter).
    pub retry_base_delay: Duration,
    /// Upper bound for one backoff pause.
    pub retry_max_delay: Duration,
    /// Largest object accepted from an origin, in bytes (`TooLarge` above).
    pub max_object_bytes: u64,
    /// Idle keep-alive connections are closed after this long.
    pub pool_idle_timeout: Duration,
    /// Idle keep-alive connections kept per origin host.
    pub pool_max_idle_per_host: usize,
    /// Body bytes all fetches of this client may buffer at once (0: no budget); see
    /// [`HttpClient`].
    pub max_bytes_in_flight: u64,
}

impl Default for OriginConfig {
    fn default() -> Self {
        OriginConfig {
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_attempts: 3,
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(2),
            max_object_bytes: 64 * 1024 * 1024,
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            max_bytes_in_flight: 512 << 20,
        }
    }
}

/// Largest error body read to find the XML `<Code>`; real OSS error bodies are < 2 KiB.
const ERROR_BODY_LIMIT: usize = 16 * 1024;

type Connector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A pooled HTTP(S) client with the fetch policy above.
///
/// Bodies read whole are charged against one budget of bytes in flight
/// (`max_bytes_in_flight`) before they are buffered: a known length up front, a chunked
/// body MiB by MiB as it arrives. A fetch that cannot get its bytes within the read
/// timeout ends as `Busy` (503). A chunked body is buffered only up to the caller's
/// `buffer_limit`: past it, what was read and the rest go on as a stream, so neither a
/// processed source nor a cacheable object ever holds more than its limit in memory.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<Connector, Empty<Bytes>>,
    config: Arc<OriginConfig>,
    in_flight: Option<MemoryBudget>,
}

impl std::fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpClient").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The string a signed request was signed with, carried as a request extension so
/// a `SignatureDoesNotMatch` can be logged next to the server's StringToSign.
#[derive(Debug, Clone)]
pub struct LocalStringToSign(pub String);

/// How one attempt failed, and whether another attempt may help.
struct AttemptError {
    error: OriginError,
    retry: bool,
}

impl AttemptError {
    fn fatal(error: OriginError) -> Self {
        AttemptError { error, retry: false }
    }
    fn transient(error: OriginError) -> Self {
        AttemptError { error, retry: true }
    }
}

impl HttpClient {
    /// Builds the client.
    ///
    /// # Errors
    /// `OriginError::Config` when TLS cannot be set up.
    pub fn new(config: &OriginConfig) -> Result<Self, OriginError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(config.connect_timeout));
        let provider = rustls::crypto::ring::default_provider();
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(provider)
            .map_err(|e| OriginError::Config(format!("TLS setup: {e}")))?
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .pool_timer(TokioTimer::new())
            .build(https);
        let in_flight = MemoryBudget::new(config.max_bytes_in_flight);
        Ok(HttpClient { client, config: Arc::new(config.clone()), in_flight })
    }

    /// The policy this client applies.
    pub fn config(&self) -> &OriginConfig {
        &self.config
    }

    /// Runs one fetch with retries. `build` makes the request for one attempt from the
    /// headers it must carry (Range, validators); it is called again for every attempt
    /// so signatures are fresh.
    ///
    /// # Errors
    /// See the module docs.
    pub async fn fetch<F>(&self, req: &FetchRequest<'_>, build: F) -> Result<Fetched, OriginError>
    where
        F: Fn(&[(String, String)]) -> Result<Request<Empty<Bytes>>, OriginError>,
    {
        let mut extra = conditional_headers(req);
        let first = self.fetch_with_retries(req, &build, &extra).await?;
        // A large object and a client range: fetch only that range instead of
        // streaming the whole object past the client.
        let Fetched::Object(Object { meta, body: Body::Stream { range: (0, len), .. } }) = &first else {
            return Ok(first);
        };
        let Some(Some((start, end))) = req.range.map(|r| r.resolve(*len)) else {
            return Ok(first);
        };
        if (start, end) == (0, *len) {
            return Ok(first);
        }
        let etag = meta.etag.clone();
        drop(first);
        extra.retain(|(n, _)| n != "if-none-match" && n != "if-modified-since");
        extra.push(("range".into(), format!("bytes={start}-{}", end - 1)));
        // If-Match keeps the range consistent with the length seen above.
        if let Some(etag) = etag {
            extra.push(("if-match".into(), etag));
        }
        let ranged = FetchRequest { range: Some(ByteRange::From { first: start, last: Some(end - 1) }), ..req.clone() };
        self.fetch_with_retries(&ranged, &build, &extra).await
    }

    async fn fetch_with_retries<F>(
        &self,
        req: &FetchRequest<'_>,
        build: &F,
        extra: &[(String, String)],
    ) -> Result<Fetched, OriginError>
    where
        F: Fn(&[(String, String)]) -> Result<Request<Empty<Bytes>>, OriginError>,
    {
        let attempts = self.config.max_attempts.max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.attempt(req, build, extra).await {
                Ok(f) => return Ok(f),
                Err(AttemptError { error, retry }) if retry && attempt < attempts => {
                    let pause = backoff(&self.config, attempt);
                    tracing::debug!(attempt, ?pause, error = %error, "origin attempt failed; retrying");
                    tokio::time::sleep(pause).await;
                }
                Err(AttemptError { error, .. }) => return Err(error),
            }
        }
    }

    async fn attempt<F>(
        &self,
        req: &FetchRequest<'_>,
        build: &F,
        extra: &[(String, String)],
    ) -> Result<Fetched, AttemptError>
    where
        F: Fn(&[(String, String)]) -> Result<Request<Empty<Bytes>>, OriginError>,
    {
        let request = build(extra).map_err(AttemptError::fatal)?;
        let local = request.extensions().get::<LocalStringToSign>().cloned();
        let response = match tokio::time::timeout(self.config.read_timeout, self.client.request(request)).await {
            Err(_) => return Err(AttemptError::transient(OriginError::Timeout)),
            Ok(Err(e)) => return Err(classify_client_error(&e)),
            Ok(Ok(r)) => r,
        };
        self.answer(req, response, local).await
    }

    async fn answer(
        &self,
        req: &FetchRequest<'_>,
        response: Response<Incoming>,
        local: Option<LocalStringToSign>,
    ) -> Result<Fetched, AttemptError> {
        let status = response.status();
        let (parts, body) = response.into_parts();
        match status {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => self.object(req, status, &parts.headers, body).await,
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified(parse_meta(&parts.headers))),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(AttemptError::fatal(OriginError::NotFound)),
            StatusCode::UNAUTHORIZED => Err(AttemptError::fatal(OriginError::AuthFailed)),
            StatusCode::FORBIDDEN => {
                let text = self.error_text(&parts.headers, body).await;
                Err(AttemptError::fatal(forbidden(&parts.headers, &text, local.as_ref())))
            }
            s if s.is_server_error() => {
                Err(AttemptError::transient(OriginError::Upstream(describe_status(s, &parts.headers))))
            }
            s => Err(AttemptError::fatal(OriginError::Upstream(describe_status(s, &parts.headers)))),
        }
    }

    async fn object(
        &self,
        req: &FetchRequest<'_>,
        status: StatusCode,
        headers: &HeaderMap,
        body: Incoming,
    ) -> Result<Fetched, AttemptError> {
        let mut meta = parse_meta(headers);
        let length = content_length(headers);
        // On 206 the object's length is the Content-Range total, not Content-Length.
        let range = if status == StatusCode::PARTIAL_CONTENT {
            let (start, end, total) = headers
                .get(header::CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(parse_content_range)
                .ok_or_else(|| {
                    AttemptError::fatal(OriginError::Upstream("206 without a valid Content-Range".into()))
                })?;
            meta.content_length = total;
            Some((start, end))
        } else {
            None
        };
        let limit = self.config.max_object_bytes;
        if meta.content_length > limit || length.is_some_and(|l| l > limit) {
            return Err(AttemptError::fatal(OriginError::TooLarge { limit }));
        }
        if req.head_only {
            return Ok(Fetched::Object(Object { meta, body: Body::Full(Bytes::new()) }));
        }
        let read_timeout = self.config.read_timeout;
        match (length, range) {
            (Some(len), None) if len > req.buffer_limit => {
                let stream = capped_stream(body, len, read_timeout);
                Ok(Fetched::Object(Object { meta, body: Body::Stream { stream, range: (0, len) } }))
            }
            (Some(len), Some((start, end))) => {
                if end.saturating_sub(start) != len {
                    return Err(AttemptError::fatal(OriginError::Upstream(
                        "Content-Range disagrees with Content-Length".into(),
                    )));
                }
                let stream = capped_stream(body, len, read_timeout);
                Ok(Fetched::Object(Object { meta, body: Body::Stream { stream, range: (start, end) } }))
            }
            _ => {
                // Known small length, or unknown length (chunked): read it whole under the
                // hard cap and the in-flight budget, but a chunked body only up to
                // buffer_limit; past that it goes on as a stream (not cacheable).
                let cap = match range {
                    Some((start, end)) => end.saturating_sub(start),
                    None => limit,
                };
                let read =
                    read_buffered(body, length, req.buffer_limit, cap, read_timeout, self.in_flight.as_ref()).await?;
                let bytes = match read {
                    Buffered::Whole(bytes) => bytes,
                    Buffered::Over { prefix, body, charge } => {
                        let stream = prefixed_stream(prefix, body, cap, range.is_some(), read_timeout, charge);
                        return Ok(Fetched::Object(Object {
                            meta,
                            body: match range {
                                Some(range) => Body::Stream { stream, range },
                                None => Body::Chunked(stream),
                            },
                        }));
                    }
                };
                if length.is_some_and(|l| l != bytes.len() as u64) {
                    return Err(AttemptError::transient(OriginError::Upstream(
                        "body shorter than Content-Length".into(),
                    )));
                }
                let len = bytes.len() as u64;
                if range.is_none() {
                    meta.content_length = len;
                }
                let (start, end) = range.unwrap_or((0, len));
                if len > req.buffer_limit || range.is_some() {
                    let stream = futures_util::stream::once(async move { Ok(bytes) }).boxed();
                    return Ok(Fetched::Object(Object { meta, body: Body::Stream { stream, range: (start, end) } }));
                }
                Ok(Fetched::Object(Object { meta, body: Body::Full(bytes) }))
            }
        }
    }

    /// Reads a bounded error body (or the HEAD-only `x-oss-err` header) for its Code.
    async fn error_text(&self, headers: &HeaderMap, body: Incoming) -> String {
        if let Some(b64) = headers.get("x-oss-err").and_then(|v| v.to_str().ok()) {
            use base64::Engine as _;
            if let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) {
                return String::from_utf8_lossy(&raw).into_owned();
            }
        }
        let limit = ERROR_BODY_LIMIT as u64;
        match read_buffered(body, None, limit, limit, self.config.read_timeout, None).await {
            Ok(Buffered::Whole(b)) => String::from_utf8_lossy(&b).into_owned(),
            _ => String::new(),
        }
    }
}

/// The Range-free conditional headers of a fetch.
fn conditional_headers(req: &FetchRequest<'_>) -> Vec<(String, String)> {
    let mut h = Vec::new();
    if let Some(etag) = req.if_none_match {
        h.push(("if-none-match".to_owned(), etag.to_owned()));
    }
    if let Some(t) = req.if_modified_since {
        h.push(("if-modified-since".to_owned(), httpdate::fmt_http_date(t)));
    }
    h
}

/// Maps a 403 to a variant from the XML `<Code>`; logs (never returns) the details.
fn forbidden(headers: &HeaderMap, body: &str, local: Option<&LocalStringToSign>) -> OriginError {
    let code = xml_element(body, "Code").unwrap_or_default();
    let request_id = header_str(headers, "x-oss-request-id").or_else(|| header_str(headers, "x-amz-request-id"));
    let error = match code {
        "SignatureDoesNotMatch"
        | "InvalidAccessKeyId"
        | "RequestTimeTooSkewed"
        | "SecurityTokenExpired"
        | "InvalidSecurityToken"
        | "InvalidToken"
        | "ExpiredToken" => OriginError::AuthFailed,
        "InvalidObjectState" => OriginError::ArchivedObject,
        _ => OriginError::Denied,
    };
    if code == "SignatureDoesNotMatch" {
        // The server's StringToSign is what tells a signer bug from a wrong secret.
        tracing::warn!(
            code,
            request_id,
            server_string_to_sign = xml_element(body, "StringToSign"),
            local_string_to_sign = local.map(|l| l.0.as_str()),
            "origin rejected our signature"
        );
    } else {
        tracing::warn!(code, request_id, "origin refused the request (403)");
    }
    error
}

/// Short, body-free description of an unexpected status.
fn describe_status(status: StatusCode, headers: &HeaderMap) -> String {
    match header_str(headers, "x-oss-request-id").or_else(|| header_str(headers, "x-amz-request-id")) {
        Some(id) => format!("origin status {} (request id {id})", status.as_u16()),
        None => format!("origin status {}", status.as_u16()),
    }
}

fn classify_client_error(e: &hyper_util::client::legacy::Error) -> AttemptError {
    use std::error::Error as _;
    // The connect timeout surfaces as a connect error whose source chain mentions it.
    let mut source = e.source();
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return AttemptError::transient(OriginError::Timeout);
            }
        }
        source = s.source();
    }
    let what = if e.is_connect() { "connect failed" } else { "connection failed" };
    AttemptError::transient(OriginError::Upstream(format!("{what}: {e}")))
}

/// Exponential backoff with jitter: `base * 2^(attempt-1)`, capped, then a random
/// point in its upper half so that concurrent retries spread out.
fn backoff(config: &OriginConfig, attempt: u32) -> Duration {
    let exp = config.retry_base_delay.saturating_mul(1u32 << attempt.saturating_sub(1).min(16));
    let delay = exp.min(config.retry_max_delay);
    let half = delay / 2;
    let nanos = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX);
    half + Duration::from_nanos(if nanos == 0 { 0 } else { jitter() % nanos })
}

/// A random number without a `rand` dependency: std's per-instance random SipHash keys.
fn jitter() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_nanos()));
    h.finish()
}

/// What [`read_buffered`] got.
enum Buffered {
    /// The whole body.
    Whole(Bytes),
    /// A body of unknown length that went past the buffer limit: what was read so far
    /// (and its charge), and the rest still unread.
    Over { prefix: Bytes, body: Incoming, charge: Option<Charge> },
}

/// Reads a body into memory, failing with `TooLarge` above `cap`. A known `length`
/// is charged against `budget` up front and pre-sizes the buffer (at most 8 MiB); an
/// unknown one is charged as it grows and stops at `buffer_limit` with
/// [`Buffered::Over`], before the buffer holds more than one frame past the limit.
async fn read_buffered(
    mut body: Incoming,
    length: Option<u64>,
    buffer_limit: u64,
    cap: u64,
    read_timeout: Duration,
    budget: Option<&MemoryBudget>,
) -> Result<Buffered, AttemptError> {
    let expected = length.unwrap_or(0).min(cap);
    let mut charge = match budget {
        Some(b) => Some(b.charge(expected, deadline(read_timeout)).await.map_err(budget_error)?),
        None => None,
    };
    let prealloc = usize::try_from(expected.min(8 * 1024 * 1024)).unwrap_or(0);
    let mut buf: Vec<u8> = Vec::new();
    buf.try_reserve(prealloc)
        .map_err(|_| AttemptError::fatal(OriginError::Upstream("cannot allocate body buffer".into())))?;
    loop {
        let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
            Err(_) => return Err(AttemptError::transient(OriginError::Timeout)),
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                return Err(AttemptError::transient(OriginError::Upstream(format!("reading body: {e}"))))
            }
            Ok(Some(Ok(f))) => f,
        };
        let Ok(data) = frame.into_data() else { continue };
        let total = (buf.len() + data.len()) as u64;
        if total > cap {
            return Err(AttemptError::fatal(OriginError::TooLarge { limit: cap }));
        }
        if length.is_none() {
            if let (Some(b), Some(c)) = (budget, charge.as_mut()) {
                if total > c.bytes() {
                    // Charge ahead in MiB steps, not per frame.
                    let step = (total - c.bytes()).max(1 << 20);
                    b.grow(c, step, deadline(read_timeout)).await.map_err(budget_error)?;
                }
            }
        }
        buf.extend_from_slice(&data);
        if length.is_none() && total > buffer_limit {
            return Ok(Buffered::Over { prefix: Bytes::from(buf), body, charge });
        }
    }
    Ok(Buffered::Whole(Bytes::from(buf)))
}

fn deadline(wait: Duration) -> tokio::time::Instant {
    tokio::time::Instant::now() + wait
}

/// The in-flight budget could not be had: more than the whole budget, or not in time.
fn budget_error(e: BudgetError) -> AttemptError {
    tracing::info!(?e, "origin fetch refused: bytes in flight above origin_client.max_bytes_in_flight");
    AttemptError::fatal(OriginError::Busy)
}

/// `prefix`, then the rest of `body`, at most `cap` bytes in all (exactly `cap` when
/// `exact`): a longer body, a short exact one or a chunk timeout end the stream with an
/// I/O error. The prefix's budget charge is given back once it has been handed on.
fn prefixed_stream(
    prefix: Bytes,
    body: Incoming,
    cap: u64,
    exact: bool,
    read_timeout: Duration,
    charge: Option<Charge>,
) -> BodyStream {
    let seen = prefix.len() as u64;
    let first = futures_util::stream::once(async move {
        drop(charge);
        Ok(prefix)
    });
    let rest = futures_util::stream::unfold((body, seen, false), move |(mut body, seen, done)| async move {
        if done {
            return None;
        }
        loop {
            let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
                Err(_) => return Some((Err(io_error("origin body timed out")), (body, seen, true))),
                Ok(None) if !exact || seen == cap => return None,
                Ok(None) => return Some((Err(io_error("origin body ended early")), (body, seen, true))),
                Ok(Some(Err(e))) => return Some((Err(io_error(&format!("origin body: {e}"))), (body, seen, true))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            let seen = seen + data.len() as u64;
            if seen > cap {
                return Some((Err(io_error("origin body over the size limit")), (body, seen, true)));
            }
            return Some((Ok(data), (body, seen, false)));
        }
    });
    first.chain(rest).boxed()
}

/// A pass-through stream of exactly `len` bytes: a chunk timeout, a body longer than
/// announced or one that ends early become I/O errors that end the stream.
fn capped_stream(body: Incoming, len: u64, read_timeout: Duration) -> BodyStream {
    futures_util::stream::unfold((body, 0u64, false), move |(mut body, seen, done)| async move {
        if done {
            return None;
        }
        loop {
            let frame = match tokio::time::timeout(read_timeout, body.frame()).await {
                Err(_) => return Some((Err(io_error("origin body timed out")), (body, seen, true))),
                Ok(None) if seen == len => return None,
                Ok(None) => return Some((Err(io_error("origin body ended early")), (body, seen, true))),
                Ok(Some(Err(e))) => return Some((Err(io_error(&format!("origin body: {e}"))), (body, seen, true))),
                Ok(Some(Ok(f))) => f,
            };
            let Ok(data) = frame.into_data() else { continue };
            let seen = seen + data.len() as u64;
            if seen > len {
                return Some((Err(io_error("origin body longer than announced")), (body, seen, true)));
            }
            return Some((Ok(data), (body, seen, false)));
        }
    })
    .boxed()
}

fn io_error(msg: &str) -> std::io::Error {
    std::io::Error::other(msg.to_owned())
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    header_str(headers, "content-length").and_then(|v| v.trim().parse().ok())
}

/// Parses the caching-relevant headers of an origin answer.
pub fn parse_meta(headers: &HeaderMap) -> ObjectMeta {
    let text = |name: header::HeaderName| header_str(headers, name.as_str()).map(str::to_owned);
    ObjectMeta {
        content_type: text(header::CONTENT_TYPE),
        content_length: content_length(headers).unwrap_or(0),
        etag: text(header::ETAG),
        last_modified: header_str(headers, "last-modified").and_then(|v| httpdate::parse_http_date(v).ok()),
        cache_control: text(header::CACHE_CONTROL),
        // RFC 9111 5.3: an invalid Expires (e.g. "0") means "already expired".
        expires: header_str(headers, "expires").map(|v| httpdate::parse_http_date(v).unwrap_or(SystemTime::UNIX_EPOCH)),
        pragma_no_cache: headers
            .get_all(header::PRAGMA)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("no-cache")),
    }
}

/// `bytes first-last/total` → half-open (start, end) and total.
fn parse_content_range(v: &str) -> Option<(u64, u64, u64)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (span, total) = rest.split_once('/')?;
    let (first, last) = span.split_once('-')?;
    let (first, last, total): (u64, u64, u64) = (first.parse().ok()?, last.parse().ok()?, total.parse().ok()?);
    (first <= last && last < total).then_some((first, last + 1, total))
}

/// The text of the first `<name>...</name>` element (enough for OSS/S3 error bodies).
pub fn xml_element<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{name}>"))? + start;
    Some(xml[start..end].trim())
}

/// A header value from a string we built; invalid bytes are a bug in the caller's
/// configuration (e.g. a control character in a credential), reported as `Config`.
/// A bucket request: URL, Host, the (signed) headers, and the local string-to-sign
/// kept as an extension for logging a `SignatureDoesNotMatch`.
pub(crate) fn signed_request(
    method: &str,
    url: &str,
    host: &str,
    headers: &[(String, String)],
    local: Option<LocalStringToSign>,
) -> Result<Request<Empty<Bytes>>, OriginError> {
    let mut b = Request::builder().method(method).uri(url).header(header::HOST, header_value(host)?);
    for (n, v) in headers {
        b = b.header(n.as_str(), header_value(v)?);
    }
    if let Some(local) = local {
        b = b.extension(local);
    }
    b.body(Empty::new()).map_err(|e| OriginError::Config(format!("request: {e}")))
}

pub(crate) fn header_value(v: &str) -> Result<HeaderValue, OriginError> {
    HeaderValue::from_str(v).map_err(|_| OriginError::Config("header value with invalid characters".into()))
}

/// A plain HTTP(S) origin: `http(s)://host[:port]/prefix` + `/` + key.
#[derive(Debug)]
pub struct HttpOrigin {
    scheme: String,
    authority: String,
    prefix: String,
    client: HttpClient,
}

impl HttpOrigin {
    /// Parses `http(s)://host[:port][/prefix]`.
    ///
    /// # Errors
    /// `OriginError::Config` for anything else (user info, query, bad host).
    pub fn new(spec: &str, client: HttpClient) -> Result<Self, OriginError> {
        let uri: http::Uri = spec.parse().map_err(|e| OriginError::Config(format!("origin URL {spec:?}: {e}")))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_owned(),
            _ => return Err(OriginError::Config(format!("origin URL {spec:?}: scheme must be http or https"))),
        };
        let authority = uri
            .authority()
            .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
            .ok_or_else(|| OriginError::Config(format!("origin URL {spec:?}: needs a host and no user info")))?
            .as_str()
            .to_owned();
        if uri.query().is_some() {
            return Err(OriginError::Config(format!("origin URL {spec:?}: no query string allowed")));
        }
        let prefix = uri.path().trim_end_matches('/').to_owned();
        Ok(HttpOrigin { scheme, authority, prefix, client })
    }

    /// `scheme://host/prefix`, for logs.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", self.scheme, self.authority, self.prefix)
    }

    /// Fetches `prefix/key`.
    ///
    /// # Errors
    /// See [`OriginError`].
    pub async fn fetch(&self, req: &FetchRequest<'_>) -> Result<Fetched, OriginError> {
        let url = format!("{}/{}", self.base_url(), super::sign::uri_encode(req.key, true));
        let method = if req.head_only { http::Method::HEAD } else { http::Method::GET };
        self.client
            .fetch(req, |extra| {
                let mut b = Request::builder().method(method.clone()).uri(&url);
                for (n, v) in extra {
                    b = b.header(n.as_str(), header_value(v)?);
                }
                b.body(Empty::new()).map_err(|e| OriginError::Config(format!("request: {e}")))
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_code_is_found() {
        let body = "<?xml version=\"1.0\"?><Error><Code>SignatureDoesNotMatch</Code><Message>x</Message></Error>";
        assert_eq!(xml_element(body, "Code"), Some("SignatureDoesNotMatch"));
        assert_eq!(xml_element(body, "Nope"), None);
    }

    #[test]
    fn forbidden_codes_map_to_variants() {
        let h = HeaderMap::new();
        let xml = |c: &str| format!("<Error><Code>{c}</Code></Error>");
        assert!(matches!(forbidden(&h, &xml("AccessDenied"), None), OriginError::Denied));
        for c in ["SignatureDoesNotMatch", "InvalidAccessKeyId", "RequestTimeTooSkewed"] {
            assert!(matches!(forbidden(&h, &xml(c), None), OriginError::AuthFailed), "{c}");
        }
        assert!(matches!(forbidden(&h, &xml("InvalidObjectState"), None), OriginError::ArchivedObject));
        assert!(matches!(forbidden(&h, "", None), OriginError::Denied));
    }

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 0-9/100"), Some((0, 10, 100)));
        assert_eq!(parse_content_range("bytes 5-4/100"), None);
        assert_eq!(parse_content_range("bytes 0-100/100"), None);
        assert_eq!(parse_content_range("bytes */100"), None);
    }

    #[test]
    fn backoff_is_bounded_and_grows() {
        let c = OriginConfig {
            retry_base_delay: Duration::from_millis(100),
            retry_max_delay: Duration::from_secs(1),
            ..OriginConfig::default()
        };
        for attempt in 1..40 {
            let d = backoff(&c, attempt);
            let full = (c.retry_base_delay * (1 << (attempt - 1).min(16))).min(c.retry_max_delay);
            assert!(d >= full / 2 && d <= full, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn meta_is_parsed() {
        let mut h = HeaderMap::new();
        h.insert("etag", HeaderValue::from_static("\"abc\""));
        h.insert("content-length", HeaderValue::from_static("42"));
        h.insert("content-type", HeaderValue::from_static("image/png"));
        h.insert("last-modified", HeaderValue::from_static("Mon, 06 May 2024 07:08:09 GMT"));
        h.insert("cache-control", HeaderValue::from_static("max-age=60"));
        h.insert("expires", HeaderValue::from_static("0"));
        h.insert("pragma", HeaderValue::from_static("no-cache"));
        let m = parse_meta(&h);
        assert_eq!(m.etag.as_deref(), Some("\"abc\""));
        assert_eq!(m.content_length, 42);
        assert_eq!(m.content_type.as_deref(), Some("image/png"));
        assert!(m.last_modified.is_some());
        assert_eq!(m.cache_control.as_deref(), Some("max-age=60"));
        assert_eq!(m.expires, Some(SystemTime::UNIX_EPOCH));
        assert!(m.pragma_no_cache);
    }

    #[test]
    fn http_origin_specs() {
        let c = HttpClient::new(&OriginConfig::default()).unwrap();
        let o = HttpOrigin::new("https://img.example.com:8443/base/", c.clone()).unwrap();
        assert_eq!(o.base_url(), "https://img.example.com:8443/base");
        for bad in ["ftp://x/", "http://u:p@x/", "http://x/?a=b", "http:///x"] {
            assert!(HttpOrigin::new(bad, c.clone()).is_err(), "{bad}");
        }
    }
}
