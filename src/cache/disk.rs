//! The disk tier (L2) under the memory cache: foyer's block engine on a directory.
//!
//! Why foyer's `HybridCache` and not its `Store` directly: the store's builder wants
//! the memory cache and metrics objects the hybrid builder makes, and the hybrid API is
//! the one foyer documents and keeps stable. Its own memory part is made empty in
//! effect (a 1 MiB budget and a filter that admits nothing, so every value is a
//! "phantom" there): moka stays the one memory tier, with the path index and purge
//! log the cache needs. Writes go to disk on insertion (`WriteOnInsertion`), through
//! foyer's flusher tasks, never on the request path.
//!
//! Recovery is on (`RecoverMode::Quiet`): on open, foyer rebuilds its index from the
//! blocks on disk, skipping what does not verify, so entries survive SIGTERM and
//! SIGKILL (what had been flushed). foyer checksums every entry on read; the record
//! ([`super::disk_entry`]) carries our own checksum and the full key too, and any
//! mismatch is a miss.
//!
//! Purges reach the disk through [`super::bans`] (checked on every disk hit) and,
//! for keys known in memory, a delete by hash.
//!
//! Every failure (I/O error, decode or checksum failure, key mismatch, a full disk)
//! is a miss or a skipped write, a rate-limited warning and a count in
//! [`DiskStats`], never an error to the client.

use super::bans::{Bans, Verdict};
use super::disk_entry;
use super::key::CacheKey;
use super::meta::Entry;
use super::PurgeTarget;
use bytes::Bytes;
use foyer::DeviceBuilder;
use foyer::{
    BlockEngineConfig, FsDeviceBuilder, HybridCache, HybridCacheBuilder, HybridCachePolicy, HybridCacheProperties,
    Load, Location, PsyncIoEngineConfig, RecoverMode, Spawner,
};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Threads that run foyer's reads and writes (its psync engine's `spawn_blocking`).
/// Few on purpose: a page-cache read takes microseconds, and an unbounded pool grew
/// to 138 threads under 32 connections, each read a wake-up of a cold thread.
const IO_THREADS: usize = 2;

/// foyer's own runtime: its flushers, reclaimers and reads run there, so they never
/// take the request runtime's blocking threads and are bounded by [`IO_THREADS`].
fn io_runtime() -> Result<Spawner, String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .max_blocking_threads(IO_THREADS)
        .thread_name("imgedge-disk-io")
        // Timers only: no I/O or signal driver of its own (signals belong to the
        // request runtime, which installs the SIGTERM handler).
        .enable_time()
        .build()
        .map_err(|e| format!("starting the disk tier's I/O threads: {e}"))?;
    Ok(Spawner::from(rt))
}

/// Smallest disk tier accepted (foyer needs a few blocks to rotate).
pub const MIN_SIZE: u64 = crate::config::MIN_DISK_CACHE_SIZE;
/// foyer's unit of eviction; also the largest entry the tier can hold.
const MAX_BLOCK: u64 = 64 << 20;
/// Space kept free on the file system; below it writes are skipped (full disk).
const FREE_RESERVE: u64 = 4 << 20;
/// Record bytes queued between two free-space checks at most.
const RECHECK_BYTES: u64 = 1 << 20;
/// Between two warnings of one kind.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// Kinds of disk-tier error, for `imgedge_disk_errors_total{kind}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// foyer reported an I/O error on read.
    Io,
    /// The record failed to decode or its checksum did not match.
    Corrupt,
    /// The record's full key is not the requested key (hash collision or damage).
    KeyMismatch,
    /// The file system is full: the write was skipped.
    Full,
    /// The ban file could not be written.
    Ban,
}

const KINDS: [ErrorKind; 5] =
    [ErrorKind::Io, ErrorKind::Corrupt, ErrorKind::KeyMismatch, ErrorKind::Full, ErrorKind::Ban];

