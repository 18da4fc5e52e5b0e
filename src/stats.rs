//! What the server counts about itself: cheap atomics on the hot path, rendered as
//! Prometheus text on the admin listener's `/metrics`.
//!
//! Counters that other parts already keep (cache size and evictions, worker queue)
//! are read at scrape time instead of being mirrored on every request.

use crate::cache::CacheStatus;
use crate::origin::{BodyStream, OriginError};
use futures_util::StreamExt;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Labels of the request counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    status: u16,
    cache: &'static str,
}

/// Labels of the request-duration histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CacheLabels {
    cache: &'static str,
}

/// Labels of the processing-stage histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StageLabels {
    stage: &'static str,
}

/// Labels of the decoded-source cache counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LookupLabels {
    result: &'static str,
}

/// Process-wide counters and histograms.
pub struct Stats {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Family<CacheLabels, Histogram, fn() -> Histogram>,
    bytes_served: Counter,
    hits: Counter,
    lookups: Counter,
    origin_fetches: Counter,
    cluster_forwards: Counter,
    cluster_fallbacks: Counter,
    origin_errors: Counter,
    origin_not_found: Counter,
    origin_latency: Histogram,
    stage_seconds: Family<StageLabels, Histogram, fn() -> Histogram>,
    decoded_sources: Family<LookupLabels, Counter>,
    cache_entries: Gauge,
    cache_bytes: Gauge,
    cache_evictions: Counter,
    queue_depth: Gauge,
    queue_rejections: Counter,
    fill_compressions: Counter,
    purge_log_records: Gauge,
    purge_log_bytes: Gauge,
    streamed_bytes: Arc<AtomicU64>,
}

impl std::fmt::Debug for Stats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stats").field("origin_fetches", &self.origin_fetches.get()).finish()
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 s
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

impl Default for Stats {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("imgedge");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register("requests", "Requests answered, by status and cache status", requests.clone());
        let request_seconds =
            Family::<CacheLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "request_duration_seconds",
            "Time from a request's arrival to its response head, by cache status (none: not an object answer)",
            request_seconds.clone(),
        );
        let bytes_served = Counter::default();
        registry.register("served_bytes", "Body bytes sent to clients", bytes_served.clone());
        let hits = Counter::default();
        registry.register("cache_hits", "Object requests answered from cache", hits.clone());
        let lookups = Counter::default();
        registry.register("cache_lookups", "Object requests that consulted the cache", lookups.clone());
        let origin_fetches = Counter::default();
        registry.register("origin_requests", "Requests sent to the origin", origin_fetches.clone());
        let cluster_forwards = Counter::default();
        registry.register("cluster_forwards", "Misses answered by the key's owner node", cluster_forwards.clone());
        let cluster_fallbacks = Counter::default();
        registry.register(
            "cluster_forward_fallbacks",
            "Forwards to the owner node that failed or were too slow (filled locally instead)",
            cluster_fallbacks.clone(),
        );
        let origin_errors = Counter::default();
        registry.register(
            "origin_errors",
            "Origin requests that failed (not counting 404s: see origin_not_found)",
            origin_errors.clone(),
        );
        let origin_not_found = Counter::default();
        registry.register(
            "origin_not_found",
            "Origin requests answered 404 (the object does not exist; not an origin failure)",
            origin_not_found.clone(),
        );
        let origin_latency = latency_histogram();
        registry.register("origin_latency_seconds", "Origin request latency", origin_latency.clone());
        let stage_seconds =
            Family::<StageLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "process_stage_seconds",
            "Image processing time per stage (decode, ops, encode)",
            stage_seconds.clone(),
        );
        let decoded_sources = Family::<LookupLabels, Counter>::default();
        registry.register(
            "decoded_sources",
            "Image runs by where the decoded source came from (hit: the decoded-source cache; decoded)",
            decoded_sources.clone(),
        );
        let cache_entries = Gauge::default();
        registry.register("cache_entries", "Entries in the response cache", cache_entries.clone());
        let cache_bytes = Gauge::default();
        registry.register("cache_size_bytes", "Bytes held by the response cache", cache_bytes.clone());
        let cache_evictions = Counter::default();
        registry.register("cache_evictions", "Entries evicted for size", cache_evictions.clone());
        let queue_depth = Gauge::default();
        registry.register("worker_queue_depth", "Image jobs waiting for a worker", queue_depth.clone());
        let queue_rejections = Counter::default();
        registry.register(
            "worker_rejections",
            "Image jobs refused with 503 because the queue was full",
            queue_rejections.clone(),
        );
        let fill_compressions = Counter::default();
        registry.register(
            "fill_compressions",
            "Cache fills whose compressible body was compressed (br and gzip copies kept with the entry)",
            fill_compressions.clone(),
        );
        let purge_log_records = Gauge::default();
        registry.register("purge_log_records", "Purges remembered for the fill race check", purge_log_records.clone());
        let purge_log_bytes = Gauge::default();
        registry.register("purge_log_bytes", "Estimated bytes held by the purge log", purge_log_bytes.clone());
        Stats {
            registry,
            requests,
            request_seconds,
            bytes_served,
            hits,
            lookups,
            origin_fetches,
            cluster_forwards,
            cluster_fallbacks,
            origin_errors,
            origin_not_found,
            origin_latency,
            stage_seconds,
            decoded_sources,
            cache_entries,
            cache_bytes,
            cache_evictions,
            queue_depth,
            queue_rejections,
            fill_compressions,
            purge_log_records,
            purge_log_bytes,
            streamed_bytes: Arc::default(),
        }
    }
}

