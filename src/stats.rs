//! Counters the server keeps about itself (read by tests and the metrics endpoint).

use crate::origin::BodyStream;
use futures_util::StreamExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Process-wide counters. Cheap atomics; never locked.
#[derive(Debug, Default)]
pub struct Stats {
    origin_fetches: AtomicU64,
    origin_errors: AtomicU64,
    origin_micros: AtomicU64,
    streamed_bytes: Arc<AtomicU64>,
}

impl Stats {
    /// Counts one origin request.
    pub fn origin_fetch(&self) {
        self.origin_fetches.fetch_add(1, Ordering::Relaxed);
    }

    /// Records an origin request's latency and outcome.
    pub fn origin_latency(&self, took: Duration, failed: bool) {
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.origin_micros.fetch_add(micros, Ordering::Relaxed);
        if failed {
            self.origin_errors.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Wraps a pass-through stream so the bytes it forwards are counted.
    pub fn count_streamed(&self, stream: BodyStream) -> BodyStream {
        let counter = Arc::clone(&self.streamed_bytes);
        stream
            .inspect(move |chunk| {
                if let Ok(c) = chunk {
                    counter.fetch_add(c.len() as u64, Ordering::Relaxed);
                }
            })
            .boxed()
    }

    /// Origin requests so far.
    pub fn origin_fetches(&self) -> u64 {
        self.origin_fetches.load(Ordering::Relaxed)
    }

    /// Failed origin requests so far.
    pub fn origin_errors(&self) -> u64 {
        self.origin_errors.load(Ordering::Relaxed)
    }

    /// Bytes read from the origin for streamed (uncached) objects so far.
    pub fn streamed_bytes(&self) -> u64 {
        self.streamed_bytes.load(Ordering::Relaxed)
    }
}