impl ErrorKind {
    /// Metric label.
    pub fn label(self) -> &'static str {
        match self {
            ErrorKind::Io => "io",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::KeyMismatch => "key_mismatch",
            ErrorKind::Full => "full",
            ErrorKind::Ban => "ban_write",
        }
    }
}

/// Counters of the disk tier.
#[derive(Debug, Default)]
pub struct DiskStats {
    errors: [AtomicU64; 5],
    last_warn: [AtomicU64; 5],
    /// Lookups that reached the disk.
    pub lookups: AtomicU64,
    /// Lookups answered from disk.
    pub hits: AtomicU64,
    /// Records handed to foyer for writing.
    pub writes: AtomicU64,
}

impl DiskStats {
    /// Errors of one kind so far.
    pub fn errors(&self, kind: ErrorKind) -> u64 {
        self.errors[kind as usize].load(Ordering::Relaxed)
    }

    /// Every kind with its count.
    pub fn all_errors(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        KINDS.iter().map(|k| (k.label(), self.errors(*k)))
    }
}

/// The disk tier.
pub struct Disk {
    cache: HybridCache<u128, Bytes>,
    bans: Bans,
    dir: PathBuf,
    capacity: u64,
    started: Instant,
    /// Held (flock) while the tier is open: one process per directory.
    _lock: std::fs::File,
    full: AtomicBool,
    checked_free_at: AtomicU64,
    /// Record bytes handed to foyer since the last free-space check.
    queued_since_check: AtomicU64,
    /// Record bytes handed to foyer in all (with foyer's written bytes: what is pending).
    queued_bytes: AtomicU64,
    /// Counters.
    pub stats: DiskStats,
    /// How long opening (foyer's recovery included) took.
    pub open_time: Duration,
}

impl std::fmt::Debug for Disk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Disk").field("dir", &self.dir).field("capacity", &self.capacity).finish()
    }
}

/// A record found on disk.
#[derive(Debug)]
pub struct Found {
    /// The entry (stale when a soft purge covers it or its TTL ran out).
    pub entry: Entry,
    /// A soft purge covers it: revalidate before use.
    pub soft_purged: bool,
}

fn block_size(capacity: u64) -> u64 {
    // At least 16 blocks so eviction frees a small share at a time.
    (capacity / 16).clamp(1 << 20, MAX_BLOCK) & !4095
}

