//! Single-flight fills: one writer per key, everyone else waits for its result.
//!
//! The first request for a key gets a [`WritePermit`] (handed to a fill task that runs
//! detached from any one client) and a [`WaiterGuard`]; later ones get a [`ReadLock`]
//! that waits for the writer's [`LockStatus`] for as long as the waiter's own deadline
//! allows: there is no shorter lock timeout after which waiters would go to the origin
//! themselves (nginx's `proxy_cache_lock_timeout` cliff). Every request waiting on a
//! fill holds a guard; when the last guard drops (every client went away) the fill's
//! [`Waiters::cancelled`] fires and its cancel flag is set, so the work stops. Dropping
//! a permit without releasing it (panic) wakes the readers with `Dangling`, so no key
//! can wedge. The table is sharded by key hash.

use super::meta::Entry;
use crate::error::Error;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;

const SHARDS: usize = 16;

/// How a fill ended, as seen by the requests that waited for it.
#[derive(Debug, Clone)]
pub enum LockStatus {
    /// Still running.
    Pending,
    /// Finished: the response to share (stored in the cache or not).
    Done(Arc<Entry>),
    /// The fill failed; waiters answer with the same error.
    Failed(Arc<Error>),
    /// The result cannot be shared (streamed object): waiters fetch on their own.
    GiveUp,
    /// The writer vanished without releasing.
    Dangling,
}

/// The requests waiting on one fill, and the flag that stops it once none is left.
#[derive(Debug, Default)]
pub struct Waiters {
    count: AtomicUsize,
    cancel: AtomicBool,
    notify: Notify,
}

impl Waiters {
    /// Joins unless the count already fell to zero (the fill is being cancelled):
    /// the count never rises again from zero, so a cancelled fill gets no new waiter.
    fn join(self: &Arc<Self>) -> Option<WaiterGuard> {
        let joined = self.count.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n > 0).then_some(n + 1));
        joined.ok().map(|_| WaiterGuard(Arc::clone(self)))
    }

    /// Set once every waiter left; the processing engine polls it.
    pub fn flag(&self) -> &AtomicBool {
        &self.cancel
    }

    /// True once every waiter left.
    pub fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire)
    }

    /// Resolves once every waiter left.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// One request's share in a fill. Dropping the last one cancels the fill.
#[derive(Debug)]
pub struct WaiterGuard(Arc<Waiters>);

impl Drop for WaiterGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.cancel.store(true, Ordering::Release);
            self.0.notify.notify_waiters();
        }
    }
}

struct Slot {
    rx: watch::Receiver<LockStatus>,
    waiters: Arc<Waiters>,
}

type Shard = Mutex<HashMap<[u8; 16], Slot>>;

/// The per-key lock table.
pub struct FillLocks {
    shards: Vec<Shard>,
}

impl std::fmt::Debug for FillLocks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FillLocks").field("in_flight", &self.in_flight()).finish()
    }
}

/// Result of asking for the lock.
pub enum Locked {
    /// This request fills the key: hand the permit to the fill, keep the guard while
    /// waiting for it.
    Write(WritePermit, WaiterGuard),
    /// Another request is filling it: wait on this.
    Read(ReadLock),
}

impl FillLocks {
    /// An empty table. `_legacy_timeout` (`cache.lock_timeout_ms`) is no longer used:
    /// waiters wait until their own request deadline (see the module docs).
    pub fn new(_legacy_timeout: Duration) -> Arc<FillLocks> {
        Arc::new(FillLocks { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect() })
    }

    fn shard(&self, key: &[u8; 16]) -> &Shard {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// Takes the writer permit for `key`, or a reader if a live fill holds it.
    pub fn lock(self: &Arc<Self>, key: [u8; 16]) -> Locked {
        let mut map = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = map.get(&key) {
            if matches!(*slot.rx.borrow(), LockStatus::Pending) {
                if let Some(guard) = slot.waiters.join() {
                    return Locked::Read(ReadLock { rx: slot.rx.clone(), _guard: guard });
                }
            }
        }
        let (tx, rx) = watch::channel(LockStatus::Pending);
        let waiters = Arc::new(Waiters { count: AtomicUsize::new(1), ..Waiters::default() });
        map.insert(key, Slot { rx, waiters: Arc::clone(&waiters) });
        let guard = WaiterGuard(Arc::clone(&waiters));
        Locked::Write(WritePermit { key, tx, table: Arc::clone(self), waiters, released: false }, guard)
    }

    /// Number of fills in progress (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    /// Removes the slot of this fill only: a cancelled fill may already have been
    /// replaced by a new one for the same key.
    fn remove(&self, key: &[u8; 16], waiters: &Arc<Waiters>) {
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        if map.get(key).is_some_and(|slot| Arc::ptr_eq(&slot.waiters, waiters)) {
            map.remove(key);
        }
    }
}

/// The right to fill one key. Release it with a status; dropping it wakes readers.
pub struct WritePermit {
    key: [u8; 16],
    tx: watch::Sender<LockStatus>,
    table: Arc<FillLocks>,
    waiters: Arc<Waiters>,
    released: bool,
}

impl WritePermit {
    /// Ends the fill and tells the waiters how.
    pub fn release(mut self, status: LockStatus) {
        self.finish(status);
    }

