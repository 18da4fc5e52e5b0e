//! Process-wide memory budgets: a byte count shared by every request, charged in whole
//! MiB *before* the memory is allocated and given back when the charge is dropped.
//!
//! Two budgets use it: `limits.decode_memory` (the working memory of decodes, charged
//! from the image header before a job enters the worker queue) and
//! `limits.origin_bytes_in_flight` (origin bodies being buffered). A charge larger than
//! the whole budget can never be had and is refused at once; a charge that does not fit
//! now waits (FIFO: tokio's semaphore is fair, so a large charge is not starved by small
//! ones) until its deadline. A leaf module: tokio only.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

const MIB: u64 = 1 << 20;

/// A byte budget shared across requests; cloning shares it.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    permits: Arc<Semaphore>,
    total_mib: u32,
    waiting: Arc<AtomicUsize>,
    max_waiting: usize,
}

/// Bytes charged against a budget; dropping it gives them back.
#[derive(Debug)]
pub struct Charge {
    permit: Option<OwnedSemaphorePermit>,
}

/// Why a charge was not granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetError {
    /// More than the whole budget: no amount of waiting helps.
    TooLarge {
        /// Bytes asked for.
        need: u64,
        /// The whole budget in bytes.
        budget: u64,
    },
    /// The budget did not free up before the deadline.
    Busy,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to whole MiB, at least 1 MiB). `None` for 0:
    /// the budget is off and nothing is charged.
    pub fn new(bytes: u64) -> Option<MemoryBudget> {
        (bytes > 0).then(|| {
            let total_mib = u32::try_from((bytes / MIB).max(1)).unwrap_or(u32::MAX).min(MAX_MIB);
            MemoryBudget {
                permits: Arc::new(Semaphore::new(total_mib as usize)),
                total_mib,
                waiting: Arc::default(),
                max_waiting: usize::MAX,
            }
        })
    }

    /// At most `n` charges wait at once; more are refused `Busy` at once (each waiter
    /// holds its request's buffers, so the queue itself must be bounded).
    pub fn with_max_waiting(mut self, n: usize) -> MemoryBudget {
        self.max_waiting = n;
        self
    }

    /// The whole budget in bytes.
    pub fn total(&self) -> u64 {
        u64::from(self.total_mib) * MIB
    }

    /// Bytes not charged now.
    pub fn available(&self) -> u64 {
        self.permits.available_permits() as u64 * MIB
    }

    /// Charges `bytes`, waiting until `deadline` for them to be free.
    ///
    /// # Errors
    /// `TooLarge` at once when `bytes` exceed the whole budget, `Busy` when the
    /// deadline passes first.
    pub async fn charge(&self, bytes: u64, deadline: Instant) -> Result<Charge, BudgetError> {
        let mib = self.mib_for(bytes)?;
        if mib == 0 {
            return Ok(Charge { permit: None });
        }
        match Arc::clone(&self.permits).try_acquire_many_owned(mib) {
            Ok(p) => return Ok(Charge { permit: Some(p) }),
            Err(tokio::sync::TryAcquireError::Closed) => return Err(BudgetError::Busy),
            Err(tokio::sync::TryAcquireError::NoPermits) => {}
        }
        if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_waiting {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            return Err(BudgetError::Busy);
        }
        let _slot = WaitSlot(&self.waiting);
        match tokio::time::timeout_at(deadline, Arc::clone(&self.permits).acquire_many_owned(mib)).await {
            Ok(Ok(p)) => Ok(Charge { permit: Some(p) }),
            Ok(Err(_)) | Err(_) => Err(BudgetError::Busy),
        }
    }

    /// Adds `bytes` to an existing charge (a body that turned out longer than first
    /// charged), waiting until `deadline`.
    ///
    /// # Errors
    /// As [`MemoryBudget::charge`]; the existing charge is kept either way.
    pub async fn grow(&self, charge: &mut Charge, bytes: u64, deadline: Instant) -> Result<(), BudgetError> {
        let held = charge.permit.as_ref().map_or(0, |p| p.num_permits() as u64) * MIB;
        self.mib_for(held.saturating_add(bytes))?;
        let more = self.charge(bytes, deadline).await?;
        match (&mut charge.permit, more.permit) {
            (Some(p), Some(m)) => p.merge(m),
            (slot @ None, m) => *slot = m,
            (Some(_), None) => {}
        }
        Ok(())
    }

    fn mib_for(&self, bytes: u64) -> Result<u32, BudgetError> {
        let mib = bytes.div_ceil(MIB);
        if mib > u64::from(self.total_mib) {
            return Err(BudgetError::TooLarge { need: bytes, budget: self.total() });
        }
        Ok(u32::try_from(mib).unwrap_or(u32::MAX))
    }
}

