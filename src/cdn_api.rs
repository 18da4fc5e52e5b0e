//! The Alibaba Cloud CDN API (OpenAPI 2018-05-10, RPC style) on the admin
//! listener, so the official SDKs and CLI can purge and prefetch through imgedge:
//! `/?Action=RefreshObjectCaches`, `PushObjectCache`, `DescribeRefreshTasks`,
//! `DescribeRefreshTaskById`, `DescribeRefreshQuota`, as GET or POST (form body).
//!
//! Every call must be signed with a configured AccessKey pair ([`sign`]: RPC v1
//! HMAC-SHA1 or ACS3-HMAC-SHA256); with no pairs configured every call is refused
//! (`InvalidAccessKeyId.NotFound`), whatever the bearer token, because the SDKs
//! cannot send one. Purges reuse `purge.rs`'s parsing and apply at once, so their
//! tasks are `Complete` / `100%`; prefetches run in the background (at most
//! [`PUSH_JOBS`] calls at a time), `Pending` → `Refreshing` → `Complete`/`Failed`.
//! Replies are JSON in the API's shape; errors too ([`error_response`]).

pub mod sign;
pub mod tasks;

use crate::error::Error;
use crate::purge::{self, PurgeKind};
use crate::respond::{full_body, ResponseBody};
use crate::App;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use http::{header, Response, StatusCode};
use std::sync::Arc;
use tasks::{Filter, Kind, Status};

/// API version the calls must name (when they name one).
const API_VERSION: &str = "2018-05-10";
/// Prefetch calls run at once; later ones wait as `Pending`.
pub const PUSH_JOBS: usize = 2;
/// Largest `PageSize` of `DescribeRefreshTasks`, as the API's.
const MAX_PAGE_SIZE: usize = 100;
/// Task ids one `DescribeRefreshTaskById` may name, as the API's.
const MAX_IDS: usize = 10;

/// Fetches one URL into the cache as a GET would; the reply carries `status`
/// (200 on success). Given by `server.rs`, which owns the fetch path.
pub type Warm = fn(Arc<App>, String) -> BoxFuture<'static, serde_json::Value>;

/// The API's state: signature verifier, task registry, prefetch slots.
#[derive(Debug)]
pub struct CdnApi {
    /// Recent tasks and today's quota use.
    pub tasks: tasks::Registry,
    push_slots: Arc<tokio::sync::Semaphore>,
}

impl Default for CdnApi {
    fn default() -> CdnApi {
        CdnApi::new()
    }
}

impl CdnApi {
    /// Empty state (the AccessKey pairs are live settings: [`crate::live::Live`]).
    pub fn new() -> CdnApi {
        CdnApi { tasks: tasks::Registry::default(), push_slots: Arc::new(tokio::sync::Semaphore::new(PUSH_JOBS)) }
    }
}

/// The decoded parameters of one call: query first, then form body.
struct Params {
    query: Vec<(String, String)>,
    form: Vec<(String, String)>,
}