    /// Who waits for this fill; its cancel flag stops the work once nobody does.
    pub fn waiters(&self) -> Arc<Waiters> {
        Arc::clone(&self.waiters)
    }

    fn finish(&mut self, status: LockStatus) {
        if self.released {
            return;
        }
        self.released = true;
        // Remove first so a request arriving after the wake-up starts a new fill
        // (or finds the cached entry) instead of reading a finished lock.
        self.table.remove(&self.key, &self.waiters);
        self.tx.send_replace(status);
    }
}

impl Drop for WritePermit {
    fn drop(&mut self) {
        self.finish(LockStatus::Dangling);
    }
}

/// A waiter on someone else's fill.
pub struct ReadLock {
    rx: watch::Receiver<LockStatus>,
    _guard: WaiterGuard,
}

impl ReadLock {
    /// Waits for the writer to finish, at most until `deadline` (`None` then).
    pub async fn wait_until(mut self, deadline: Instant) -> Option<LockStatus> {
        let waited = tokio::time::timeout_at(deadline, self.rx.wait_for(|s| !matches!(s, LockStatus::Pending))).await;
        match waited {
            Ok(Ok(status)) => Some(status.clone()),
            // Sender gone without a final status: treat as dangling.
            Ok(Err(_)) => Some(LockStatus::Dangling),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[tokio::test]
    async fn second_locker_reads_and_sees_release() {
        let t = FillLocks::new(Duration::ZERO);
        let Locked::Write(w, _g) = t.lock([1; 16]) else { panic!("first must write") };
        let Locked::Read(r) = t.lock([1; 16]) else { panic!("second must read") };
        let waiter = tokio::spawn(r.wait_until(far()));
        w.release(LockStatus::GiveUp);
        assert!(matches!(waiter.await.unwrap(), Some(LockStatus::GiveUp)));
        assert_eq!(t.in_flight(), 0);
        assert!(matches!(t.lock([1; 16]), Locked::Write(..)));
    }

    #[tokio::test]
    async fn dropped_permit_wakes_readers_as_dangling() {
        let t = FillLocks::new(Duration::ZERO);
        let Locked::Write(w, _g) = t.lock([2; 16]) else { panic!("first must write") };
        let Locked::Read(r) = t.lock([2; 16]) else { panic!("must read") };
        drop(w);
        assert!(matches!(r.wait_until(far()).await, Some(LockStatus::Dangling)));
    }

    #[tokio::test]
    async fn readers_wait_until_their_own_deadline() {
        let t = FillLocks::new(Duration::ZERO);
        let _w = t.lock([3; 16]);
        let Locked::Read(r) = t.lock([3; 16]) else { panic!("must read") };
        assert!(r.wait_until(Instant::now() + Duration::from_millis(20)).await.is_none());
    }

    #[tokio::test]
    async fn fill_is_cancelled_when_the_last_waiter_leaves() {
        let t = FillLocks::new(Duration::ZERO);
        let Locked::Write(w, first) = t.lock([4; 16]) else { panic!("first must write") };
        let waiters = w.waiters();
        let Locked::Read(second) = t.lock([4; 16]) else { panic!("must read") };
        drop(first);
        assert!(!waiters.is_cancelled(), "one waiter is left");
        drop(second);
        assert!(waiters.is_cancelled());
        tokio::time::timeout(Duration::from_secs(5), waiters.cancelled()).await.unwrap();
        // A new request does not join the cancelled fill: it starts its own, and the old
        // permit's release leaves the new slot alone.
        let Locked::Write(w2, _g2) = t.lock([4; 16]) else { panic!("a cancelled fill takes no reader") };
        w.release(LockStatus::Dangling);
        assert_eq!(t.in_flight(), 1);
        assert!(matches!(t.lock([4; 16]), Locked::Read(_)));
        w2.release(LockStatus::GiveUp);
        assert_eq!(t.in_flight(), 0);
    }
}
