//! The response cache facade: lookup, single-flight fill, insert and purge.
//!
//! Invariant: a fill that started before a purge matching its key never inserts
//! its (possibly stale) result. Every purge bumps an epoch and is logged with its
//! target; a fill remembers the epoch it started at and `insert` checks the purges
//! logged since then (the bounded log and its conservative fallback: [`purge_log`]).

pub mod bans;
pub mod disk;
pub mod disk_entry;
pub mod key;
pub mod lock;
pub mod meta;
pub mod purge_log;
pub mod store;
pub mod ttl;

pub use key::CacheKey;
pub use lock::{FillLocks, LockStatus, Locked};
pub use meta::Entry;

use purge_log::PurgeLog;
use regex::Regex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use store::Store;

/// How a response was served; the text goes into `X-Cache` and logs. [`crate::respond`]
/// also attaches it to the response as an extension, which is what stats and the
/// access log read (never the header text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Fresh copy from memory.
    Hit,
    /// Fresh copy from the disk tier (promoted to memory).
    DiskHit,
    /// Answered by another request's fill (coalesced).
    LockHit,
    /// Stale copy the origin confirmed unchanged (304).
    RefreshHit,
    /// Stale copy served because the origin failed (`stale-if-error`).
    StaleHit,
    /// Stale copy the origin replaced.
    RefreshMiss,
    /// Fetched from the origin.
    Miss,
    /// Fetched and not cacheable (no-store, too large, streamed).
    Bypass,
}

impl CacheStatus {
    /// `X-Cache` value: HIT/MISS plus a Squid-style detail token.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "HIT TCP_MEM_HIT",
            CacheStatus::DiskHit => "HIT TCP_HIT",
            CacheStatus::LockHit => "HIT TCP_COALESCED_HIT",
            CacheStatus::RefreshHit => "HIT TCP_REFRESH_HIT",
            CacheStatus::StaleHit => "HIT TCP_STALE_HIT",
            CacheStatus::RefreshMiss => "MISS TCP_REFRESH_MISS",
            CacheStatus::Miss => "MISS TCP_MISS",
            CacheStatus::Bypass => "MISS TCP_MISS_NOCACHE",
        }
    }

    /// Short label for metrics (`imgedge_requests_total{cache=...}`).
    pub fn label(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::DiskHit => "disk_hit",
            CacheStatus::LockHit => "coalesced_hit",
            CacheStatus::RefreshHit => "refresh_hit",
            CacheStatus::StaleHit => "stale_hit",
            CacheStatus::RefreshMiss => "refresh_miss",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }

    /// True when the body came from the cache (memory or disk).
    pub fn is_hit(self) -> bool {
        matches!(
            self,
            CacheStatus::Hit
                | CacheStatus::DiskHit
                | CacheStatus::LockHit
                | CacheStatus::RefreshHit
                | CacheStatus::StaleHit
        )
    }
}

/// What a purge applies to.
#[derive(Debug, Clone)]
pub enum PurgeTarget {
    /// One exact URL (path and canonical query); host None = any host.
    Url {
        /// Host to match, or any.
        host: Option<String>,
        /// The key built for the URL (its host part is ignored when `host` is None).
        key: CacheKey,
    },
    /// Every variant of one path (`IgnoreParams`); host None = any host.
    Path {
        /// Host to match, or any.
        host: Option<String>,
        /// Exact path, escaped as in [`CacheKey::path`] ([`crate::url::escape_path`]).
        path: String,
    },
    /// Every URL under a path prefix (`Directory`).
    Directory {
        /// Host to match, or any.
        host: Option<String>,
        /// Path prefix, escaped as in [`CacheKey::path`] ([`crate::url::escape_path`]).
        prefix: String,
    },
    /// Every URL whose canonical form (`host/path?query`) matches.
    Regex(Regex),
}