impl Params {
    fn get(&self, name: &str) -> Option<&str> {
        self.query.iter().chain(&self.form).find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

fn decode_pairs(text: &str) -> Vec<(String, String)> {
    crate::cache::key::query_pairs(text).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn api(status: StatusCode, code: &'static str, message: impl Into<String>) -> Error {
    Error::Api { status, code, message: message.into() }
}

/// Handles one call to `/` on the admin listener: verify, parse, act, reply.
///
/// # Errors
/// The API's codes (see [`sign::Verifier::verify`]), `InvalidAction.NotFound`,
/// `InvalidVersion`, `InvalidParameter`, the purge codes and quota codes.
pub async fn handle(
    app: &Arc<App>,
    head: &http::request::Parts,
    body: Bytes,
    warm: Warm,
) -> Result<Response<ResponseBody>, Error> {
    let content_type = head.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let content_type = content_type.to_ascii_lowercase();
    let query_text = head.uri.query().unwrap_or("");
    let form = if content_type.starts_with("application/x-www-form-urlencoded") {
        decode_pairs(
            std::str::from_utf8(&body)
                .map_err(|_| api(StatusCode::BAD_REQUEST, "InvalidParameter", "The form body is not UTF-8."))?,
        )
    } else {
        Vec::new()
    };
    let params = Params { query: decode_pairs(query_text), form };
    let now = unix_now();
    let call = sign::SignedCall {
        method: &head.method,
        path: head.uri.path(),
        query: &params.query,
        form: &params.form,
        headers: &head.headers,
        body: &body,
    };
    app.live().verifier.verify(&call, now)?;
    let header = |name: &str| head.headers.get(name).and_then(|v| v.to_str().ok());
    // Action and Version come from where the call's scheme signs them: ACS3 in the
    // x-acs-* headers, RPC v1 in the parameters (an unsigned header must not pick it).
    let acs3 = header("authorization").is_some_and(|a| a.starts_with("ACS3-"));
    let (action, version) = if acs3 {
        (header("x-acs-action"), header("x-acs-version"))
    } else {
        (params.get("Action"), params.get("Version"))
    };
    let action = action.ok_or_else(|| {
        api(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The input parameter \"Action\" that is mandatory for processing this request is not supplied.",
        )
    })?;
    if let Some(v) = version {
        if v != API_VERSION {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "InvalidVersion",
                format!("Specified parameter Version is not valid (this API is {API_VERSION})."),
            ));
        }
    }
    let request_id = app.next_request_id();
    let mut reply = match action {
        "RefreshObjectCaches" => refresh(app, &content_type, &body, query_text, now).await?,
        "PushObjectCache" => push(app, &content_type, &body, query_text, now, warm)?,
        "DescribeRefreshTasks" => describe_tasks(app, &params)?,
        "DescribeRefreshTaskById" => describe_by_id(app, &params)?,
        "DescribeRefreshQuota" => app.cdn_api.tasks.quota(now),
        _ => {
            return Err(api(
                StatusCode::NOT_FOUND,
                "InvalidAction.NotFound",
                "Specified api is not found, please check your url and method.",
            ))
        }
    };
    reply.insert("RequestId".into(), request_id.as_str().into());
    json(StatusCode::OK, &serde_json::Value::Object(reply))
}

type Reply = serde_json::Map<String, serde_json::Value>;

fn kind_of(kind: PurgeKind) -> Kind {
    match kind {
        PurgeKind::File => Kind::File,
        PurgeKind::Directory => Kind::Directory,
        PurgeKind::Regex => Kind::Regex,
        PurgeKind::IgnoreParams => Kind::IgnoreParams,
    }
}

async fn refresh(app: &Arc<App>, content_type: &str, body: &[u8], query: &str, now: u64) -> Result<Reply, Error> {
    // The same parser as `/purge`: kind and paths for the records, tasks to apply.
    let (kind, paths, _force) = purge::read_purge_input(content_type, body, Some(query))?;
    let tasks = purge::parse_purge(app, content_type, body, Some(query))?;
    let paths: Vec<String> = paths.into_iter().map(|p| p.trim().to_owned()).filter(|p| !p.is_empty()).collect();
    let kind = kind_of(kind);
    app.cdn_api.tasks.charge(kind, paths.len(), now)?;
    crate::cluster::purge_stream::publish(app, content_type, body, Some(query)).await?;
    purge::apply(app, tasks).await?;
    let task_id = app.next_task_id();
    app.cdn_api.tasks.add(task_id, kind, &paths, Status::Complete, now);
    let mut reply = Reply::new();
    reply.insert("RefreshTaskId".into(), task_id.to_string().into());
    Ok(reply)
}

fn push(app: &Arc<App>, content_type: &str, body: &[u8], query: &str, now: u64, warm: Warm) -> Result<Reply, Error> {
    let paths = purge::parse_prefetch(content_type, body, Some(query))?;
    app.cdn_api.tasks.charge(Kind::Preload, paths.len(), now)?;
    let task_id = app.next_task_id();
    app.cdn_api.tasks.add(task_id, Kind::Preload, &paths, Status::Pending, now);
    let app = Arc::clone(app);
    tokio::spawn(async move {
        let slots = Arc::clone(&app.cdn_api.push_slots);
        let Ok(_slot) = slots.acquire_owned().await else {
            return;
        };
        for (index, url) in paths.into_iter().enumerate() {
            app.cdn_api.tasks.update(task_id, index, Status::Refreshing, "");
            let outcome = tokio::time::timeout(app.config.request_timeout(), warm(Arc::clone(&app), url)).await;
            let (status, description) = match outcome {
                Err(_) => (Status::Failed, "Origin Timeout".to_owned()),
                Ok(v) => match v.get("status").and_then(serde_json::Value::as_u64).unwrap_or(500) {
                    200 => (Status::Complete, String::new()),
                    504 => (Status::Failed, "Origin Timeout".to_owned()),
                    500 => (Status::Failed, "Internal Error".to_owned()),
                    code => (Status::Failed, format!("Origin Return StatusCode {code}")),
                },
            };
            app.cdn_api.tasks.update(task_id, index, status, &description);
        }
    });
    let mut reply = Reply::new();
    reply.insert("PushTaskId".into(), task_id.to_string().into());
    Ok(reply)
}

fn number(params: &Params, name: &str, default: usize) -> Result<usize, Error> {
    match params.get(name) {
        None | Some("") => Ok(default),
        Some(v) => {
            v.parse().map_err(|_| api(StatusCode::BAD_REQUEST, "InvalidParameter", format!("{name} must be a number.")))
        }
    }
}

fn time_param(params: &Params, name: &str) -> Result<Option<u64>, Error> {
    params
        .get(name)
        .map(|v| {
            sign::parse_iso8601(v).ok_or_else(|| {
                api(StatusCode::BAD_REQUEST, "InvalidParameter", format!("{name} must be yyyy-MM-ddTHH:mm:ssZ (UTC)."))
            })
        })
        .transpose()
}

fn describe_tasks(app: &App, params: &Params) -> Result<Reply, Error> {
    let page = number(params, "PageNumber", 1)?.max(1);
    let page_size = number(params, "PageSize", 20)?;
    if !(1..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(api(StatusCode::BAD_REQUEST, "InvalidParameter", "PageSize must be 1 to 100."));
    }
    // An id that is not a number matches nothing, as an unknown id would.
    let task_id = params.get("TaskId").filter(|t| !t.is_empty()).map(|t| t.parse().unwrap_or(u64::MAX));
    let text = |name: &str| params.get(name).filter(|v| !v.is_empty()).map(str::to_owned);
    let filter = Filter {
        task_id,
        object_path: text("ObjectPath"),
        kind: text("ObjectType"),
        status: text("Status"),
        domain: text("DomainName"),
        start: time_param(params, "StartTime")?,
        end: time_param(params, "EndTime")?,
    };
    let (total, list) = app.cdn_api.tasks.describe(&filter, page, page_size);
    let mut reply = Reply::new();
    reply.insert("TotalCount".into(), total.into());
    reply.insert("PageNumber".into(), page.into());
    reply.insert("PageSize".into(), page_size.into());
    reply.insert("Tasks".into(), serde_json::json!({ "CDNTask": list }));
    Ok(reply)
}

fn describe_by_id(app: &App, params: &Params) -> Result<Reply, Error> {
    let ids = params.get("TaskId").filter(|t| !t.is_empty()).ok_or_else(|| {
        api(
            StatusCode::BAD_REQUEST,
            "MissingParameter",
            "The input parameter \"TaskId\" that is mandatory for processing this request is not supplied.",
        )
    })?;
    let ids: Vec<&str> = ids.split(',').map(str::trim).collect();
    if ids.len() > MAX_IDS {
        return Err(api(StatusCode::BAD_REQUEST, "InvalidParameter", "At most 10 task ids per call."));
    }
    let mut list = Vec::new();
    for id in ids {
        let Ok(id) = id.parse::<u64>() else { continue };
        let filter = Filter { task_id: Some(id), ..Filter::default() };
        list.extend(app.cdn_api.tasks.describe(&filter, 1, tasks::MAX_RECORDS).1);
    }
    let mut reply = Reply::new();
    reply.insert("TotalCount".into(), list.len().into());
    reply.insert("Tasks".into(), list.into());
    Ok(reply)
}

fn json(status: StatusCode, value: &serde_json::Value) -> Result<Response<ResponseBody>, Error> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "application/json;charset=utf-8")
        .body(full_body(value.to_string()))
        .map_err(|e| Error::Internal(format!("response build: {e}")))
}

/// An error of an API call as the API sends it: the status, and a JSON body with
/// `RequestId`, `HostId`, `Code`, `Message`, `Recommend` (the XML body of the rest
/// of imgedge would not parse in the SDKs).
pub fn error_response(err: &Error, request_id: &str, head: &http::request::Parts) -> Response<ResponseBody> {
    if err.is_server_side() {
        tracing::warn!(request_id, error = %err, "API call failed");
    } else {
        tracing::debug!(request_id, error = %err, "API call rejected");
    }
    let host = head.headers.get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or("");
    let code = err.code();
    let body = serde_json::json!({
        "RequestId": request_id,
        "HostId": host,
        "Code": code,
        "Message": err.public_message(),
        "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&product=Cdn"),
    });
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = err.status();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, http::HeaderValue::from_static("application/json;charset=utf-8"));
    response
}