impl Disk {
    /// Opens (creating) the tier in `dir` with `capacity` bytes; recovers what is there.
    ///
    /// # Errors
    /// A message naming what failed (the directory, the ban file, foyer's open).
    pub async fn open(dir: &Path, capacity: u64) -> Result<Disk, String> {
        let started = Instant::now();
        if capacity < MIN_SIZE {
            return Err(format!("disk cache size {capacity} is below the minimum {MIN_SIZE} bytes (16MiB)"));
        }
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        // Cache bodies are private to the node: owner only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let lock = lock_dir(dir)?;
        let bans = Bans::open(dir).map_err(|e| format!("ban file in {}: {e}", dir.display()))?;
        let blocks = dir.join("blocks");
        let cap = usize::try_from(capacity).map_err(|_| "disk cache size too large".to_owned())?;
        let device = FsDeviceBuilder::new(&blocks)
            .with_capacity(cap)
            .build()
            .map_err(|e| format!("opening {}: {e}", blocks.display()))?;
        let block = usize::try_from(block_size(capacity)).unwrap_or(1 << 20);
        let engine = BlockEngineConfig::new(device)
            .with_block_size(block)
            .with_flushers(2)
            .with_reclaimers(1)
            .with_clean_block_threshold(2)
            .with_recover_concurrency(8)
            .with_tombstone_log(true);
        let cache = HybridCacheBuilder::new()
            .with_name("imgedge-disk")
            .with_policy(HybridCachePolicy::WriteOnInsertion)
            .with_flush_on_close(true)
            .memory(1 << 20)
            .with_weighter(|_k: &u128, v: &Bytes| v.len())
            // Admit nothing to foyer's own memory part: moka is the memory tier.
            .with_filter(|_k: &u128, _v: &Bytes| false)
            .storage()
            .with_spawner(io_runtime()?)
            .with_io_engine_config(PsyncIoEngineConfig::new())
            .with_engine_config(engine)
            .with_recover_mode(RecoverMode::Quiet)
            .build()
            .await
            .map_err(|e| format!("opening the disk cache in {}: {e}", dir.display()))?;
        let open_time = started.elapsed();
        Ok(Disk {
            cache,
            bans,
            dir: dir.to_owned(),
            capacity,
            started,
            _lock: lock,
            full: AtomicBool::new(false),
            checked_free_at: AtomicU64::new(0),
            queued_since_check: AtomicU64::new(0),
            queued_bytes: AtomicU64::new(0),
            stats: DiskStats::default(),
            open_time,
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Configured bytes.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Bytes foyer has written and read so far.
    pub fn io_bytes(&self) -> (u64, u64) {
        let s = self.cache.statistics();
        (s.disk_write_bytes() as u64, s.disk_read_bytes() as u64)
    }

    /// The ban sequence a record written now carries.
    pub fn seq(&self) -> u64 {
        self.bans.current()
    }

    /// Bans held.
    pub fn bans_held(&self) -> usize {
        self.bans.len()
    }

    /// Counts an error and warns at most once per [`WARN_EVERY`] per kind.
    pub fn error(&self, kind: ErrorKind, detail: &dyn std::fmt::Display) {
        let i = kind as usize;
        self.stats.errors[i].fetch_add(1, Ordering::Relaxed);
        let now = self.started.elapsed().as_secs() + 1;
        let last = self.stats.last_warn[i].load(Ordering::Relaxed);
        if (last == 0 || now >= last + WARN_EVERY.as_secs())
            && self.stats.last_warn[i].compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(kind = kind.label(), dir = %self.dir.display(), "disk cache: {detail}; served from memory and origin");
        }
    }

    /// Looks `key` up on disk. A hard-banned or unusable record is removed and a miss.
    pub async fn get(&self, key: &CacheKey) -> Option<Found> {
        self.stats.lookups.fetch_add(1, Ordering::Relaxed);
        let id = u128::from_le_bytes(key.hash);
        // Straight from foyer's store: its memory part holds nothing (see the module
        // note), and `HybridCache::get` would spawn a fetch task and insert a phantom
        // there on every disk hit, one more task hand-off per request.
        let bytes = match self.cache.storage().load(&id).await {
            Ok(Load::Entry { value, .. }) => value,
            Ok(Load::Piece { piece, .. }) => piece.value().clone(),
            Ok(_) => return None,
            Err(e) => {
                self.error(ErrorKind::Io, &format_args!("read failed: {e}"));
                return None;
            }
        };
        let record = match disk_entry::decode(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.error(ErrorKind::Corrupt, &format_args!("record unreadable ({e:?})"));
                self.cache.remove(&id);
                return None;
            }
        };
        if record.entry.key != *key {
            // Same 128-bit hash, another URL (or damage): never another URL's bytes.
            self.error(ErrorKind::KeyMismatch, &"record holds another key");
            return None;
        }
        match self.bans.verdict(key, record.seq) {
            Verdict::Gone => {
                self.cache.remove(&id);
                None
            }
            v => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                Some(Found { entry: record.entry, soft_purged: v == Verdict::Stale })
            }
        }
    }

