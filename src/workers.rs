//! The CPU gate: decode/resize/encode run on a fixed pool of worker threads (one
//! per core by default), at most one job per permit, behind a bounded wait queue.
//! When the queue is full the job is refused at once with `Error::Overloaded` (503
//! + Retry-After) instead of queueing without bound, so cache hits stay fast.
//!
//! Fixed threads rather than tokio's blocking pool: the blocking pool hands jobs to
//! ever new threads, and glibc gives each new thread its own malloc arena, which
//! keeps the 50-100 MB a large decode allocates. Measured with 48 concurrent 16 MP
//! misses on 2 workers: peak RSS 884 MB on the blocking pool, 231 MB with two
//! arenas. A job whose request is cancelled while it waits for a permit never runs.

use crate::error::Error;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::Semaphore;
use tokio::time::Instant;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The worker pool gate.
#[derive(Debug)]
pub struct Workers {
    jobs: std::sync::mpsc::SyncSender<Job>,
    permits: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_waiting: usize,
    rejected: AtomicU64,
    threads: usize,
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
    ///
    /// # Panics
    /// If the OS refuses to start a thread (start-up only).
    pub fn new(threads: usize, queue: usize) -> Workers {
        let threads = threads.max(1);
        // Holds at most `threads` jobs: one is only sent after taking a permit.
        let (jobs, rx) = std::sync::mpsc::sync_channel::<Job>(threads);
        let rx = Arc::new(std::sync::Mutex::new(rx));
        for i in 0..threads {
            let rx = Arc::clone(&rx);
            // Start-up only (App::new, before serving): without threads there is no server.
            #[allow(clippy::expect_used)]
            std::thread::Builder::new()
                .name(format!("imgedge-worker-{i}"))
                .spawn(move || loop {
                    let job = match rx.lock() {
                        Ok(guard) => guard.recv(),
                        Err(_) => return,
                    };
                    match job {
                        Ok(job) => job(),
                        Err(_) => return, // pool dropped
                    }
                })
                .expect("start-up: spawning a worker thread");
        }
        Workers {
            jobs,
            permits: Arc::new(Semaphore::new(threads)),
            waiting: AtomicUsize::new(0),
            max_waiting: queue,
            rejected: AtomicU64::new(0),
            threads,
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
        let (done, result) = tokio::sync::oneshot::channel();
        let wrapped: Job = Box::new(move || {
            let _permit = permit;
            // A panic in image code must not kill the worker thread.
            let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
            let _ = done.send(out);
        });
        self.jobs.send(wrapped).map_err(|_| Error::Internal("worker pool stopped".into()))?;
        match result.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(Error::Internal("worker job panicked".into())),
            Err(_) => Err(Error::Internal("worker job vanished".into())),
        }
    }

    /// Jobs waiting for a worker now.
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// Workers running a job now (a cancelled job frees its worker at its next check).
    pub fn busy(&self) -> usize {
        self.threads.saturating_sub(self.permits.available_permits())
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