impl PurgeTarget {
    /// True if this target covers `key`.
    pub fn matches(&self, key: &CacheKey) -> bool {
        let host_ok = |h: &Option<String>| h.as_deref().is_none_or(|h| h == key.host());
        match self {
            PurgeTarget::Url { host, key: k } => host_ok(host) && k.url_without_variant() == key.url_without_variant(),
            PurgeTarget::Path { host, path } => host_ok(host) && key.path() == *path,
            PurgeTarget::Directory { host, prefix } => host_ok(host) && key.path().starts_with(prefix.as_str()),
            PurgeTarget::Regex(re) => re.is_match(&key.url),
        }
    }
}

/// The cache.
#[derive(Debug)]
pub struct Cache {
    store: Store,
    locks: Arc<FillLocks>,
    epoch: AtomicU64,
    purge_log: Mutex<PurgeLog>,
    /// The disk tier (L2), when configured ([`disk`]).
    disk: OnceLock<Arc<disk::Disk>>,
}

impl Cache {
    /// A cache of `capacity` bytes whose waiters wait at most `lock_timeout`.
    pub fn new(capacity: u64, lock_timeout: Duration) -> Cache {
        Cache {
            store: Store::new(capacity),
            locks: FillLocks::new(lock_timeout),
            epoch: AtomicU64::new(0),
            purge_log: Mutex::new(PurgeLog::new(purge_log::DEFAULT_MAX_RECORDS, purge_log::DEFAULT_MAX_BYTES)),
            disk: OnceLock::new(),
        }
    }

    /// Puts the disk tier under the memory cache (once, at start-up).
    pub fn attach_disk(&self, disk: Arc<disk::Disk>) {
        let _ = self.disk.set(disk);
    }

    /// The disk tier, when configured.
    pub fn disk(&self) -> Option<&Arc<disk::Disk>> {
        self.disk.get()
    }

    /// Looks a key up in the disk tier (after a memory miss) and promotes what it
    /// finds to memory: stale when its TTL ran out or a soft purge covers it, so the
    /// caller revalidates it as a stale memory entry. `None` without a disk tier, on a
    /// disk miss or error, or when a purge covering the key ran during the read.
    pub async fn get_from_disk(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        let disk = self.disk.get()?;
        let started = self.epoch();
        let found = disk.get(key).await?;
        if found.soft_purged {
            found.entry.mark_stale();
        }
        let entry = Arc::new(found.entry);
        let log = self.purge_log.lock().unwrap_or_else(|p| p.into_inner());
        if log.vetoes(key, started) {
            return None;
        }
        self.store.insert(Arc::clone(&entry));
        Some(entry)
    }

    /// The entry for a key, fresh or stale. The store is indexed by the 128-bit
    /// hash, but an entry is served only when its whole key is this key: xxh3 is not
    /// collision-resistant, and a crafted collision must not serve another URL's bytes.
    pub fn get(&self, key: &CacheKey) -> Option<Arc<Entry>> {
        self.store.get(&key.hash).filter(|e| e.key == *key)
    }

    /// Takes the fill lock for a key.
    pub fn lock(&self, key: &CacheKey) -> Locked {
        self.locks.lock(key.hash)
    }

    /// The purge epoch; a fill records it when it starts.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Stores a complete result unless a purge covering it ran since `started_epoch`.
    /// Returns whether it was stored.
    ///
    /// With a disk tier the entry is also queued for writing there, stamped with the
    /// ban sequence read under the log lock: a purge not yet logged then has a newer
    /// sequence and bans the record on read ([`bans`]), so a late disk write never
    /// undoes a purge either.
    pub fn insert(&self, entry: Arc<Entry>, started_epoch: u64) -> bool {
        let seq = {
            let log = self.purge_log.lock().unwrap_or_else(|p| p.into_inner());
            if log.vetoes(&entry.key, started_epoch) {
                return false;
            }
            // Inserted under the log lock so a purge cannot slip in between check and insert.
            self.store.insert(Arc::clone(&entry));
            self.disk.get().map(|d| d.seq())
        };
        if let (Some(disk), Some(seq)) = (self.disk.get(), seq) {
            disk.put(&entry, seq);
        }
        true
    }