    /// Queues `entry` for writing, stamped with ban sequence `seq` (read when the
    /// fill's insert was checked against the purge log). Skipped on a full disk.
    pub fn put(&self, entry: &Entry, seq: u64) {
        if self.disk_full() {
            self.error(ErrorKind::Full, &"file system full, write skipped");
            return;
        }
        let record = disk_entry::encode(entry, seq);
        if record.len() as u64 > block_size(self.capacity) {
            return;
        }
        self.queued_since_check.fetch_add(record.len() as u64, Ordering::Relaxed);
        self.queued_bytes.fetch_add(record.len() as u64, Ordering::Relaxed);
        self.stats.writes.fetch_add(1, Ordering::Relaxed);
        let props = HybridCacheProperties::default().with_location(Location::OnDisk);
        self.cache.insert_with_properties(u128::from_le_bytes(entry.key.hash), record, props);
    }

    /// Deletes one key.
    pub fn remove(&self, key: &CacheKey) {
        self.cache.remove(&u128::from_le_bytes(key.hash));
    }

    /// Records a purge as a ban (see [`super::bans`]); `durable`: fsynced before return.
    /// `then` runs before the ban's sequence is published ([`Bans::ban`]).
    pub fn ban<T>(&self, target: &PurgeTarget, hard: bool, durable: bool, then: impl FnOnce() -> T) -> T {
        let (ok, out) = self.bans.ban(target, hard, durable, then);
        if !ok {
            self.error(ErrorKind::Ban, &"ban file cannot be written");
        }
        out
    }

    /// Flushes and closes (graceful shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.cache.close().await {
            tracing::warn!(error = %e, "disk cache close");
        }
    }

    /// Prometheus text for the disk tier (appended to `/metrics`). Hits by tier are
    /// also in `imgedge_requests_total{cache="hit"|"disk_hit"}`.
    pub fn render_metrics(&self) -> String {
        use std::fmt::Write as _;
        let (written, read) = self.io_bytes();
        let s = &self.stats;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            let _ = write!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n");
            let suffix = if kind == "counter" { "_total" } else { "" };
            let _ = writeln!(out, "{name}{suffix} {value}");
        };
        metric(
            "imgedge_disk_lookups",
            "counter",
            "Memory misses looked up in the disk tier.",
            s.lookups.load(Ordering::Relaxed),
        );
        metric(
            "imgedge_disk_hits",
            "counter",
            "Lookups the disk tier answered (promoted to memory).",
            s.hits.load(Ordering::Relaxed),
        );
        metric(
            "imgedge_disk_writes",
            "counter",
            "Entries queued for writing to the disk tier.",
            s.writes.load(Ordering::Relaxed),
        );
        metric("imgedge_disk_written_bytes", "counter", "Bytes written to the disk tier's files.", written);
        metric("imgedge_disk_read_bytes", "counter", "Bytes read from the disk tier's files.", read);
        metric("imgedge_disk_capacity_bytes", "gauge", "Configured size of the disk tier.", self.capacity);
        metric("imgedge_disk_bans", "gauge", "Purge bans held for the disk tier.", self.bans.len() as u64);
        let _ = write!(
            out,
            "# HELP imgedge_disk_errors Disk tier errors (each a miss or a skipped write).\n# TYPE imgedge_disk_errors counter\n"
        );
        for (kind, n) in s.all_errors() {
            let _ = writeln!(out, "imgedge_disk_errors_total{{kind=\"{kind}\"}} {n}");
        }
        out
    }

    /// True when the file system has less than [`FREE_RESERVE`] plus a block plus the
    /// bytes queued but not yet written free. Checked once a second, and sooner after
    /// every [`RECHECK_BYTES`] queued: a burst of writes cannot fill the disk between
    /// two checks, so foyer's flushers never meet ENOSPC themselves.
    fn disk_full(&self) -> bool {
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let last = self.checked_free_at.load(Ordering::Relaxed);
        let due = now.saturating_sub(last) >= 1000 || self.queued_since_check.load(Ordering::Relaxed) >= RECHECK_BYTES;
        if due && self.checked_free_at.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            self.queued_since_check.store(0, Ordering::Relaxed);
            let pending = self.queued_bytes.load(Ordering::Relaxed).saturating_sub(self.io_bytes().0);
            let free = free_bytes(&self.dir).unwrap_or(u64::MAX);
            self.full.store(free < FREE_RESERVE + block_size(self.capacity) + pending, Ordering::Relaxed);
        }
        self.full.load(Ordering::Relaxed)
    }
}

