//! The purge log: what recent purges covered, so a fill that was already running
//! when a purge landed never stores its (possibly outdated) result.
//!
//! Every purge record carries the epoch the purge was given (epochs only grow). A
//! fill remembers the epoch it started at; at insert only the records newer than
//! that are looked at, walking back from the newest, so an insert costs the purges
//! that ran during its own fill, not the whole log.
//!
//! The log is a bounded ring (by record count and by an estimate of the bytes held,
//! see [`PurgeLog::new`]); records also expire after [`KEEP`]. When a record is
//! dropped its epoch becomes the log's `horizon`: a fill that started before the
//! horizon can no longer be checked against everything that ran since, so it is not
//! stored (served, but as a bypass). This is conservative in the safe direction:
//! a burst of purges may cost some fills their insert, never a stale entry.

use super::key::CacheKey;
use super::PurgeTarget;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long records are kept at most; longer than any fill (fills are bounded by the
/// request deadline).
pub const KEEP: Duration = Duration::from_secs(600);
/// Default bound on records kept: a few dozen purge calls of 1000 URLs.
pub const DEFAULT_MAX_RECORDS: usize = 32_768;
/// Default bound on the bytes the records hold (estimated, see [`record_bytes`]).
pub const DEFAULT_MAX_BYTES: usize = 16 << 20;

/// Fixed cost of one record besides its strings: the slot in the ring, the target
/// enum, the instant and a key's hash and offsets.
const RECORD_OVERHEAD: usize = 128;

/// The bytes one record holds, estimated from its strings.
pub fn record_bytes(target: &PurgeTarget) -> usize {
    RECORD_OVERHEAD
        + match target {
            PurgeTarget::Url { host, key } => host.as_ref().map_or(0, String::len) + key.url.len(),
            PurgeTarget::Path { host, path } => host.as_ref().map_or(0, String::len) + path.len(),
            PurgeTarget::Directory { host, prefix } => host.as_ref().map_or(0, String::len) + prefix.len(),
            // A compiled regex is bounded by purge.rs's size limit; its pattern text is
            // the part we can see, the compiled program is charged a flat 4 KiB.
            PurgeTarget::Regex(re) => re.as_str().len() + 4096,
        }
}

struct Record {
    epoch: u64,
    at: Instant,
    bytes: usize,
    target: PurgeTarget,
}

/// The bounded log.
pub struct PurgeLog {
    records: VecDeque<Record>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    /// Epoch of the newest record dropped (0: none yet).
    horizon: u64,
}

impl std::fmt::Debug for PurgeLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PurgeLog")
            .field("records", &self.records.len())
            .field("bytes", &self.bytes)
            .field("horizon", &self.horizon)
            .finish()
    }
}

impl PurgeLog {
    /// A log keeping at most `max_records` records and about `max_bytes` bytes
    /// (at least one record is always kept).
    pub fn new(max_records: usize, max_bytes: usize) -> PurgeLog {
        PurgeLog { records: VecDeque::new(), bytes: 0, max_records: max_records.max(1), max_bytes, horizon: 0 }
    }

    /// Records a purge given `epoch` (greater than every earlier one) at `now`.
    pub fn push(&mut self, epoch: u64, now: Instant, target: PurgeTarget) {
        let bytes = record_bytes(&target);
        self.records.push_back(Record { epoch, at: now, bytes, target });
        self.bytes += bytes;
        while self.records.len() > 1
            && (self.records.len() > self.max_records
                || self.bytes > self.max_bytes
                || self.records.front().is_some_and(|r| now.duration_since(r.at) > KEEP))
        {
            self.pop_oldest();
        }
    }

    fn pop_oldest(&mut self) {
        if let Some(r) = self.records.pop_front() {
            self.bytes -= r.bytes;
            self.horizon = self.horizon.max(r.epoch);
        }
    }

    /// True when a fill that started at `started_epoch` must not store `key`: a purge
    /// covering it ran since, or records it would need were already dropped. Only
    /// records newer than `started_epoch` are looked at.
    pub fn vetoes(&self, key: &CacheKey, started_epoch: u64) -> bool {
        self.vetoes_between(key, started_epoch, u64::MAX)
    }

    /// Like [`PurgeLog::vetoes`], for purges with an epoch in `(after, before)` only.
    pub fn vetoes_between(&self, key: &CacheKey, after: u64, before: u64) -> bool {
        if after < self.horizon {
            return true;
        }
        self.records.iter().rev().take_while(|r| r.epoch > after).any(|r| r.epoch < before && r.target.matches(key))
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> CacheKey {
        CacheKey::new("h", path, None, None, None, &[])
    }

    fn path(p: &str) -> PurgeTarget {
        PurgeTarget::Path { host: None, path: p.into() }
    }

    #[test]
    fn only_purges_after_the_start_veto() {
        let mut log = PurgeLog::new(100, 1 << 20);
        let now = Instant::now();
        log.push(1, now, path("/a"));
        log.push(2, now, path("/b"));
        assert!(log.vetoes(&key("/a"), 0));
        assert!(!log.vetoes(&key("/a"), 1), "a fill started after the purge stores");
        assert!(log.vetoes(&key("/b"), 1));
        assert!(!log.vetoes(&key("/c"), 0), "unrelated purges do not veto");
        assert!(!log.vetoes_between(&key("/b"), 0, 2), "its own purge (epoch 2) excluded");
    }

    #[test]
    fn the_ring_is_bounded_by_count_and_bytes() {
        let mut log = PurgeLog::new(10, 1 << 20);
        let now = Instant::now();
        for e in 1..=1000 {
            log.push(e, now, path(&format!("/p{e}")));
        }
        assert_eq!(log.len(), 10);
        assert!(log.bytes() <= 10 * (RECORD_OVERHEAD + 16));

        let mut log = PurgeLog::new(1_000_000, 4096);
        for e in 1..=1000 {
            log.push(e, now, path(&format!("/{}", "x".repeat(200))));
        }
        assert!(log.bytes() <= 4096, "{}", log.bytes());
        assert!(!log.is_empty());
    }

    #[test]
    fn a_fill_older_than_the_dropped_records_is_not_stored() {
        let mut log = PurgeLog::new(3, 1 << 20);
        let now = Instant::now();
        for e in 1..=5 {
            log.push(e, now, path("/other"));
        }
        // Records 1 and 2 were dropped: a fill started at 0 or 1 cannot be checked.
        assert!(log.vetoes(&key("/a"), 0));
        assert!(log.vetoes(&key("/a"), 1));
        // From the horizon on, the kept records decide.
        assert!(!log.vetoes(&key("/a"), 2));
        assert!(!log.vetoes(&key("/a"), 5));
    }

    #[test]
    fn records_expire_after_keep() {
        let mut log = PurgeLog::new(100, 1 << 20);
        let long_ago = Instant::now();
        log.push(1, long_ago, path("/a"));
        log.push(2, long_ago + KEEP + Duration::from_secs(1), path("/b"));
        assert_eq!(log.len(), 1);
        assert!(log.vetoes(&key("/zzz"), 0), "a fill older than an expired record is vetoed");
    }
}