    /// Removes every variant of one path (a changed original drops its renditions);
    /// `path` as [`CacheKey::path`] gives it.
    pub fn remove_variants(&self, host: &str, path: &str) -> usize {
        let target = PurgeTarget::Path { host: Some(host.to_owned()), path: path.to_owned() };
        self.purge_at(target, true, false).0
    }

    /// Applies a purge: removes the matching entries (`force`) or marks them stale so
    /// the next request revalidates. Returns the number of entries affected.
    ///
    /// With a disk tier the purge is first written to the durable ban list (fsynced:
    /// call from a blocking context), so it holds for disk entries, after a restart too.
    pub fn purge(&self, target: PurgeTarget, force: bool) -> usize {
        self.purge_at(target, force, true).0
    }

    /// A fill that found its original changed drops the outdated renditions of its path.
    /// Returns the epoch its own insert is to be checked from: its own purge is not held
    /// against it, but any other purge covering `key` since `started_epoch` still is
    /// (`None`: such a purge ran, so the fill must not be stored).
    pub fn remove_variants_for_fill(&self, key: &CacheKey, started_epoch: u64) -> Option<u64> {
        let target = PurgeTarget::Path { host: Some(key.host().to_owned()), path: key.path().to_owned() };
        // Not fsynced (this runs on the reactor): an outdated rendition a crash brings
        // back is revalidated against the changed original's ETag anyway.
        let (_, own) = self.purge_at(target, true, false);
        let log = self.purge_log.lock().unwrap_or_else(|p| p.into_inner());
        (!log.vetoes_between(key, started_epoch, own)).then_some(own)
    }

    /// Everything stored before now is stale: a cluster node that cannot know which
    /// purges it missed (the purge stream was trimmed past its cursor, or lost) drops
    /// it all. Logged as a purge of every key, so fills in flight do not store either.
    /// Returns the entries removed. (The disk tier, once merged, must drop or ban its
    /// entries here too.)
    pub fn invalidate_all(&self) -> usize {
        self.purge(PurgeTarget::Directory { host: None, prefix: "/".into() }, true)
    }

    /// [`Cache::purge`], also returning the epoch the purge was logged at.
    ///
    /// Order: the disk ban (when a disk tier is attached), then the purge log, then
    /// the memory entries. A fill inserting before the log record is removed here; one
    /// inserting after it is vetoed.
    fn purge_at(&self, target: PurgeTarget, force: bool, durable: bool) -> (usize, u64) {
        // Soft purges are logged too: a fill already in flight may carry old bytes.
        let epoch = match self.disk.get() {
            Some(disk) => disk.ban(&target, force, durable, || self.log_purge(target.clone())),
            None => self.log_purge(target.clone()),
        };
        let keys: Vec<CacheKey> = match &target {
            PurgeTarget::Url { key, .. } => self.store.keys_at_path(key.path()),
            PurgeTarget::Path { path, .. } => self.store.keys_at_path(path),
            PurgeTarget::Directory { prefix, .. } => self.store.keys_under(prefix),
            PurgeTarget::Regex(_) => self.store.all_keys(),
        };
        let mut affected = 0;
        for key in keys.iter().filter(|k| target.matches(k)) {
            if force {
                affected += usize::from(self.store.remove(&key.hash));
                if let Some(disk) = self.disk.get() {
                    disk.remove(key);
                }
            } else if let Some(entry) = self.store.get(&key.hash) {
                entry.mark_stale();
                affected += 1;
            }
        }
        (affected, epoch)
    }

    fn log_purge(&self, target: PurgeTarget) -> u64 {
        let mut log = self.purge_log.lock().unwrap_or_else(|p| p.into_inner());
        let epoch = self.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        log.push(epoch, Instant::now(), target);
        epoch
    }

    /// Records and estimated bytes held by the purge log (bounded, see [`purge_log`]).
    pub fn purge_log_size(&self) -> (usize, usize) {
        let log = self.purge_log.lock().unwrap_or_else(|p| p.into_inner());
        (log.len(), log.bytes())
    }

