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
use crate::tls::{Scheme, Tls};
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
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};

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
    serve_with_tls(Some(public), admin, None, app, shutdown).await
}

/// How a public connection arrived: its scheme, and the HTTPS port redirects name.
#[derive(Clone, Copy)]
struct Via {
    scheme: Scheme,
    https_port: u16,
}

/// [`serve`] with an optional plain listener and an optional HTTPS listener (issue 19):
/// both public listeners share the connection limit, timeouts and graceful shutdown.
///
/// # Errors
/// Only if a listener's local address cannot be read.
pub async fn serve_with_tls(
    public: Option<TcpListener>,
    admin: TcpListener,
    tls: Option<(TcpListener, Tls)>,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let first_public = match (&public, &tls) {
        (Some(p), _) => Some(p.local_addr()?),
        (None, Some((t, _))) => Some(t.local_addr()?),
        (None, None) => None,
    };
    if let Some(addr) = first_public {
        app.set_default_host(addr.to_string());
    }
    let https_port = match &tls {
        Some((t, _)) => t.local_addr()?.port(),
        None => 443,
    };
    crate::memory::start_returning();
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(connection_builder(&app.config.http));
    let slots = Arc::new(Semaphore::new(app.config.http.max_connections.max(1)));
    let mut slot: Option<OwnedSemaphorePermit> = None;
    tokio::pin!(shutdown);
    loop {
        if slot.is_none() {
            slot = Arc::clone(&slots).try_acquire_owned().ok();
        }
        // The public listeners are only polled while a connection slot is free.
        let (accepted, which, scheme) = tokio::select! {
            a = accept_on(public.as_ref()), if slot.is_some() => (a, Listener::Public, Scheme::Http),
            a = accept_on(tls.as_ref().map(|(l, _)| l)), if slot.is_some() => (a, Listener::Public, Scheme::Https),
            a = admin.accept() => (a, Listener::Admin, Scheme::Http),
            p = Arc::clone(&slots).acquire_owned(), if slot.is_none() => {
                slot = p.ok();
                continue;
            }
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
        let held = match which {
            Listener::Public => slot.take(),
            Listener::Admin => None,
        };
        let via = Via { scheme, https_port };
        let (app, builder, watcher) = (Arc::clone(&app), Arc::clone(&builder), graceful.watcher());
        match (scheme, &tls) {
            (Scheme::Https, Some((_, tls))) => {
                let tls = tls.clone();
                // The handshake runs in the connection's task, under the TLS handshake
                // timeout, holding the connection's slot.
                tokio::spawn(async move {
                    if let Some(stream) = tls.handshake(stream).await {
                        serve_connection(&builder, watcher, stream, app, which, via, peer, held).await;
                    }
                });
            }
            _ => {
                tokio::spawn(async move {
                    serve_connection(&builder, watcher, stream, app, which, via, peer, held).await;
                });
            }
        }
    }
    drop(public);
    drop(tls);
    drop(admin);
    let grace = Duration::from_millis(app.config.shutdown_grace_ms);
    if tokio::time::timeout(grace, graceful.shutdown()).await.is_err() {
        tracing::warn!("shutdown grace period over; closing remaining connections");
    }
    Ok(())
}

/// Accepts on `listener`; never resolves without one (a listener that is off).
async fn accept_on(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(l) => l.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves one connection (plain TCP or TLS) until it ends, under graceful shutdown.
#[allow(clippy::too_many_arguments)]
async fn serve_connection<I>(
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
    io: I,
    app: Arc<App>,
    which: Listener,
    via: Via,
    peer: SocketAddr,
    held: Option<OwnedSemaphorePermit>,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let _held = held;
    let first_request = Arc::new(Notify::new());
    let seen = Arc::clone(&first_request);
    let header_timeout = Duration::from_millis(app.config.http.header_read_timeout_ms);
    let service = service_fn(move |req| {
        seen.notify_one();
        let app = Arc::clone(&app);
        async move { Ok::<_, Infallible>(handle(app, which, via, peer, req).await) }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service).into_owned();
    let conn = watcher.watch(conn);
    if let Err(e) = until_first_request(conn, &first_request, header_timeout).await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

/// Drives a connection, closing it if no request head arrived within `timeout`.
///
/// hyper's HTTP/1 `header_read_timeout` starts only once the auto builder has sniffed
/// the protocol, and that sniff (and the HTTP/2 preface and handshake) waits forever:
/// a socket that sends nothing, or half a preface, would stay open. This covers the
/// whole way to the first request on both protocols (nginx: `client_header_timeout`).
async fn until_first_request<C, E>(conn: C, first_request: &Notify, timeout: Duration) -> Result<(), E>
where
    C: Future<Output = Result<(), E>>,
{
    tokio::pin!(conn);
    tokio::select! {
        r = &mut conn => return r,
        () = first_request.notified() => {}
        () = tokio::time::sleep(timeout) => {
            tracing::debug!("no request head within the header timeout; closing");
            return Ok(());
        }
    }
    conn.await
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

async fn handle(
    app: Arc<App>,
    which: Listener,
    via: Via,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<ResponseBody> {
    let started = Instant::now();
    let arrived = std::time::SystemTime::now();
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
    let ((result, head), origin_time) = crate::origin_clock::measure(async {
        match which {
            Listener::Public => {
                let (head, _body) = req.into_parts();
                (public(&app, &head, via, peer, started).await, head)
            }
            Listener::Admin => {
                let head = copy_head(&req);
                let result = tokio::time::timeout(app.config.request_timeout(), admin(&app, req)).await;
                (result.unwrap_or(Err(Error::Timeout)), head)
            }
        }
    })
    .await;
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
    if matches!(which, Listener::Public) && via.scheme == Scheme::Https {
        let host = head.headers.get(header::HOST).and_then(|v| v.to_str().ok()).or(head.uri.host()).unwrap_or("");
        if let Some(v) = crate::tls::policy::hsts(app.live().access.site_config(host), via.scheme) {
            response.headers_mut().insert(header::STRICT_TRANSPORT_SECURITY, v);
        }
    }
    let header_str = |name: header::HeaderName| response.headers().get(name).and_then(|v| v.to_str().ok());
    // The cache status travels as a value (set by `respond`), not as header text.
    let cache_status = response.extensions().get::<crate::cache::CacheStatus>().copied();
    let length = header_str(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
    let bytes = if head.method == Method::HEAD { Some(0) } else { length };
    let took = started.elapsed();
    // Load balancers' and scrapers' probes would drown the figures and the log.
    let probe = matches!(which, Listener::Admin) && matches!(head.uri.path(), "/healthz" | "/metrics");
    if !probe {
        app.stats.record_request(response.status().as_u16(), cache_status, bytes.unwrap_or(0), took);
    }
    if app.live().access_log && (!probe || app.config.log.probes) {
        let record = crate::access_log::Record {
            time: arrived,
            head: &head,
            peer: peer.ip(),
            status: response.status().as_u16(),
            bytes,
            duration: took,
            cache: cache_status.map(crate::cache::CacheStatus::as_str),
            origin: origin_time,
            request_id: request_id.as_str(),
            scheme: via.scheme.as_str(),
        };
        tracing::info!(target: "imgedge::access", "{}", record.line(&app.config.log));
    }
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
    via: Via,
    peer: SocketAddr,
    started: Instant,
) -> Result<Response<ResponseBody>, Error> {
    // Validated before anything reads it (access, key): a bad Host is a 400.
    let host = crate::request::request_host(parts.version, &parts.uri, &parts.headers, || app.default_host())?;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    // One snapshot of the live settings for admission and parsing (one atomic load;
    // a reload meanwhile is not half seen), released before the first await.
    let live = app.live();
    // A cluster peer's authenticated forward was admitted (and redirected, if its site
    // forces HTTPS) by the node that received it; forwards travel in plain HTTP.
    let hop = crate::cluster::forward::is_verified_hop(app, &parts.method, &host, &parts.uri, &parts.headers);
    // The CDN's "force redirect" comes before the access rules (a signed URL is
    // checked where it is served: over HTTPS).
    let site = live.access.site_config(&host);
    if let Some((status, to)) =
        crate::tls::policy::redirect(site, via.scheme, &host, &parts.uri, via.https_port).filter(|_| !hop)
    {
        return Response::builder()
            .status(status)
            .header(header::LOCATION, to)
            .header(header::CONTENT_LENGTH, 0)
            .body(full_body(Bytes::new()))
            .map_err(|e| Error::Internal(format!("response build: {e}")));
    }
    let admitted = if hop {
        None
    } else {
        live.access.admit(RequestParts {
            host: &host,
            path: parts.uri.path(),
            query: parts.uri.query(),
            headers: &parts.headers,
            peer: peer.ip(),
            now,
        })?
    };
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
    let mut object = ObjectRequest::parse_with_host(&parts.method, uri, host, &parts.headers, &live.chains)?;
    drop(live);
    object.hop = hop;
    object.negotiate_format(app.config.auto_webp(), app.config.auto_avif());
    if via.scheme == Scheme::Https && app.config.tls.cache_key_scheme {
        object.format_class = Some(crate::tls::policy::https_variant(object.format_class));
    }
    // One deadline from the request's arrival covers the lock wait, fetch and processing.
    let served = fill::serve_object_until(app, &object, started + app.config.request_timeout()).await?;
    respond::respond(app, &object, served, started)
}

async fn admin(app: &Arc<App>, req: Request<Incoming>) -> Result<Response<ResponseBody>, Error> {
    let route = (req.method().clone(), req.uri().path().to_owned());
    match (&route.0, route.1.as_str()) {
        (&Method::GET, "/healthz") | (&Method::HEAD, "/healthz") => {
            json_response(StatusCode::OK, serde_json::json!({"status": "ok"}))
        }
        (&Method::GET, "/metrics") => {
            // Metrics name hosts, paths' shapes and load: admin data like the rest.
            purge::authorize(app, req.headers())?;
            Response::builder()
                .header(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")
                .body(full_body(app.stats.render(app)))
                .map_err(|e| Error::Internal(format!("response build: {e}")))
        }
        (&Method::GET, "/explain") => {
            purge::authorize(app, req.headers())?;
            let value = crate::explain::explain(app, req.uri().query(), req.headers()).await?;
            json_response(StatusCode::OK, value)
        }
        (&Method::POST, "/purge") => {
            purge::authorize(app, req.headers())?;
            let (content_type, query, body) = read_admin_body(req).await?;
            let tasks = purge::parse_purge(app, &content_type, &body, query.as_deref())?;
            crate::cluster::purge_stream::publish(app, &content_type, &body, query.as_deref()).await?;
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
            let count = paths.len();
            // Answered at once, as PushObjectCache: the paths are fetched in the
            // background and `GET /tasks/<id>` reports each one's result.
            let task_id = app.prefetch.start(app, paths)?.to_string();
            json_response(
                StatusCode::OK,
                serde_json::json!({"RequestId": app.next_request_id().as_str(), "PushTaskId": task_id, "task_id": task_id, "Status": "Refreshing", "paths": count}),
            )
        }
        (&Method::GET, path) if path.starts_with("/tasks/") => {
            purge::authorize(app, req.headers())?;
            let id = path["/tasks/".len()..].parse::<u64>().map_err(|_| Error::NotFound)?;
            let status = app.prefetch.describe(id).ok_or(Error::NotFound)?;
            json_response(StatusCode::OK, status)
        }
        (_, "/healthz") => Err(Error::MethodNotAllowed("GET, HEAD")),
        (_, "/purge" | "/prefetch") => Err(Error::MethodNotAllowed("POST")),
        (_, "/metrics" | "/explain") => Err(Error::MethodNotAllowed("GET")),
        // The CDN's own API (RPC style, signed): `/?Action=...`.
        (&Method::GET, "/") | (&Method::POST, "/") => {
            let head = copy_head(&req);
            let (_, _, body) = read_admin_body(req).await?;
            crate::cdn_api::handle(app, &head, body, crate::prefetch::warm).await
        }
        _ => Err(Error::NotFound),
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
    if err.is_alarming() {
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
    for (name, value) in err.headers() {
        builder = builder.header(name, value);
    }
    let body = if head { Bytes::new() } else { body };
    builder.body(full_body(body)).unwrap_or_else(|_| Response::new(full_body(Bytes::from_static(b"internal error"))))
}
