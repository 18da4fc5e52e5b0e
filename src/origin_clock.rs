//! Time one request spent waiting on the origin, for its access log line.
//!
//! The origin is called deep inside the fill (which runs as its own task, shared by
//! coalesced requests), far from the handler that writes the log. A task-local cell
//! carries the total there without threading it through every signature: the handler
//! opens one per request ([`measure`]), the fill task is spawned inside the same cell
//! ([`carry`]), and every origin call adds to it ([`add`]). Requests answered by another
//! request's fill (coalesced) or from cache report 0: they did not call the origin.
//! Streamed bodies count until the origin's response head, not the body transfer.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

tokio::task_local! {
    static ORIGIN_MICROS: Arc<AtomicU64>;
}

/// Runs `work` with a fresh origin clock; returns its output and the origin time.
pub async fn measure<F: Future>(work: F) -> (F::Output, Duration) {
    let cell = Arc::new(AtomicU64::new(0));
    let out = ORIGIN_MICROS.scope(Arc::clone(&cell), work).await;
    (out, Duration::from_micros(cell.load(Ordering::Relaxed)))
}

/// Wraps a future about to be spawned so its origin calls count for the current
/// request (a fresh, unread clock when there is none).
pub fn carry<F: Future>(work: F) -> impl Future<Output = F::Output> {
    let cell = ORIGIN_MICROS.try_with(Arc::clone).unwrap_or_default();
    ORIGIN_MICROS.scope(cell, work)
}

/// Adds one origin call's time to the current request's clock (no-op outside one).
pub fn add(took: Duration) {
    let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
    let _ = ORIGIN_MICROS.try_with(|c| c.fetch_add(micros, Ordering::Relaxed));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn spawned_work_adds_to_the_request_that_spawned_it() {
        let ((), took) = measure(async {
            add(Duration::from_millis(2));
            tokio::spawn(carry(async { add(Duration::from_millis(3)) })).await.unwrap();
        })
        .await;
        assert_eq!(took, Duration::from_millis(5));
        add(Duration::from_secs(1)); // outside a request: ignored, no panic
    }
}
