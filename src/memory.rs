//! Hands freed memory back to the kernel while no decode is running.
//!
//! glibc keeps what a decode frees: after the first large buffer its dynamic
//! thresholds rise (mmap 32 MiB, trim 64 MiB), so a 16 MP progressive JPEG's 48 MB of
//! coefficients and the decode buffers stay in the heap, interleaved with long-lived
//! cache entries. While decodes keep coming that is what makes them fast (the next
//! one reuses warm pages; trimming after every decode cost ~20 % in page faults). Once
//! no decode has run for [`QUIET_BEFORE_RETURN`], a background thread calls
//! `malloc_trim` whenever something was freed since its last call (a decode's buffers,
//! evicted cache bodies), in the manner of jemalloc's decay. In the diverse cells, whose
//! sources sit in the decoded-source cache after warm-up, that was ~30 MB of the JPEG
//! cell's peak RSS and the ~1 MB/s the PNG cell's evictions otherwise left in holes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::{Duration, Instant};

/// How long after the last decode freed memory is returned.
pub const QUIET_BEFORE_RETURN: Duration = Duration::from_secs(1);

/// Frees worth returning (decodes, evictions) so far, and the count at the last return.
static FREES: AtomicU64 = AtomicU64::new(0);
static FREES_AT_RETURN: AtomicU64 = AtomicU64::new(0);
/// When the last decode finished, in milliseconds since [`epoch`].
static LAST_DECODE_MS: AtomicU64 = AtomicU64::new(0);

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

fn now_ms() -> u64 {
    u64::try_from(epoch().elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Records that a decode (and the working memory it freed) just finished.
pub fn note_decode() {
    LAST_DECODE_MS.store(now_ms(), Ordering::Relaxed);
    note_freed();
}

/// Records that a sizeable allocation (a cache body) was freed.
pub fn note_freed() {
    FREES.fetch_add(1, Ordering::Release);
}

/// Starts the background thread, once per process (later calls do nothing).
pub fn start_returning() {
    static START: Once = Once::new();
    START.call_once(|| {
        epoch();
        let spawned = std::thread::Builder::new().name("imgedge-memory".into()).spawn(|| loop {
            std::thread::sleep(QUIET_BEFORE_RETURN / 2);
            return_if_quiet();
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "memory return thread not started; freed decode memory stays in the heap");
        }
    });
}

/// Returns freed memory if something was freed since the last return and no decode
/// ran for a while.
fn return_if_quiet() {
    let frees = FREES.load(Ordering::Acquire);
    if frees == FREES_AT_RETURN.load(Ordering::Relaxed) {
        return;
    }
    let quiet_ms = now_ms().saturating_sub(LAST_DECODE_MS.load(Ordering::Relaxed));
    if u128::from(quiet_ms) < QUIET_BEFORE_RETURN.as_millis() {
        return;
    }
    FREES_AT_RETURN.store(frees, Ordering::Relaxed);
    release_free_pages();
}

/// Gives the free pages of every malloc arena back to the kernel (glibc; other
/// allocators decay on their own).
fn release_free_pages() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let started = Instant::now();
        // SAFETY: malloc_trim takes only the arenas' own locks; any thread may call it.
        let released = unsafe { libc::malloc_trim(0) };
        tracing::debug!(released, took_us = started.elapsed().as_micros(), "returned memory freed by decodes");
    }
}
