//! The bounded registry of recent refresh and push tasks behind
//! `DescribeRefreshTasks` / `DescribeRefreshTaskById`, and the daily quota behind
//! `DescribeRefreshQuota`.
//!
//! One record per object path, as the API lists them (several records share a
//! task id). At most [`MAX_RECORDS`] are kept (the oldest go first), so memory stays
//! below about `MAX_RECORDS` x 1.1 KB whatever callers submit.

use crate::error::Error;
use http::StatusCode;
use std::collections::VecDeque;
use std::sync::Mutex;

/// Path records kept for Describe* (about 1.1 KB each at the 1024-byte path limit).
pub const MAX_RECORDS: usize = 10_000;

/// Daily quotas, the CDN's defaults per account: URLs, directories, regexes,
/// IgnoreParams paths, prefetch URLs.
pub const URL_QUOTA: u64 = 10_000;
/// Directories per day.
pub const DIR_QUOTA: u64 = 100;
/// Regexes per day.
pub const REGEX_QUOTA: u64 = 20;
/// IgnoreParams paths per day.
pub const IGNORE_PARAMS_QUOTA: u64 = 100;
/// Prefetch URLs per day.
pub const PRELOAD_QUOTA: u64 = 1_000;

/// What a task record is, with the API's `ObjectType` spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// URL refresh.
    File,
    /// Directory refresh.
    Directory,
    /// Regex refresh.
    Regex,
    /// Refresh of a path whatever its parameters.
    IgnoreParams,
    /// Prefetch (PushObjectCache).
    Preload,
}

impl Kind {
    /// The `ObjectType` value in Describe replies.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Directory => "directory",
            Kind::Regex => "regex",
            Kind::IgnoreParams => "ignoreParams",
            Kind::Preload => "preload",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [Kind::File, Kind::Directory, Kind::Regex, Kind::IgnoreParams, Kind::Preload]
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }
}

/// A record's state, with the API's spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Queued.
    Pending,
    /// Running.
    Refreshing,
    /// Done.
    Complete,
    /// Failed; see the description.
    Failed,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "Pending",
            Status::Refreshing => "Refreshing",
            Status::Complete => "Complete",
            Status::Failed => "Failed",
        }
    }
}

#[derive(Debug, Clone)]
struct Record {
    task_id: u64,
    index: usize,
    path: String,
    kind: Kind,
    status: Status,
    created: u64,
    description: String,
}

impl Record {
    fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "TaskId": self.task_id.to_string(),
            "ObjectPath": self.path,
            "ObjectType": self.kind.as_str(),
            "Status": self.status.as_str(),
            "Process": if self.status == Status::Complete { "100%" } else { "0%" },
            "CreationTime": super::sign::format_iso8601(self.created),
            "Description": self.description,
        })
    }
}

/// Describe filters, already parsed.
#[derive(Debug, Default)]
pub struct Filter {
    /// Exact task id.
    pub task_id: Option<u64>,
    /// Exact object path.
    pub object_path: Option<String>,
    /// Record kind (`file`, `directory`, `regex`, `preload`, ...).
    pub kind: Option<String>,
    /// Record status.
    pub status: Option<String>,
    /// Host the paths must name.
    pub domain: Option<String>,
    /// Created at or after (Unix seconds).
    pub start: Option<u64>,
    /// Created at or before (Unix seconds).
    pub end: Option<u64>,
}

#[derive(Debug, Default)]
struct Inner {
    records: VecDeque<Record>,
    /// UTC day number the usage counters belong to.
    day: u64,
    used: [u64; 5],
}

/// Recent tasks and today's quota use.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<Inner>,
}

