//! The CPU gate: decode/resize/encode run on tokio's blocking pool, at most one job
//! per permit (one per core by default), behind a bounded wait queue. When the
//! queue is full the job is refused at once with `Error::Overloaded` (503 +
//! Retry-After) instead of queueing without bound, so cache hits stay fast.

use crate::error::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// The worker pool gate.
#[derive(Debug)]
pub struct Workers {
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    rejected: AtomicU64,
}

/// Decrements the wait counter however the wait ends (success, timeout, cancel).
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Workers {
    /// `threads` concurrent jobs, `queue` more may wait.
    pub fn new(threads: usize, queue: usize) -> Workers {
        Workers {
            permits: Arc::new(Semaphore::new(threads.max(1))),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
            rejected: AtomicU64::new(0),
        }
    }

    /// Runs `job` on the blocking pool once a worker is free.
    ///
    /// # Errors
    /// `Overloaded` when the queue is full, `Timeout` when the deadline passes while
    /// waiting, `Internal` if the job panicked.
    pub async fn run<T, F>(&self, deadline: Instant, job: F) -> Result<T, Error>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let permit = match Arc::clone(&self.permits).try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    return Err(Error::Overloaded);
                }
                let _slot = WaitSlot(&self.waiting);
                let acquire = Arc::clone(&self.permits).acquire_owned();
                match tokio::time::timeout_at(deadline, acquire).await {
                    Ok(Ok(p)) => p,
                    Ok(Err(_)) => return Err(Error::Internal("worker pool closed".into())),
                    Err(_) => return Err(Error::Timeout),
                }
            }
        };
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| Error::Internal(format!("worker job failed: {e}")))
    }

    /// Jobs waiting for a worker now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Jobs refused because the queue was full.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn full_queue_rejects_at_once() {
        let w = Arc::new(Workers::new(1, 1));
        let deadline = Instant::now() + Duration::from_secs(5);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let busy = {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.run(deadline, move || rx.recv().ok()).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        let queued = {
            let w = Arc::clone(&w);
            tokio::spawn(async move { w.run(deadline, || 1).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(w.queue_depth(), 1);
        assert!(matches!(w.run(deadline, || 2).await, Err(Error::Overloaded)));
        assert_eq!(w.rejected(), 1);
        tx.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(queued.await.unwrap().unwrap(), 1);
        assert_eq!(w.queue_depth(), 0);
    }
}