/// Takes an exclusive `flock` on `dir/lock` (released by the kernel when the process
/// ends, however it ends): two processes writing one block store would corrupt it.
fn lock_dir(dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::io::AsRawFd;
    let path = dir.join("lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| format!("opening {}: {e}", path.display()))?;
    // SAFETY: a valid open file descriptor; flock has no memory effects.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        return Err(if e.kind() == std::io::ErrorKind::WouldBlock {
            format!("{} is in use by another imgedge process (lock {})", dir.display(), path.display())
        } else {
            format!("locking {}: {e}", path.display())
        });
    }
    Ok(file)
}

/// Free bytes for unprivileged writers on the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a valid out pointer.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return None;
    }
    Some((s.f_bavail as u64).saturating_mul(s.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn entry(path: &str) -> Entry {
        Entry::new(
            CacheKey::new("h", path, None, None, None, &[]),
            StatusCode::OK,
            Bytes::from(format!("body of {path}")),
            "text/plain".into(),
            None,
            None,
            None,
            Duration::from_secs(60),
        )
    }

    async fn wait_for(disk: &Disk, key: &CacheKey) -> Option<Found> {
        for _ in 0..200 {
            if let Some(f) = disk.get(key).await {
                return Some(f);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        None
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn put_get_ban_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 32 << 20).await.unwrap();
        let a = entry("/d/a.txt");
        let b = entry("/e/b.txt");
        disk.put(&a, disk.seq());
        disk.put(&b, disk.seq());
        let got = wait_for(&disk, &a.key).await.unwrap();
        assert_eq!(got.entry.body, a.body);
        assert!(!got.soft_purged);
        wait_for(&disk, &b.key).await.unwrap();
        disk.ban(&PurgeTarget::Directory { host: None, prefix: "/d/".into() }, true, true, || ());
        disk.ban(&PurgeTarget::Directory { host: None, prefix: "/e/".into() }, false, true, || ());
        assert!(disk.get(&a.key).await.is_none());
        assert!(disk.get(&b.key).await.unwrap().soft_purged);
        let c = entry("/f/c.txt");
        disk.put(&c, disk.seq());
        wait_for(&disk, &c.key).await.unwrap();
        disk.close().await;
        drop(disk);
        let disk = Disk::open(dir.path(), 32 << 20).await.unwrap();
        assert!(disk.get(&a.key).await.is_none(), "a hard purge stays applied after reopen");
        assert!(disk.get(&b.key).await.unwrap().soft_purged);
        assert_eq!(disk.get(&c.key).await.unwrap().entry.body, c.body);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_open_of_one_directory_is_refused_until_the_first_closes() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 32 << 20).await.unwrap();
        let err = Disk::open(dir.path(), 32 << 20).await.unwrap_err();
        assert!(err.contains("in use by another imgedge process"), "{err}");
        disk.close().await;
        drop(disk);
        Disk::open(dir.path(), 32 << 20).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_colliding_key_is_a_miss() {
        let dir = tempfile::tempdir().unwrap();
        let disk = Disk::open(dir.path(), 32 << 20).await.unwrap();
        let a = entry("/a.txt");
        disk.put(&a, disk.seq());
        wait_for(&disk, &a.key).await.unwrap();
        let mut other = CacheKey::new("h", "/other.txt", None, None, None, &[]);
        other.hash = a.key.hash;
        assert!(disk.get(&other).await.is_none());
        assert_eq!(disk.stats.errors(ErrorKind::KeyMismatch), 1);
    }
}
