//! Sockets and connections: the accept loops for the public and admin listeners,
//! HTTP/1 + HTTP/2 via hyper-util's auto builder, routing, the per-request
//! deadline, the access log line and graceful shutdown.
//!
//! Order of the per-request stack (outermost first): request id and timer →
//! deadline → route → fill and respond; then error mapping (the only place errors become
//! responses, via `error.rs`) → access log. Accept errors are logged and retried
//! after a pause, never fatal.

use crate::access::RequestParts;
use crate::error::Error;
use crate::fill;
use crate::request::ObjectRequest;
use crate::respond::{self, full_body, ResponseBody};
use crate::{purge, App};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;

/// Largest admin request body.
const MAX_ADMIN_BODY: usize = 1 << 20;
/// Pause after a failed accept (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

#[derive(Clone, Copy)]
enum Listener {
    Public,
    Admin,
}

/// Serves both listeners until `shutdown` resolves, then drains connections for at
/// most the configured grace period.
///
/// # Errors
/// Only if a listener's local address cannot be read.
pub async fn serve(
    public: TcpListener,
    admin: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    app.set_default_host(public.local_addr()?.to_string());
    crate::memory::start_returning();
    let graceful = GracefulShutdown::new();
    let builder = connection_builder(&app.config.http);
    tokio::pin!(shutdown);
    loop {
        let (accepted, which) = tokio::select! {
            a = public.accept() => (a, Listener::Public),
            a = admin.accept() => (a, Listener::Admin),
            () = &mut shutdown => break,
        };
        let stream = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; retrying");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let (stream, peer) = stream;
        let _ = stream.set_nodelay(true);
        let app = Arc::clone(&app);
        let service = service_fn(move |req| {
            let app = Arc::clone(&app);
            async move { Ok::<_, Infallible>(handle(app, which, peer, req).await) }
        });
        let conn = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(public);
    drop(admin);
    let grace = Duration::from_millis(app.config.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// HTTP/1 + HTTP/2 (h2c and ALPN-less prior knowledge) with the configured tuning.
fn connection_builder(cfg: &crate::config::HttpConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(cfg.keep_alive)
        .header_read_timeout(Duration::from_millis(cfg.header_read_timeout_ms));
    let mut h2 = builder.http2();
    h2.timer(TokioTimer::new()).max_concurrent_streams(cfg.http2_max_concurrent_streams);
    if cfg.http2_keep_alive_interval_secs > 0 {
        h2.keep_alive_interval(Duration::from_secs(cfg.http2_keep_alive_interval_secs));
    }
    builder
}

async fn handle(app: Arc<App>, which: Listener, peer: SocketAddr, req: Request<Incoming>) -> Response<ResponseBody> {
    let started = Instant::now();
    let request_id = app.next_request_id();
    let cors = match which {
        Listener::Public => app.config.cors.response_headers(req.headers()),
        Listener::Admin => Vec::new(),
    };
    if matches!(which, Listener::Public) && req.method() == Method::OPTIONS {
        return preflight(&app, req.headers());
    }
    // The request head outlives the handler: errors and the access log read it. The
    // public side only needs the head (GET/HEAD), and sets its deadline where it can
    // wait (`fill::serve_object`); the admin side reads its body, so it keeps a copy
    // of the head instead (admin calls are rare).
    let (result, head) = match which {
        Listener::Public => {
            let (head, _body) = req.into_parts();
            (public(&app, &head, peer, started).await, head)
        }
        Listener::Admin => {
            let head = copy_head(&req);
            let result = tokio::time::timeout(app.config.request_timeout(), admin(&app, req)).await;
            (result.unwrap_or(Err(Error::Timeout)), head)
        }
    };
    let mut response = match result {
        Ok(r) => r,
        // CDN API calls (admin `/`) get the API's JSON errors.
        Err(e) if matches!(which, Listener::Admin) && head.uri.path() == "/" => {
            crate::cdn_api::error_response(&e, request_id.as_str(), &head)
        }
        Err(e) => error_response(&e, request_id.as_str(), &head),
    };
    if let Ok(v) = http::HeaderValue::from_bytes(request_id.as_str().as_bytes()) {
        response.headers_mut().insert("x-oss-request-id", v);
    }
    for (name, value) in cors {
        response.headers_mut().append(name, value);
    }
    let header_str = |name: header::HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok());
    let cache = header_str(respond::X_CACHE).unwrap_or("-");
    let bytes = header_str(header::CONTENT_LENGTH).unwrap_or("-");
    app.stats.record_request(response.status().as_u16(), cache, bytes.parse().unwrap_or(0));
    // The query is left out of the log on purpose: it may carry signatures and tokens.
    tracing::info!(
        target: "imgedge::access",
        request_id = %request_id.as_str(),
        method = %head.method,
        path = %head.uri.path(),
        status = response.status().as_u16(),
        bytes = %bytes,
        cache = %cache,
        ms = started.elapsed().as_secs_f64() * 1000.0,
    );
    response
}

/// The method, URI and headers of an admin request, kept for its error response.
fn copy_head(req: &Request<Incoming>) -> http::request::Parts {
    let mut head = Request::new(()).into_parts().0;
    head.method = req.method().clone();
    head.uri = req.uri().clone();
    head.headers = req.headers().clone();
    head
}

/// Answers a CORS preflight: 200 with the allowed method and headers, or 403.
fn preflight(app: &App, headers: &http::HeaderMap) -> Response<ResponseBody> {
    let mut response = Response::new(full_body(Bytes::new()));
    match app.config.cors.preflight(headers) {
        Some(allowed) => {
            for (name, value) in allowed {
                response.headers_mut().append(name, value);
            }
        }
        None => *response.status_mut() = StatusCode::FORBIDDEN,
    }
    response
}

async fn public(
    app: &Arc<App>,
    parts: &http::request::Parts,
    peer: SocketAddr,
    started: Instant,
) -> Result<Response<ResponseBody>, Error> {
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let admitted = app.access.admit(RequestParts {
        host,
        path: parts.uri.path(),
        query: parts.uri.query(),
        headers: &parts.headers,
        peer: peer.ip(),
        now,
    })?;
    let rewritten: Option<http::Uri> = match admitted {
        None => None,
        Some(a) => Some(
            match &a.query {
                Some(q) => format!("{}?{q}", a.path),
                None => a.path,
            }
            .parse()
            .map_err(|_| Error::InvalidArgument("malformed request URI".into()))?,
        ),
    };
    let uri = rewritten.as_ref().unwrap_or(&parts.uri);
    let mut object = ObjectRequest::parse(&parts.method, uri, &parts.headers, &app.chains)?;
    object.negotiate_format(app.config.auto_webp(), app.config.auto_avif());
    let served = fill::serve_object(app, &object).await?;
    respond::respond(app, &object, served, started)
}

async fn admin(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<ResponseBody>, Error> {
    let route = (req.method().clone(), req.uri().path().to_owned());
    match (&route.0, route.1.as_str()) {
        (&Method::GET, "/healthz") | (&Method::HEAD, "/healthz") => {
            json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/metrics") => Response::builder()
            .header(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(full_body(app.stats.render(app)))
            .map_err(|e| Error::Internal(format!("response build: {e}"))),
        (&Method::GET, "/explain") => {
            purge::authorize(app, req.headers())?;
            let value = crate::explain::explain(app, req.uri().query(), req.headers()).await?;
            json_response(StatusCode::OK, value)
        }
        (&Method::POST, "/purge") => {
            purge::authorize(app, req.headers())?;
            let (content_type, query, body) = read_admin_body(req).await?;
            let tasks = purge::parse_purge(app, &content_type, &body, query.as_deref())?;
            let affected = purge::apply(app, tasks).await?;
            let task_id = app.next_task_id().to_string();
            json_response(
                StatusCode::OK,
                serde_json::json!({
                    "RequestId": app.next_request_id().as_str(),
                    "RefreshTaskId": task_id,
                    "task_id": task_id,
                    "affected": affected,
                }),
            )
        }
        (&Method::POST, "/prefetch") => {
            purge::authorize(app, req.headers())?;
            let (content_type, query, body) = read_admin_body(req).await?;
            let paths = purge::parse_prefetch(&content_type, &body, query.as_deref())?;
            let mut results = Vec::with_capacity(paths.len());
            for path in paths {
                results.push(prefetch_one(app, &path).await);
            }
            let task_id = app.next_task_id().to_string();
            json_response(
                StatusCode::OK,
                serde_json::json!({"RequestId": app.next_request_id().as_str(), "PushTaskId": task_id, "task_id": task_id, "results": results}),
            )
        }
        // The CDN's own API (RPC style, signed): `/?Action=...`.
        (&Method::GET, "/") | (&Method::POST, "/") => {
            let head = copy_head(&req);
            let (_, _, body) = read_admin_body(req).await?;
            crate::cdn_api::handle(app, &head, body, warm_for_api).await
        }
        (_, "/healthz" | "/purge" | "/prefetch" | "/metrics" | "/explain") => Err(Error::MethodNotAllowed),
        _ => Err(Error::NotFound),
    }
}

/// [`prefetch_one`] for the CDN API's background PushObjectCache tasks.
fn warm_for_api(app: Arc<App>, url: String) -> futures_util::future::BoxFuture<'static, serde_json::Value> {
    Box::pin(async move { prefetch_one(&app, &url).await })
}

/// Fetches one URL into the cache, as a GET would.
async fn prefetch_one(app: &Arc<App>, url: &str) -> serde_json::Value {
    let outcome: Result<&str, Error> = async {
        let (host, path, query) = purge::split_url(url)?;
        let host = host.unwrap_or_else(|| app.default_host());
        let uri: http::Uri = match &query {
            Some(q) => format!("{path}?{q}"),
            None => path,
        }
        .parse()
        .map_err(|_| Error::InvalidArgument(format!("bad prefetch path {url:?}")))?;
        let mut headers = http::HeaderMap::new();
        if let Ok(h) = http::HeaderValue::from_str(&host) {
            headers.insert(header::HOST, h);
        }
        let object = ObjectRequest::parse(&Method::GET, &uri, &headers, &app.chains)?;
        match fill::serve_object(app, &object).await? {
            fill::Served::Entry(_, status) => Ok(status.as_str()),
            fill::Served::Stream { .. } => Ok(crate::cache::CacheStatus::Bypass.as_str()),
        }
    }
    .await;
    match outcome {
        Ok(cache) => serde_json::json!({"path": url, "status": 200, "cache": cache}),
        Err(e) => serde_json::json!({"path": url, "status": e.status().as_u16(), "code": e.code()}),
    }
}

async fn read_admin_body(req: Request<Incoming>) -> Result<(String, Option<String>, Bytes), Error> {
    let content_type =
        req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    let query = req.uri().query().map(str::to_owned);
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|_| Error::BadRequest("request body unreadable or larger than 1 MiB".into()))?
        .to_bytes();
    Ok((content_type, query, body))
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Result<Response<ResponseBody>, Error> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json")
        .body(full_body(value.to_string()))
        .map_err(|e| Error::Internal(format!("response build: {e}")))
}

/// The one place an error becomes a response: status, OSS XML body, extra headers.
fn error_response(err: &Error, request_id: &str, req: &http::request::Parts) -> Response<ResponseBody> {
    let text = |name: header::HeaderName| req.headers.get(name).and_then(|h| h.to_str().ok()).unwrap_or("");
    let host = text(header::HOST);
    let accept_encoding = text(header::ACCEPT_ENCODING);
    let head = req.method == Method::HEAD;
    let path = req.uri.path();
    if err.is_server_side() {
        tracing::warn!(request_id, error = %err, "request failed");
    } else {
        tracing::debug!(request_id, error = %err, "request rejected");
    }
    let key = path.strip_prefix('/');
    let xml = err.xml_body(request_id, host, key);
    let mut builder = Response::builder()
        .status(err.status())
        .header(header::CONTENT_TYPE, "application/xml")
        .header(header::VARY, "Accept-Encoding")
        .header(header::SERVER, "imgedge");
    let body = match crate::encoding::negotiate(accept_encoding)
        .and_then(|c| crate::encoding::compress(xml.as_bytes(), c).map(|b| (c, b)))
    {
        Some((coding, compressed)) => {
            builder = builder.header(header::CONTENT_ENCODING, coding.as_str());
            compressed
        }
        None => Bytes::from(xml),
    };
    builder = builder.header(header::CONTENT_LENGTH, body.len());
    match err.root() {
        Error::Overloaded => builder = builder.header(header::RETRY_AFTER, "1"),
        Error::InvalidRange { len } => builder = builder.header(header::CONTENT_RANGE, format!("bytes */{len}")),
        Error::Unauthorized => builder = builder.header(header::WWW_AUTHENTICATE, "Bearer"),
        Error::UrlAuth(why) => builder = builder.header("X-Tengine-Error", *why),
        _ => {}
    }
    if let Some(ec) = err.ec() {
        builder = builder.header("x-oss-ec", ec);
    }
    let body = if head { Bytes::new() } else { body };
    builder.body(full_body(body)).unwrap_or_else(|_| Response::new(full_body(Bytes::from_static(b"internal error"))))
}