    /// A cache whose purge log keeps at most `max_records` records / `max_bytes` bytes.
    pub fn with_purge_log_bounds(mut self, max_records: usize, max_bytes: usize) -> Cache {
        self.purge_log = Mutex::new(PurgeLog::new(max_records, max_bytes));
        self
    }

    /// Number of entries (after pending maintenance).
    pub fn entry_count(&self) -> u64 {
        self.store.entry_count()
    }

    /// Bytes held (after pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.store.weighted_size()
    }

    /// Evictions for size so far.
    pub fn evictions(&self) -> u64 {
        self.store.evictions()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;

    fn entry(path: &str, query: Option<&str>) -> Arc<Entry> {
        Arc::new(Entry::new(
            CacheKey::new("h", path, query, None, None, &[]),
            StatusCode::OK,
            Bytes::from_static(b"x"),
            "text/plain".into(),
            None,
            None,
            None,
            Duration::from_secs(60),
        ))
    }

    #[test]
    fn fill_racing_a_purge_does_not_reinsert() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        let e = entry("/a.jpg", None);
        let started = c.epoch();
        c.purge(PurgeTarget::Path { host: None, path: "/a.jpg".into() }, true);
        assert!(!c.insert(Arc::clone(&e), started));
        assert!(c.get(&e.key).is_none());
        // A fill that starts after the purge stores normally.
        assert!(c.insert(Arc::clone(&e), c.epoch()));
        assert!(c.get(&e.key).is_some());
    }

    #[test]
    fn a_refill_own_variant_purge_does_not_veto_it_but_a_concurrent_purge_does() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        let e = entry("/a.jpg", None);
        let started = c.epoch();
        let own = c.remove_variants_for_fill(&e.key, started).unwrap();
        assert!(c.insert(Arc::clone(&e), own));
        // A purge landing between the fill's start and its own purge vetoes it.
        let started = c.epoch();
        c.purge(PurgeTarget::Url { host: None, key: e.key.clone() }, true);
        assert_eq!(c.remove_variants_for_fill(&e.key, started), None);
    }

    #[test]
    fn purge_log_stays_bounded_and_fills_store_afterwards() {
        let c = Cache::new(1 << 20, Duration::from_secs(1)).with_purge_log_bounds(100, 1 << 20);
        let before = c.epoch();
        for i in 0..1000 {
            c.purge(PurgeTarget::Path { host: None, path: format!("/p{i}") }, true);
        }
        assert_eq!(c.purge_log_size().0, 100);
        // Started before the dropped records: not checkable, so not stored.
        assert!(!c.insert(entry("/a.jpg", None), before));
        assert!(c.insert(entry("/a.jpg", None), c.epoch()));
    }

    #[test]
    fn unrelated_purge_does_not_block_insert() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        let started = c.epoch();
        c.purge(PurgeTarget::Directory { host: None, prefix: "/other/".into() }, true);
        assert!(c.insert(entry("/a.jpg", None), started));
    }

    #[test]
    fn soft_purge_marks_stale() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        let e = entry("/d/a.jpg", Some("v=1"));
        c.insert(Arc::clone(&e), c.epoch());
        let n = c.purge(PurgeTarget::Directory { host: None, prefix: "/d/".into() }, false);
        assert_eq!(n, 1);
        let got = c.get(&e.key).unwrap();
        assert!(!got.is_fresh(std::time::SystemTime::now()));
    }

    #[test]
    fn small_objects_are_weighed_with_what_holding_them_costs() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        for i in 0..2000 {
            c.insert(entry("/tiny.txt", Some(&format!("v={i}"))), 0);
        }
        c.weighted_size(); // runs pending evictions
                           // One-byte bodies: the measured ~1.8 KB per entry is what bounds the count.
        let held = c.entry_count();
        assert!(held <= (1 << 20) / meta::ENTRY_OVERHEAD as u64, "{held} entries in 1 MiB");
        assert!(held > 400, "{held}");
    }

    /// Issue 15 A3: a lookup serves an entry only when its whole key matches, not
    /// only its 128-bit hash (a crafted xxh3 collision must not serve another URL).
    #[test]
    fn lookup_compares_the_full_key_not_only_the_hash() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        let stored = entry("/a.jpg", None);
        c.insert(Arc::clone(&stored), 0);
        let mut colliding = CacheKey::new("h", "/other.jpg", None, None, None, &[]);
        colliding.hash = stored.key.hash;
        assert!(c.get(&colliding).is_none());
        assert!(c.get(&stored.key).is_some());
    }

    /// Purges address escaped paths: a key with a literal `?` is found by the
    /// directory and ignore-params purges that name it.
    #[test]
    fn purges_find_keys_with_escaped_delimiters() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        c.insert(entry("/d/a?q=1", None), 0);
        c.insert(entry("/d/a", Some("q=1")), 0);
        let path = crate::url::escape_path("/d/a?q=1");
        assert_eq!(c.purge(PurgeTarget::Path { host: None, path }, true), 1);
        assert!(c.get(&entry("/d/a", Some("q=1")).key).is_some());
        assert_eq!(c.purge(PurgeTarget::Directory { host: None, prefix: "/d/".into() }, true), 1);
    }

    async fn on_disk(c: &Cache, key: &CacheKey) -> bool {
        for _ in 0..200 {
            if c.disk().unwrap().get(key).await.is_some() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    }

    /// Issue 17 items 1 and 4: the disk tier under the memory cache follows the same
    /// rules: a fill racing a purge writes nothing to disk, a memory miss finds the disk
    /// copy and promotes it, hard purges (directory) remove it and soft ones make it stale.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_disk_tier_follows_fills_and_purges() {
        let dir = tempfile::tempdir().unwrap();
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        c.attach_disk(Arc::new(disk::Disk::open(dir.path(), 32 << 20).await.unwrap()));

        let raced = entry("/a.jpg", None);
        let started = c.epoch();
        c.purge(PurgeTarget::Path { host: None, path: "/a.jpg".into() }, true);
        assert!(!c.insert(Arc::clone(&raced), started));

        let b = entry("/d/b.jpg", None);
        let s = entry("/s/x.jpg", None);
        assert!(c.insert(Arc::clone(&b), c.epoch()));
        assert!(c.insert(Arc::clone(&s), c.epoch()));
        assert!(on_disk(&c, &b.key).await && on_disk(&c, &s.key).await);
        assert!(c.disk().unwrap().get(&raced.key).await.is_none(), "a vetoed fill is not written to disk");

        c.store.remove(&b.key.hash);
        let promoted = c.get_from_disk(&b.key).await.unwrap();
        assert!(promoted.is_fresh(std::time::SystemTime::now()));
        assert!(c.get(&b.key).is_some(), "promoted to memory");

        c.purge(PurgeTarget::Directory { host: None, prefix: "/d/".into() }, true);
        assert!(c.get(&b.key).is_none() && c.get_from_disk(&b.key).await.is_none());

        c.store.remove(&s.key.hash);
        c.purge(PurgeTarget::Directory { host: None, prefix: "/s/".into() }, false);
        let soft = c.get_from_disk(&s.key).await.unwrap();
        assert!(!soft.is_fresh(std::time::SystemTime::now()), "a soft purge makes the disk copy stale");
    }

    #[test]
    fn invalidate_all_drops_everything_and_vetoes_fills_in_flight() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        c.insert(entry("/a.jpg", None), 0);
        c.insert(entry("/d/b.jpg", Some("v=1")), 0);
        let started = c.epoch();
        assert_eq!(c.invalidate_all(), 2);
        assert_eq!(c.entry_count(), 0);
        assert!(!c.insert(entry("/x.jpg", None), started));
    }

    #[test]
    fn regex_matches_canonical_url() {
        let c = Cache::new(1 << 20, Duration::from_secs(1));
        c.insert(entry("/1a.jpg", None), 0);
        c.insert(entry("/b.jpg", None), 0);
        let re = Regex::new("^h/[0-9][a-z].*\\.jpg").unwrap();
        assert_eq!(c.purge(PurgeTarget::Regex(re), true), 1);
    }
}
