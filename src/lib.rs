//! imgedge: an on-the-fly image processing edge proxy.
//!
//! One binary is both a caching CDN node and an OSS-compatible image service.
//! A request flows: [`server`] (accept, route, deadline, access log) →
//! [`request`] (parse into typed values: object key, processing `Pipeline`, range,
//! validators) → [`cache`] (lookup by `CacheKey`, single-flight fill) → [`origin`]
//! (fetch the original) → [`process`] (decode → ops → encode on the bounded CPU
//! pool in [`workers`]) → [`respond`] (response headers, range slicing). Errors from
//! every step are one [`error::Error`], turned into a status and an OSS XML body
//! in one place. The admin listener serves [`purge`], prefetch and health; [`memory`]
//! returns what decodes freed to the kernel once decoding goes quiet.

pub mod access;
pub mod access_log;
pub mod budget;
pub mod cache;
pub mod cdn_api;
pub mod civil;
pub mod cluster;
pub mod config;
pub mod config_env;
pub mod cors;
pub mod encoding;
pub mod error;
pub mod explain;
pub mod fill;
pub mod live;
pub mod memory;
pub mod origin;
pub mod origin_clock;
pub mod prefetch;
pub mod proc_stats;
pub mod process;
pub mod purge;
pub mod request;
pub mod respond;
pub mod server;
pub mod stats;
pub mod tls;
pub mod url;
pub mod workers;

pub use config::Config;
pub use error::{Error, Result};
pub use server::{serve, serve_with_tls};

use cache::Cache;
use origin::Origin;
use process::Limits;
use stats::Stats;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;
use workers::Workers;

/// Shared state of a running server.
#[derive(Debug)]
pub struct App {
    /// The validated configuration as started. The keys a reload changes (TTL rules,
    /// styles, sites, purge token, AccessKeys, access log) are read from
    /// [`App::live`] instead; their values here are the start-up ones.
    pub config: Config,
    /// Where originals come from.
    pub origin: Origin,
    /// The response cache.
    pub cache: Cache,
    /// The CPU gate.
    pub workers: Workers,
    /// Processing limits.
    pub limits: Limits,
    /// Counters.
    pub stats: Stats,
    /// The settings a reload changes ([`live`]): load once per request with
    /// [`App::live`].
    live: live::LiveCell,
    /// Watermark fonts, loaded once at start-up ([`App::with_fonts`]); without them a
    /// text watermark answers 500.
    pub fonts: Option<std::sync::Arc<process::Fonts>>,
    /// Decoded-source cache (`None` when `cache.decoded_size` is 0).
    pub decoded: Option<process::DecodedCache>,
    /// Prefetch tasks and their per-path status.
    pub prefetch: prefetch::Tasks,
    /// Working memory of all decodes together (`limits.decode_memory`; `None`: off).
    pub decode_budget: Option<budget::MemoryBudget>,
    /// The CDN's own API on the admin listener: signatures, tasks, quota.
    pub cdn_api: cdn_api::CdnApi,
    /// Cluster membership, owner routing and purge stream (`None`: a lone node).
    pub cluster: Option<std::sync::Arc<cluster::Cluster>>,
    default_host: OnceLock<String>,
    request_seq: AtomicU64,
    request_seed: u64,
    task_seq: AtomicU64,
}

impl App {
    /// Builds the state from a validated config and an origin.
    pub fn new(config: Config, origin: Origin) -> App {
        let cache = Cache::new(config.cache.size, Duration::from_millis(config.cache.lock_timeout_ms));
        let workers = Workers::new(config.workers.effective_threads(), config.workers.queue);
        let limits = config.limits.to_limits();
        let decoded = process::DecodedCache::new(config.cache.decoded_size);
        let decode_budget =
            budget::MemoryBudget::new(config.limits.decode_memory).map(|b| b.with_max_waiting(config.workers.queue));
        let request_seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id());
        let live = live::Live::new(&config, &limits);
        App {
            cdn_api: cdn_api::CdnApi::new(),
            live: live::LiveCell::from_pointee(live),
            config,
            origin,
            cache,
            workers,
            limits,
            stats: Stats::default(),
            fonts: None,
            decoded,
            prefetch: prefetch::Tasks::default(),
            decode_budget,
            cluster: None,
            default_host: OnceLock::new(),
            request_seq: AtomicU64::new(0),
            request_seed,
            task_seq: AtomicU64::new(1),
        }
    }

    /// Adds the start-up fonts (see [`process::Fonts::embedded`]).
    pub fn with_fonts(mut self, fonts: std::sync::Arc<process::Fonts>) -> App {
        self.fonts = Some(fonts);
        self
    }

    /// Joins a cluster ([`cluster::Cluster::connect`]); start it with [`cluster::start`].
    pub fn with_cluster(mut self, cluster: std::sync::Arc<cluster::Cluster>) -> App {
        self.cluster = Some(cluster);
        self
    }

    /// The current live settings: load once per request and use that snapshot
    /// throughout, so a reload mid-request is not half seen.
    pub fn live(&self) -> arc_swap::Guard<std::sync::Arc<live::Live>> {
        self.live.load()
    }

    /// Applies a reloaded, validated config: the live settings are swapped in at once
    /// (requests already running keep theirs). Returns the restart-only keys that
    /// differ from the running config; they keep their old values.
    ///
    /// # Errors
    /// The new config's sites do not compile; nothing changes.
    pub fn reload(&self, config: &Config) -> Result<Vec<&'static str>, String> {
        let next = self.live.load().next(config, &self.limits)?;
        self.live.store(std::sync::Arc::new(next));
        Ok(live::restart_only_changes(&self.config, config))
    }

    /// A new 24-hex-digit request id, as OSS uses.
    pub fn next_request_id(&self) -> RequestId {
        let n = self.request_seq.fetch_add(1, Ordering::Relaxed);
        let mixed = xxhash_rust::xxh3::xxh3_64_with_seed(&n.to_le_bytes(), self.request_seed);
        RequestId::new((self.request_seed >> 32) as u32, mixed)
    }

    /// A new purge/prefetch task id.
    pub fn next_task_id(&self) -> u64 {
        self.task_seq.fetch_add(1, Ordering::Relaxed)
    }

    /// Host used for prefetches given as bare paths: the public listener's address.
    pub fn default_host(&self) -> String {
        self.default_host.get().cloned().unwrap_or_else(|| "localhost".into())
    }

    fn set_default_host(&self, host: String) {
        let _ = self.default_host.set(host);
    }
}

/// A request id on the stack: 8 hex digits of the process seed, 16 of the request
/// (every request has one, so it costs no allocation).
#[derive(Clone, Copy)]
pub struct RequestId([u8; 24]);

impl RequestId {
    fn new(seed: u32, mixed: u64) -> RequestId {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut id = [0u8; 24];
        let digits = (u128::from(seed) << 64) | u128::from(mixed);
        for (i, d) in id.iter_mut().enumerate() {
            *d = HEX[((digits >> (4 * (23 - i))) & 0xF) as usize];
        }
        RequestId(id)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits are ever written.
        std::str::from_utf8(&self.0).unwrap_or("000000000000000000000000")
    }
}

impl std::fmt::Debug for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod request_id_tests {
    use super::RequestId;

    #[test]
    fn request_id_is_seed_then_request_in_upper_hex() {
        let id = RequestId::new(0x18EE_26E6, 0x746F_6D46_AC10_9BBF);
        assert_eq!(id.as_str(), "18EE26E6746F6D46AC109BBF");
        assert_eq!(RequestId::new(0, 1).as_str(), "000000000000000000000001");
    }
}
