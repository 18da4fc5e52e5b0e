//! Prefetch as a task, as the CDN's PushObjectCache and DescribeRefreshTasks: `POST
//! /prefetch` answers at once with a task id, the paths are fetched in the background
//! (a few at a time, each under its own request deadline, as a GET would), and `GET
//! /tasks/<id>` reports the task's progress and every path's result. A large prefetch
//! on a slow origin therefore never ends in a bare 504 for the whole call.
//!
//! Budgets: at most [`MAX_RUNNING`] tasks run at once (more is 503 with Retry-After),
//! each fetches [`PATHS_AT_ONCE`] paths at a time, and the registry remembers the last
//! [`MAX_TASKS`] tasks holding at most [`MAX_REGISTRY_BYTES`] of paths and results (the
//! oldest is forgotten first; a forgotten running task still finishes). A task holds at
//! most 1000 paths (`purge::parse_prefetch`) from a body of at most 1 MiB.

use crate::cache::CacheStatus;
use crate::error::Error;
use crate::fill;
use crate::App;
use futures_util::StreamExt;

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

/// Tasks remembered for status queries.
pub const MAX_TASKS: usize = 256;
/// Bytes of paths and results the registry remembers at most (estimated).
pub const MAX_REGISTRY_BYTES: usize = 16 << 20;
/// Per-path cost besides the path text: its state and the JSON it renders to.
const PATH_OVERHEAD: usize = 96;
/// Tasks fetching at once; more prefetch calls are refused with 503.
pub const MAX_RUNNING: usize = 16;
/// Paths of one task fetched at once.
pub const PATHS_AT_ONCE: usize = 4;

/// Where one path of a task stands.
#[derive(Debug, Clone)]
enum PathState {
    Pending,
    Done { cache: &'static str },
    Failed { status: u16, code: String },
}

#[derive(Debug)]
struct Task {
    id: u64,
    created: SystemTime,
    paths: Vec<(String, PathState)>,
}

type Shared = Arc<Mutex<Task>>;

/// The registry of recent prefetch tasks.
#[derive(Debug, Default)]
pub struct Tasks {
    recent: Mutex<VecDeque<(usize, Shared)>>,
    bytes: AtomicUsize,
    running: Arc<AtomicUsize>,
}

/// Releases a running slot when the task ends, however it ends.
struct RunningSlot(Arc<AtomicUsize>);

impl Drop for RunningSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Tasks {
    /// Tasks remembered and the estimated bytes they hold.
    pub fn size(&self) -> (usize, usize) {
        (lock(&self.recent).len(), self.bytes.load(Ordering::Acquire))
    }

    /// Registers a task for `paths` and starts fetching them in the background.
    /// Returns the task id.
    ///
    /// # Errors
    /// `Overloaded` when [`MAX_RUNNING`] tasks are already running.
    pub fn start(&self, app: &Arc<App>, paths: Vec<String>) -> Result<u64, Error> {
        if self.running.fetch_add(1, Ordering::AcqRel) >= MAX_RUNNING {
            self.running.fetch_sub(1, Ordering::AcqRel);
            return Err(Error::Overloaded);
        }
        let slot = RunningSlot(Arc::clone(&self.running));
        let id = app.next_task_id();
        let task = Arc::new(Mutex::new(Task {
            id,
            created: SystemTime::now(),
            paths: paths.iter().map(|p| (p.clone(), PathState::Pending)).collect(),
        }));
        self.remember(Arc::clone(&task), MAX_TASKS, MAX_REGISTRY_BYTES);
        let app = Arc::clone(app);
        tokio::spawn(async move {
            let _slot = slot;
            let mut results = futures_util::stream::iter(paths.into_iter().enumerate())
                .map(|(i, path)| {
                    let app = Arc::clone(&app);
                    async move { (i, prefetch_one(&app, &path).await) }
                })
                .buffer_unordered(PATHS_AT_ONCE);
            while let Some((i, state)) = results.next().await {
                if let Some(entry) = lock(&task).paths.get_mut(i) {
                    entry.1 = state;
                }
            }
        });
        Ok(id)
    }