impl Stats {
    /// Counts one answered request; `cache` is how the cache answered (None: not an
    /// object request, or an error); `took` is its time to the response head. The
    /// admin listener's probes are not counted (server.rs leaves them out).
    pub fn record_request(&self, status: u16, cache: Option<CacheStatus>, bytes: u64, took: Duration) {
        let label = cache.map_or("none", CacheStatus::label);
        self.requests.get_or_create(&RequestLabels { status, cache: label }).inc();
        self.request_seconds.get_or_create(&CacheLabels { cache: label }).observe(took.as_secs_f64());
        self.bytes_served.inc_by(bytes);
        if let Some(cache) = cache {
            self.lookups.inc();
            if cache.is_hit() {
                self.hits.inc();
            }
        }
    }

    /// Counts one forward of a miss to its owner: answered (true) or filled locally.
    pub fn cluster_forward(&self, answered: bool) {
        if answered {
            self.cluster_forwards.inc();
        } else {
            self.cluster_fallbacks.inc();
        }
    }

    /// Counts one origin request.
    pub fn origin_fetch(&self) {
        self.origin_fetches.inc();
    }

    /// Records an origin request's latency and outcome: a 404 is the origin's answer
    /// (the object does not exist), counted apart from failures. The time also goes to
    /// the current request's origin clock (its access log line).
    pub fn origin_result<T>(&self, took: Duration, result: &Result<T, OriginError>) {
        self.origin_latency.observe(took.as_secs_f64());
        crate::origin_clock::add(took);
        match result {
            Ok(_) => {}
            Err(OriginError::NotFound) => {
                self.origin_not_found.inc();
            }
            Err(_) => {
                self.origin_errors.inc();
            }
        }
    }

    /// Records one processing stage's time.
    pub fn stage(&self, stage: &'static str, took: Duration) {
        self.stage_seconds.get_or_create(&StageLabels { stage }).observe(took.as_secs_f64());
    }

    /// Counts one image run by whether its decode came from the decoded-source cache.
    pub fn decoded_source(&self, cache_hit: bool) {
        let result = if cache_hit { "hit" } else { "decoded" };
        self.decoded_sources.get_or_create(&LookupLabels { result }).inc();
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

    /// Counts one fill whose body was compressed for the cache.
    pub fn fill_compressed(&self) {
        self.fill_compressions.inc();
    }

    /// Fills whose body was compressed so far (hits never compress).
    pub fn fill_compressions(&self) -> u64 {
        self.fill_compressions.get()
    }

    /// Origin requests so far.
    pub fn origin_fetches(&self) -> u64 {
        self.origin_fetches.get()
    }

    /// Failed origin requests so far.
    pub fn origin_errors(&self) -> u64 {
        self.origin_errors.get()
    }

    /// Bytes read from the origin for streamed (uncached) objects so far.
    pub fn streamed_bytes(&self) -> u64 {
        self.streamed_bytes.load(Ordering::Relaxed)
    }

    /// Prometheus text exposition, with cache and queue figures read now.
    pub fn render(&self, app: &crate::App) -> String {
        self.cache_entries.set(i64::try_from(app.cache.entry_count()).unwrap_or(i64::MAX));
        self.cache_bytes.set(i64::try_from(app.cache.weighted_size()).unwrap_or(i64::MAX));
        catch_up(&self.cache_evictions, app.cache.evictions());
        self.queue_depth.set(i64::try_from(app.workers.queue_depth()).unwrap_or(i64::MAX));
        catch_up(&self.queue_rejections, app.workers.rejected());
        let (records, bytes) = app.cache.purge_log_size();
        self.purge_log_records.set(i64::try_from(records).unwrap_or(i64::MAX));
        self.purge_log_bytes.set(i64::try_from(bytes).unwrap_or(i64::MAX));
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            return String::new();
        }
        // The hit ratio as a ready-made gauge for dashboards without PromQL.
        let lookups = self.lookups.get();
        let ratio = if lookups == 0 { 0.0 } else { self.hits.get() as f64 / lookups as f64 };
        let body = out.trim_end_matches("# EOF\n");
        let process = crate::proc_stats::render();
        let disk = app.cache.disk().map(|d| d.render_metrics()).unwrap_or_default();
        format!(
            "{body}# HELP imgedge_cache_hit_ratio Share of cache lookups answered from cache since start.\n# TYPE imgedge_cache_hit_ratio gauge\nimgedge_cache_hit_ratio {ratio}\n{disk}{process}# EOF\n"
        )
    }
}

/// Advances a counter to a total kept elsewhere.
fn catch_up(counter: &Counter, total: u64) {
    let now = counter.get();
    if total > now {
        counter.inc_by(total - now);
    }
}