fn slot(kind: Kind) -> (usize, u64) {
    match kind {
        Kind::File => (0, URL_QUOTA),
        Kind::Directory => (1, DIR_QUOTA),
        Kind::Regex => (2, REGEX_QUOTA),
        Kind::IgnoreParams => (3, IGNORE_PARAMS_QUOTA),
        Kind::Preload => (4, PRELOAD_QUOTA),
    }
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Charges `n` paths of `kind` against today's quota.
    ///
    /// # Errors
    /// `QuotaExceeded.Refresh` / `QuotaExceeded.Preload` (400) when they do not fit.
    pub fn charge(&self, kind: Kind, n: usize, now: u64) -> Result<(), Error> {
        let mut inner = self.lock();
        roll_day(&mut inner, now);
        let (i, quota) = slot(kind);
        let n = n as u64;
        if inner.used[i] + n > quota {
            let code = if kind == Kind::Preload { "QuotaExceeded.Preload" } else { "QuotaExceeded.Refresh" };
            return Err(Error::Api {
                status: StatusCode::BAD_REQUEST,
                code,
                message: format!("The daily quota of {quota} {} paths is used up.", kind.as_str()),
            });
        }
        inner.used[i] += n;
        Ok(())
    }

    /// Records a new task's paths, all in `status`.
    pub fn add(&self, task_id: u64, kind: Kind, paths: &[String], status: Status, now: u64) {
        let mut inner = self.lock();
        for (index, path) in paths.iter().enumerate() {
            if inner.records.len() >= MAX_RECORDS {
                inner.records.pop_front();
            }
            inner.records.push_back(Record {
                task_id,
                index,
                path: path.clone(),
                kind,
                status,
                created: now,
                description: String::new(),
            });
        }
    }

    /// Updates one path of a task (a no-op once the record has been evicted).
    pub fn update(&self, task_id: u64, index: usize, status: Status, description: &str) {
        let mut inner = self.lock();
        if let Some(r) = inner.records.iter_mut().rev().find(|r| r.task_id == task_id && r.index == index) {
            r.status = status;
            description.clone_into(&mut r.description);
        }
    }

    /// Records matching `filter`, newest first: (total, the page's records as JSON).
    pub fn describe(&self, filter: &Filter, page: usize, page_size: usize) -> (usize, Vec<serde_json::Value>) {
        let inner = self.lock();
        let kind = filter.kind.as_deref().map(Kind::parse);
        let matches = |r: &&Record| {
            filter.task_id.is_none_or(|t| r.task_id == t)
                && filter.object_path.as_deref().is_none_or(|p| r.path == p)
                && kind.is_none_or(|k| Some(r.kind) == k)
                && filter.status.as_deref().is_none_or(|s| r.status.as_str().eq_ignore_ascii_case(s))
                && filter.domain.as_deref().is_none_or(|d| path_host(&r.path).eq_ignore_ascii_case(d))
                && filter.start.is_none_or(|s| r.created >= s)
                && filter.end.is_none_or(|e| r.created <= e)
        };
        let total = inner.records.iter().rev().filter(matches).count();
        let skip = page.saturating_sub(1).saturating_mul(page_size);
        let list = inner.records.iter().rev().filter(matches).skip(skip).take(page_size).map(Record::to_json).collect();
        (total, list)
    }

    /// `DescribeRefreshQuota` fields (strings, as the API sends them).
    pub fn quota(&self, now: u64) -> serde_json::Map<String, serde_json::Value> {
        let mut inner = self.lock();
        roll_day(&mut inner, now);
        let mut out = serde_json::Map::new();
        for (name, kind) in [
            ("Url", Kind::File),
            ("Dir", Kind::Directory),
            ("Regex", Kind::Regex),
            ("IgnoreParams", Kind::IgnoreParams),
            ("Preload", Kind::Preload),
        ] {
            let (i, quota) = slot(kind);
            out.insert(format!("{name}Quota"), quota.to_string().into());
            out.insert(format!("{name}Remain"), quota.saturating_sub(inner.used[i]).to_string().into());
        }
        // Blocking URLs and edge-only prefetch do not exist here: no quota.
        for name in ["BlockQuota", "BlockRemain", "PreloadEdgeQuota", "PreloadEdgeRemain"] {
            out.insert(name.into(), "0".into());
        }
        out
    }
}

fn roll_day(inner: &mut Inner, now: u64) {
    let day = now / 86_400;
    if inner.day != day {
        inner.day = day;
        inner.used = [0; 5];
    }
}

/// The host of a full URL (`http://host/...`), else "".
fn path_host(path: &str) -> &str {
    let rest = path.strip_prefix("http://").or_else(|| path.strip_prefix("https://")).unwrap_or("");
    rest.split(['/', '?']).next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_bounded_filtered_and_paged() {
        let r = Registry::default();
        let paths: Vec<String> = (0..MAX_RECORDS + 5).map(|i| format!("http://h/{i}.jpg")).collect();
        r.add(1, Kind::File, &paths, Status::Complete, 100);
        r.add(2, Kind::Preload, &["http://other/a.jpg".into()], Status::Pending, 200);
        let (total, _) = r.describe(&Filter::default(), 1, 20);
        assert_eq!(total, MAX_RECORDS);
        let (total, page) = r.describe(&Filter { task_id: Some(2), ..Filter::default() }, 1, 20);
        assert_eq!((total, page[0]["Status"].as_str()), (1, Some("Pending")));
        r.update(2, 0, Status::Failed, "Origin Timeout");
        let (_, page) = r.describe(&Filter { domain: Some("other".into()), ..Filter::default() }, 1, 20);
        assert_eq!(page[0]["Description"], "Origin Timeout");
        assert_eq!(page[0]["ObjectType"], "preload");
        let (total, page) = r.describe(&Filter { kind: Some("file".into()), ..Filter::default() }, 2, 3);
        assert_eq!((total, page.len()), (MAX_RECORDS - 1, 3));
        assert_eq!(page[0]["Process"], "100%");
        assert_eq!(page[0]["CreationTime"], "1970-01-01T00:01:40Z");
    }

    #[test]
    fn quota_is_charged_per_day() {
        let r = Registry::default();
        r.charge(Kind::Regex, 20, 10).unwrap();
        assert_eq!(r.charge(Kind::Regex, 1, 10).unwrap_err().code(), "QuotaExceeded.Refresh");
        assert_eq!(r.quota(10)["RegexRemain"], "0");
        assert_eq!(r.quota(86_400 + 10)["RegexRemain"], "20");
        r.charge(Kind::Regex, 1, 86_400 + 10).unwrap();
    }
}