/// Decrements the wait counter however the wait ends (granted, timed out, cancelled).
struct WaitSlot<'a>(&'a AtomicUsize);

impl Drop for WaitSlot<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Charge {
    /// Bytes held by this charge.
    pub fn bytes(&self) -> u64 {
        self.permit.as_ref().map_or(0, |p| p.num_permits() as u64) * MIB
    }
}

/// tokio's semaphore holds at most `usize::MAX >> 3` permits; far above any budget.
const MAX_MIB: u32 = u32::MAX >> 3;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn soon() -> Instant {
        Instant::now() + Duration::from_millis(50)
    }

    #[tokio::test]
    async fn refuses_more_than_the_whole_budget_at_once() {
        let b = MemoryBudget::new(10 * MIB).unwrap();
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(
            b.charge(11 * MIB, far).await.unwrap_err(),
            BudgetError::TooLarge { need: 11 * MIB, budget: 10 * MIB }
        );
        assert!(MemoryBudget::new(0).is_none());
    }

    #[tokio::test]
    async fn concurrent_charges_wait_and_give_back() {
        let b = MemoryBudget::new(10 * MIB).unwrap();
        let first = b.charge(6 * MIB, soon()).await.unwrap();
        assert_eq!(first.bytes(), 6 * MIB);
        assert_eq!(b.available(), 4 * MIB);
        assert_eq!(b.charge(6 * MIB, soon()).await.unwrap_err(), BudgetError::Busy);
        let waiter = {
            let b = b.clone();
            tokio::spawn(
                async move { b.charge(6 * MIB, Instant::now() + Duration::from_secs(5)).await.map(|c| c.bytes()) },
            )
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        drop(first);
        assert_eq!(waiter.await.unwrap(), Ok(6 * MIB));
        assert_eq!(b.available(), 10 * MIB);
    }

    #[tokio::test]
    async fn the_wait_queue_is_bounded() {
        let b = MemoryBudget::new(2 * MIB).unwrap().with_max_waiting(1);
        let held = b.charge(2 * MIB, soon()).await.unwrap();
        let waiter = {
            let b = b.clone();
            tokio::spawn(async move { b.charge(MIB, Instant::now() + Duration::from_secs(5)).await.map(|c| c.bytes()) })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let far = Instant::now() + Duration::from_secs(3600);
        assert_eq!(b.charge(MIB, far).await.unwrap_err(), BudgetError::Busy, "queue full: refused at once");
        drop(held);
        assert_eq!(waiter.await.unwrap(), Ok(MIB));
    }

    #[tokio::test]
    async fn partial_mib_rounds_up_and_grow_adds() {
        let b = MemoryBudget::new(4 * MIB).unwrap();
        let mut c = b.charge(1, soon()).await.unwrap();
        assert_eq!(c.bytes(), MIB);
        b.grow(&mut c, 2 * MIB, soon()).await.unwrap();
        assert_eq!(c.bytes(), 3 * MIB);
        assert!(matches!(b.grow(&mut c, 2 * MIB, soon()).await, Err(BudgetError::TooLarge { .. })));
        assert_eq!(c.bytes(), 3 * MIB, "a refused grow keeps the charge");
        drop(c);
        assert_eq!(b.available(), 4 * MIB);
        assert_eq!(b.charge(0, soon()).await.unwrap().bytes(), 0);
    }
}
