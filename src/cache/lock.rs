//! Single-flight fills: one writer per key, everyone else waits for its result.
//!
//! The first request for a key gets a [`WritePermit`]; later ones get a reader that
//! waits (with a timeout) for the writer's [`LockStatus`]. Every wait ends in a named
//! status. Dropping a permit without releasing it (panic, cancelled request) wakes the
//! readers with `Dangling`, so no key can wedge. The table is sharded by key hash.

use super::meta::Entry;
use crate::error::Error;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

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

type Shard = Mutex<HashMap<[u8; 16], watch::Receiver<LockStatus>>>;

/// The per-key lock table.
#[derive(Debug)]
pub struct FillLocks {
    shards: Vec<Shard>,
    timeout: Duration,
}

/// Result of asking for the lock.
pub enum Locked {
    /// This request fills the key.
    Write(WritePermit),
    /// Another request is filling it: wait on this.
    Read(ReadLock),
}

impl FillLocks {
    /// A table whose readers wait at most `timeout`.
    pub fn new(timeout: Duration) -> Arc<FillLocks> {
        Arc::new(FillLocks { shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(), timeout })
    }

    fn shard(&self, key: &[u8; 16]) -> &Shard {
        &self.shards[usize::from(key[0]) % SHARDS]
    }

    /// Takes the writer permit for `key`, or a reader if someone holds it.
    pub fn lock(self: &Arc<Self>, key: [u8; 16]) -> Locked {
        let mut map = self.shard(&key).lock().unwrap_or_else(|p| p.into_inner());
        if let Some(rx) = map.get(&key) {
            if matches!(*rx.borrow(), LockStatus::Pending) {
                return Locked::Read(ReadLock { rx: rx.clone(), timeout: self.timeout });
            }
        }
        let (tx, rx) = watch::channel(LockStatus::Pending);
        map.insert(key, rx);
        Locked::Write(WritePermit { key, tx, table: Arc::clone(self), released: false })
    }

    /// Number of fills in progress (for tests and metrics).
    pub fn in_flight(&self) -> usize {
        self.shards.iter().map(|s| s.lock().map(|m| m.len()).unwrap_or(0)).sum()
    }

    fn remove(&self, key: &[u8; 16]) {
        let mut map = self.shard(key).lock().unwrap_or_else(|p| p.into_inner());
        map.remove(key);
    }
}

/// The right to fill one key. Release it with a status; dropping it wakes readers.
pub struct WritePermit {
    key: [u8; 16],
    tx: watch::Sender<LockStatus>,
    table: Arc<FillLocks>,
    released: bool,
}

impl WritePermit {
    /// Ends the fill and tells the waiters how.
    pub fn release(mut self, status: LockStatus) {
        self.finish(status);
    }

    fn finish(&mut self, status: LockStatus) {
        if self.released {
            return;
        }
        self.released = true;
        // Remove first so a request arriving after the wake-up starts a new fill
        // (or finds the cached entry) instead of reading a finished lock.
        self.table.remove(&self.key);
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
    timeout: Duration,
}

/// What a reader got: the writer's status, or `None` after the timeout.
impl ReadLock {
    /// Waits for the writer to finish, at most the table's timeout.
    pub async fn wait(mut self) -> Option<LockStatus> {
        let waited = tokio::time::timeout(self.timeout, self.rx.wait_for(|s| !matches!(s, LockStatus::Pending))).await;
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

    #[tokio::test]
    async fn second_locker_reads_and_sees_release() {
        let t = FillLocks::new(Duration::from_secs(5));
        let Locked::Write(w) = t.lock([1; 16]) else { panic!("first must write") };
        let Locked::Read(r) = t.lock([1; 16]) else { panic!("second must read") };
        let waiter = tokio::spawn(r.wait());
        w.release(LockStatus::GiveUp);
        assert!(matches!(waiter.await.unwrap(), Some(LockStatus::GiveUp)));
        assert_eq!(t.in_flight(), 0);
        assert!(matches!(t.lock([1; 16]), Locked::Write(_)));
    }

    #[tokio::test]
    async fn dropped_permit_wakes_readers_as_dangling() {
        let t = FillLocks::new(Duration::from_secs(5));
        let w = t.lock([2; 16]);
        let Locked::Read(r) = t.lock([2; 16]) else { panic!("must read") };
        drop(w);
        assert!(matches!(r.wait().await, Some(LockStatus::Dangling)));
    }

    #[tokio::test]
    async fn readers_time_out() {
        let t = FillLocks::new(Duration::from_millis(20));
        let _w = t.lock([3; 16]);
        let Locked::Read(r) = t.lock([3; 16]) else { panic!("must read") };
        assert!(r.wait().await.is_none());
    }
}