    /// Keeps `task` for status queries, forgetting the oldest tasks beyond the bounds.
    fn remember(&self, task: Shared, max_tasks: usize, max_bytes: usize) {
        let size: usize = lock(&task).paths.iter().map(|(p, _)| p.len() + PATH_OVERHEAD).sum();
        let mut recent = lock(&self.recent);
        let mut total = self.bytes.load(Ordering::Acquire) + size;
        while !recent.is_empty() && (recent.len() >= max_tasks || total > max_bytes) {
            if let Some((old, _)) = recent.pop_front() {
                total -= old;
            }
        }
        recent.push_back((size, task));
        self.bytes.store(total, Ordering::Release);
    }

    /// The status of a task, DescribeRefreshTasks-style, or None if unknown (never
    /// started or already forgotten).
    pub fn describe(&self, id: u64) -> Option<Value> {
        let task = lock(&self.recent).iter().map(|(_, t)| t).find(|t| lock(t).id == id).cloned()?;
        let task = lock(&task);
        let total = task.paths.len();
        let pending = task.paths.iter().filter(|(_, s)| matches!(s, PathState::Pending)).count();
        let failed = task.paths.iter().filter(|(_, s)| matches!(s, PathState::Failed { .. })).count();
        let paths: Vec<Value> = task
            .paths
            .iter()
            .map(|(path, state)| match state {
                PathState::Pending => json!({"path": path, "state": "pending"}),
                PathState::Done { cache } => json!({"path": path, "state": "done", "status": 200, "cache": cache}),
                PathState::Failed { status, code } => {
                    json!({"path": path, "state": "failed", "status": status, "code": code})
                }
            })
            .collect();
        let done = total - pending;
        let created = httpdate::fmt_http_date(task.created);
        Some(json!({
            "TaskId": task.id.to_string(),
            "ObjectType": "preload",
            "Status": if pending == 0 { "Complete" } else { "Refreshing" },
            "Process": format!("{}%", (done * 100).checked_div(total).unwrap_or(100)),
            "CreationTime": created,
            "total": total,
            "done": done,
            "failed": failed,
            "paths": paths,
        }))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// One URL fetched into the cache as a GET would, as JSON (`path`, `status`, `cache` or
/// `code`): the fetch behind the CDN API's PushObjectCache tasks ([`crate::cdn_api::Warm`]).
pub fn warm(app: Arc<App>, url: String) -> futures_util::future::BoxFuture<'static, Value> {
    Box::pin(async move {
        match prefetch_one(&app, &url).await {
            PathState::Done { cache } => json!({"path": url, "status": 200, "cache": cache}),
            PathState::Failed { status, code } => json!({"path": url, "status": status, "code": code}),
            PathState::Pending => json!({"path": url}),
        }
    })
}

/// Fetches one URL into the cache, as a GET would.
async fn prefetch_one(app: &Arc<App>, url: &str) -> PathState {
    let outcome: Result<&'static str, Error> = async {
        let object = crate::purge::url_request(app, url, None)?;
        match fill::serve_object(app, &object).await? {
            fill::Served::Entry(_, status) => Ok(status.as_str()),
            fill::Served::Stream { .. } => Ok(CacheStatus::Bypass.as_str()),
        }
    }
    .await;
    match outcome {
        Ok(cache) => PathState::Done { cache },
        Err(e) => PathState::Failed { status: e.status().as_u16(), code: e.code().to_string() },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, paths: usize, len: usize) -> Shared {
        let paths = (0..paths).map(|_| ("x".repeat(len), PathState::Pending)).collect();
        Arc::new(Mutex::new(Task { id, created: SystemTime::now(), paths }))
    }

    #[test]
    fn the_registry_forgets_the_oldest_beyond_its_bounds() {
        let tasks = Tasks::default();
        for id in 0..10 {
            tasks.remember(task(id, 10, 100), 4, 1 << 20);
        }
        assert_eq!(tasks.size().0, 4);
        assert!(tasks.describe(5).is_none() && tasks.describe(6).is_some());
        let tasks = Tasks::default();
        for id in 0..10 {
            tasks.remember(task(id, 10, 1000), 100, 30_000);
        }
        let (count, bytes) = tasks.size();
        assert!(bytes <= 30_000 && count == 2, "{count} tasks, {bytes} bytes");
        let status = tasks.describe(9).unwrap();
        assert_eq!(status["Status"], "Refreshing");
        assert_eq!(status["Process"], "0%");
        assert_eq!(status["paths"][0]["state"], "pending");
    }
}
