//! The one configuration tree, with safe defaults, validated once at start-up.
//!
//! `main.rs` builds it from the TOML file (`--config`) and then applies command-line
//! flags on top (flags win). Tests build it in code. Each component takes its own
//! section in its constructor and never reads the environment itself.

use crate::process::{Limits, Styles};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::time::Duration;

/// The smallest disk tier (`cache.disk_size`) accepted: 16 blocks of 1 MiB. Here rather than in
/// `cache::disk` so the config does not depend on the cache (which reads the config).
pub const MIN_DISK_CACHE_SIZE: u64 = 16 << 20;

/// Top-level configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Public listener address.
    pub listen: SocketAddr,
    /// Admin listener address (purge, prefetch, health).
    pub admin_listen: SocketAddr,
    /// Origin: a folder path (default `fixtures`).
    pub origin: String,
    /// Bearer token required by the admin API (None: no token).
    pub purge_token: Option<String>,
    /// Admin API settings: AccessKey pairs for the CDN's signed API.
    pub admin: AdminConfig,
    /// Response cache settings.
    pub cache: CacheConfig,
    /// Image processing limits.
    pub limits: LimitsConfig,
    /// CPU worker pool.
    pub workers: WorkersConfig,
    /// Named processing styles: name → `image/...` chain.
    pub styles: Styles,
    /// OSS style delimiters: each character (any of `-`, `_`, `/`, `!`) makes
    /// `<key><char><style>` mean `<key>?x-oss-process=style/<style>` when `<style>` is
    /// configured (`request::split_style_suffix`); `!` also takes OSS's `@!` spelling.
    /// Default empty: off, every path is an object key.
    pub style_delimiters: String,
    /// Output formats chosen from the client's `Accept` when a chain has no `format`
    /// (`["webp"]`, `["webp", "avif"]`; AVIF wins where both are accepted); empty = off.
    pub auto_format: Vec<String>,
    /// One log line per request (target `imgedge::access`); off skips the formatting
    /// and the write on every hit.
    pub access_log: bool,
    /// What the access log writes and how (`[log]`).
    pub log: LogConfig,
    /// Sites (Host names) with their access rules; empty = every host, no rules.
    pub sites: Vec<crate::access::SiteConfig>,
    /// CORS for browsers (off until `allowed_origins` is set).
    pub cors: crate::cors::CorsConfig,
    /// HTTP server tuning.
    pub http: HttpConfig,
    /// Network settings for HTTP, OSS and S3 origins.
    pub origin_client: OriginClientConfig,
    /// Origin credentials from the file (else from the environment).
    pub credentials: CredentialsConfig,
    /// Whole-request deadline in milliseconds.
    pub request_timeout_ms: u64,
    /// How long shutdown waits for in-flight requests, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// Folder with watermark fonts to use instead of the ones compiled into the binary
    /// (`process::fonts::FACES`: the same four file names), loaded once at start-up;
    /// relative paths are from the working directory. Default: the embedded fonts.
    pub fonts_dir: Option<std::path::PathBuf>,
    /// The HTTPS listener, its certificates and ACME (`[tls]`; off by default).
    pub tls: crate::tls::TlsConfig,
    /// Several nodes as one CDN tier (`[cluster]`, [`crate::cluster`]); off by default.
    pub cluster: ClusterConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_listen: SocketAddr::from(([127, 0, 0, 1], 8081)),
            origin: "fixtures".into(),
            purge_token: None,
            admin: AdminConfig::default(),
            cache: CacheConfig::default(),
            limits: LimitsConfig::default(),
            workers: WorkersConfig::default(),
            styles: Styles::default(),
            style_delimiters: String::new(),
            auto_format: Vec::new(),
            access_log: true,
            log: LogConfig::default(),
            sites: Vec::new(),
            origin_client: OriginClientConfig::default(),
            cors: crate::cors::CorsConfig::default(),
            http: HttpConfig::default(),
            credentials: CredentialsConfig::default(),
            request_timeout_ms: 30_000,
            shutdown_grace_ms: 10_000,
            fonts_dir: None,
            tls: crate::tls::TlsConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// `[cluster]`: owner routing, cluster-wide purges and membership ([`crate::cluster`]).
/// On when `redis` or `peers` is set.
#[derive(Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Redis for membership and the purge stream: `redis://HOST:PORT/DB` (`--cluster`).
    /// None: no Redis (a static `peers` list still routes misses; purges stay local).
    pub redis: Option<String>,
    /// This node's id, unique in the cluster (`--node-id`); it places the node on the ring.
    pub node_id: Option<String>,
    /// Where peers reach this node's public listener: `http://HOST:PORT`
    /// (`--cluster-advertise`).
    pub advertise: Option<String>,
    /// Shared secret that authenticates forwarded requests (HMAC-SHA256), at least 16
    /// bytes (`--cluster-secret`, `IMGEDGE_CLUSTER_SECRET`).
    pub secret: Option<String>,
    /// Static members `id=http://HOST:PORT` (`--peers`), used with or without Redis.
    pub peers: Vec<String>,
    /// Prefix of every Redis key this cluster uses (several clusters can share a Redis).
    pub key_prefix: String,
    /// How often a node refreshes its membership and re-reads the ring, ms (default 1000).
    pub heartbeat_ms: u64,
    /// A member whose heartbeat is older than this drops out of the ring, ms (default 3000).
    pub member_ttl_ms: u64,
    /// Connect timeout to an owner, ms (default 250): past it, the node serves itself.
    pub connect_timeout_ms: u64,
    /// Whole forward to an owner, ms (default 5000): past it, the node serves itself.
    pub forward_timeout_ms: u64,
    /// Seconds a non-owner keeps what an owner sent it (0: not kept; default 5).
    pub hot_copy_ttl_secs: u64,
    /// Approximate length the purge stream is trimmed to (`XADD MAXLEN ~`; default 100000).
    pub purge_stream_max_len: u64,
    /// Folder for this node's purge-stream cursor (`--cluster-state`); None: not kept,
    /// a restarted node starts at the stream's end (right for a memory-only cache).
    pub state_dir: Option<std::path::PathBuf>,
    /// Clock skew accepted on a forwarded request's timestamp, seconds (default 30).
    pub auth_skew_secs: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            redis: None,
            node_id: None,
            advertise: None,
            secret: None,
            peers: Vec::new(),
            key_prefix: "imgedge".into(),
            heartbeat_ms: 1000,
            member_ttl_ms: 3000,
            connect_timeout_ms: 250,
            forward_timeout_ms: 5000,
            hot_copy_ttl_secs: 5,
            purge_stream_max_len: 100_000,
            state_dir: None,
            auth_skew_secs: 30,
        }
    }
}

impl std::fmt::Debug for ClusterConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterConfig")
            .field("redis", &self.redis)
            .field("node_id", &self.node_id)
            .field("advertise", &self.advertise)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("peers", &self.peers)
            .finish_non_exhaustive()
    }
}

impl ClusterConfig {
    /// True when the node is part of a cluster.
    pub fn enabled(&self) -> bool {
        self.redis.is_some() || !self.peers.is_empty()
    }

    /// `(id, url)` of each static peer.
    ///
    /// # Errors
    /// A peer that is not `id=http://HOST:PORT`.
    pub fn static_peers(&self) -> Result<Vec<(String, String)>, String> {
        self.peers
            .iter()
            .map(|p| match p.split_once('=') {
                Some((id, url)) if !id.is_empty() && url.starts_with("http://") => {
                    Ok((id.trim().to_owned(), url.trim().trim_end_matches('/').to_owned()))
                }
                _ => Err(format!("cluster.peers: {p:?} is not id=http://HOST:PORT")),
            })
            .collect()
    }

    fn validate(&self) -> Result<(), String> {
        if !self.enabled() {
            return Ok(());
        }
        self.static_peers()?;
        if self.node_id.as_deref().is_none_or(str::is_empty) {
            return Err("cluster.node_id (--node-id) must be set when the cluster is on".into());
        }
        if !self.advertise.as_deref().is_some_and(|a| a.starts_with("http://")) {
            return Err(
                "cluster.advertise (--cluster-advertise) must be http://HOST:PORT when the cluster is on".into()
            );
        }
        if self.secret.as_deref().is_none_or(|s| s.len() < 16) {
            return Err("cluster.secret (--cluster-secret or IMGEDGE_CLUSTER_SECRET) must be at least 16 bytes".into());
        }
        if let Some(r) = &self.redis {
            if !(r.starts_with("redis://") || r.starts_with("rediss://")) {
                return Err(format!("cluster.redis {r:?} must be redis://HOST:PORT/DB"));
            }
        }
        if self.heartbeat_ms == 0 || self.member_ttl_ms <= self.heartbeat_ms {
            return Err("cluster.member_ttl_ms must be greater than cluster.heartbeat_ms (> 0)".into());
        }
        if self.forward_timeout_ms == 0 || self.connect_timeout_ms == 0 {
            return Err("cluster.forward_timeout_ms and cluster.connect_timeout_ms must be greater than 0".into());
        }
        Ok(())
    }
}

/// Access log settings (`[log]`); `access_log = false` still turns the log off.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `"combined"` (default: nginx's combined line plus imgedge's fields) or `"json"`
    /// (one JSON object per line).
    pub format: LogFormat,
    /// Which address the log names as the client: `"peer"` (default: the TCP peer) or
    /// `"forwarded_for"` (the left-most `X-Forwarded-For` address, falling back to the
    /// peer; only behind a trusted proxy, as `[sites.ip] source = "forwarded_for"`).
    pub client_address: ClientAddress,
    /// Also log the admin listener's probes (`/healthz`, `/metrics`); default false.
    pub probes: bool,
}

/// Access log line format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
    /// "$http_user_agent"` followed by `key=value` fields.
    #[default]
    Combined,
    /// One JSON object per line.
    Json,
}

/// The address the access log names as the client.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAddress {
    /// The TCP peer.
    #[default]
    Peer,
    /// The left-most `X-Forwarded-For` address (the peer when absent or malformed).
    ForwardedFor,
}

/// Response cache settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Total bytes of cached bodies (e.g. `"512MiB"`).
    #[serde(deserialize_with = "de_size")]
    pub size: u64,
    /// Objects larger than this (bytes) are streamed through and never cached.
    #[serde(deserialize_with = "de_size")]
    pub max_object_size: u64,
    /// Pixels of recently decoded sources kept so other sizes and formats of the same
    /// original skip the decode (0 disables it).
    #[serde(deserialize_with = "de_size")]
    pub decoded_size: u64,
    /// TTL rules by extension, directory or full path; the highest weight wins.
    pub ttl_rules: Vec<TtlRule>,
    /// Cache 2xx responses even when the origin says no-cache/no-store.
    pub ignore_origin_no_cache: bool,
    /// TTL in seconds for 404 answers (0: not cached).
    pub not_found_ttl_secs: u64,
    /// TTL in seconds for objects with an ETag but no Last-Modified or freshness headers.
    pub etag_only_ttl_secs: u64,
    /// Query parameters left out of the cache key (besides URL-auth parameters).
    pub ignore_params: Vec<String>,
    /// Deprecated and ignored (accepted so old config files still load): concurrent
    /// requests wait for the one fill until their own request deadline.
    pub lock_timeout_ms: u64,
    /// Cache-Control sent to clients; `{ttl}` is replaced by the entry's TTL in seconds.
    pub client_cache_control: String,
    /// Directory of the disk tier under the memory cache (L2; entries survive
    /// restarts). Unset (the default): memory only.
    pub disk_dir: Option<std::path::PathBuf>,
    /// Bytes the disk tier may use in `disk_dir` (at least 16MiB) [default: 1GiB].
    #[serde(deserialize_with = "de_size")]
    pub disk_size: u64,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            size: 512 << 20,
            max_object_size: 32 << 20,
            decoded_size: 32 << 20,
            ttl_rules: Vec::new(),
            ignore_origin_no_cache: false,
            not_found_ttl_secs: 0,
            etag_only_ttl_secs: 60,
            ignore_params: Vec::new(),
            lock_timeout_ms: 10_000,
            client_cache_control: "public, max-age={ttl}".into(),
            disk_dir: None,
            disk_size: 1 << 30,
        }
    }
}

/// What a TTL rule matches.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TtlRuleKind {
    /// File extensions, comma-separated (`jpg,png`).
    Extension,
    /// A path prefix ending in `/` (`/image/`; `/` is everything).
    Directory,
    /// One exact path (`/www/a.jpg`).
    Path,
}

/// One CDN-style cache rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TtlRule {
    /// What the rule matches.
    pub kind: TtlRuleKind,
    /// Extensions, directory or path, as `kind` says.
    pub value: String,
    /// TTL in seconds; 0 means "do not cache".
    pub ttl_secs: u64,
    /// 1..=99; higher weight is tried first, ties keep configuration order.
    #[serde(default = "default_weight")]
    pub weight: u8,
    /// When the origin sent caching headers, use them instead of this rule.
    #[serde(default)]
    pub prefer_origin: bool,
}

fn default_weight() -> u8 {
    50
}

impl TtlRule {
    /// Parses the command-line form `KIND:VALUE:TTL[:WEIGHT]`, e.g. `ext:jpg,png:86400:90`.
    ///
    /// # Errors
    /// A message naming the bad part.
    pub fn parse_flag(spec: &str) -> Result<TtlRule, String> {
        let parts: Vec<&str> = spec.split(':').collect();
        if !(3..=4).contains(&parts.len()) {
            return Err(format!("--ttl-rule {spec:?}: expected KIND:VALUE:TTL[:WEIGHT]"));
        }
        let kind = match parts[0] {
            "ext" | "extension" => TtlRuleKind::Extension,
            "dir" | "directory" => TtlRuleKind::Directory,
            "path" => TtlRuleKind::Path,
            other => return Err(format!("--ttl-rule: unknown kind {other:?} (ext, dir, path)")),
        };
        let ttl_secs =
            parts[2].parse().map_err(|_| format!("--ttl-rule {spec:?}: TTL {:?} is not seconds", parts[2]))?;
        let weight = match parts.get(3) {
            Some(w) => w.parse().map_err(|_| format!("--ttl-rule {spec:?}: weight {w:?} is not 1..99"))?,
            None => default_weight(),
        };
        Ok(TtlRule { kind, value: parts[1].to_owned(), ttl_secs, weight, prefer_origin: false })
    }
}

/// HTTP server tuning (both listeners).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Longest wait for a request's headers on HTTP/1 (slowloris guard), milliseconds.
    pub header_read_timeout_ms: u64,
    /// HTTP/1 keep-alive between requests.
    pub keep_alive: bool,
    /// HTTP/2 PING interval to detect dead peers, seconds (0: off).
    pub http2_keep_alive_interval_secs: u64,
    /// Concurrent HTTP/2 streams per connection.
    pub http2_max_concurrent_streams: u32,
    /// Most open public connections. At the cap the server stops accepting (new
    /// connections wait in the kernel's listen backlog) until one closes, as nginx does
    /// at `worker_connections`; the admin listener is not counted.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_read_timeout_ms: 10_000,
            keep_alive: true,
            http2_keep_alive_interval_secs: 30,
            http2_max_concurrent_streams: 256,
            max_connections: 10_000,
        }
    }
}

/// Network settings for remote origins.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OriginClientConfig {
    /// TCP (+TLS) connect timeout, milliseconds.
    pub connect_timeout_ms: u64,
    /// Wait for the response head and for each body chunk, milliseconds.
    pub read_timeout_ms: u64,
    /// Attempts per fetch, the first included (1 = no retry).
    pub max_attempts: u32,
    /// Backoff before the first retry, milliseconds; doubles per retry, with jitter.
    pub retry_base_delay_ms: u64,
    /// Longest backoff pause, milliseconds.
    pub retry_max_delay_ms: u64,
    /// Largest object accepted from an origin at all (cached or streamed).
    #[serde(deserialize_with = "de_size")]
    pub max_object_size: u64,
    /// Serve a stale cached copy for this many seconds past its TTL when the origin
    /// fails (0: off), like `Cache-Control: stale-if-error`.
    pub stale_if_error_secs: u64,
    /// Origin body bytes all fetches together may hold while they are read whole
    /// (objects up to the buffer limit, chunked bodies as they arrive, watermark
    /// objects included); a fetch that does not fit waits up to the read timeout, then
    /// 503. Streamed bodies pass through chunk by chunk and are not charged. 0: off.
    /// Default 512 MiB (sixteen bodies at the default 32 MiB cache object limit).
    #[serde(deserialize_with = "de_size")]
    pub max_bytes_in_flight: u64,
}

impl Default for OriginClientConfig {
    fn default() -> Self {
        let d = crate::origin::http::OriginConfig::default();
        OriginClientConfig {
            connect_timeout_ms: millis(d.connect_timeout),
            read_timeout_ms: millis(d.read_timeout),
            max_attempts: d.max_attempts,
            retry_base_delay_ms: millis(d.retry_base_delay),
            retry_max_delay_ms: millis(d.retry_max_delay),
            max_object_size: 4 << 30,
            stale_if_error_secs: 0,
            max_bytes_in_flight: d.max_bytes_in_flight,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl OriginClientConfig {
    /// The origin module's view of these settings.
    pub fn to_origin_config(&self) -> crate::origin::http::OriginConfig {
        crate::origin::http::OriginConfig {
            connect_timeout: Duration::from_millis(self.connect_timeout_ms),
            read_timeout: Duration::from_millis(self.read_timeout_ms),
            max_attempts: self.max_attempts.max(1),
            retry_base_delay: Duration::from_millis(self.retry_base_delay_ms),
            retry_max_delay: Duration::from_millis(self.retry_max_delay_ms),
            max_object_bytes: self.max_object_size,
            max_bytes_in_flight: self.max_bytes_in_flight,
            ..crate::origin::http::OriginConfig::default()
        }
    }
}

/// Credentials for OSS or S3 origins given in the config file. When absent, the
/// standard environment variables are used (`ALIBABA_CLOUD_*`, `AWS_*`).
#[derive(Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CredentialsConfig {
    /// AccessKeyId.
    pub access_key_id: Option<String>,
    /// AccessKeySecret.
    pub access_key_secret: Option<String>,
    /// STS security token for temporary credentials.
    pub security_token: Option<String>,
}

impl std::fmt::Debug for CredentialsConfig {
    // Never print secrets, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialsConfig")
            .field("access_key_id", &self.access_key_id.as_ref().map(|_| "<set>"))
            .field("access_key_secret", &self.access_key_secret.as_ref().map(|_| "<redacted>"))
            .field("security_token", &self.security_token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl CredentialsConfig {
    /// The file's credentials, for both OSS and S3 origins, if complete.
    pub fn to_origin_credentials(&self) -> Option<crate::origin::OriginCredentials> {
        let (Some(id), Some(secret)) = (&self.access_key_id, &self.access_key_secret) else {
            return None;
        };
        let mut creds = crate::origin::sign::Credentials::new(id.clone(), secret.clone());
        creds.security_token = self.security_token.clone();
        Some(crate::origin::OriginCredentials { oss: Some(creds.clone()), aws: Some(creds) })
    }
}

/// Admin API settings (`[admin]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// AccessKey pairs that may sign CDN API calls (`/?Action=...` on the admin
    /// listener); empty (the default) refuses every such call. Also
    /// `IMGEDGE_ADMIN_ACCESS_KEYS=id:secret[,id:secret]`, which replaces the file's.
    pub access_keys: Vec<AccessKeyConfig>,
}

/// One AccessKey pair (`[[admin.access_keys]]`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKeyConfig {
    /// AccessKeyId.
    pub id: String,
    /// AccessKeySecret.
    pub secret: String,
}

impl std::fmt::Debug for AccessKeyConfig {
    // Never print the secret, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessKeyConfig").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

impl AdminConfig {
    /// Parses `id:secret[,id:secret]` (the `IMGEDGE_ADMIN_ACCESS_KEYS` form; a
    /// secret may contain `:` but not `,`).
    ///
    /// # Errors
    /// A message naming the bad entry's position (never the secret).
    pub fn parse_access_keys(text: &str) -> Result<Vec<AccessKeyConfig>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .enumerate()
            .map(|(i, entry)| match entry.split_once(':') {
                Some((id, secret)) => Ok(AccessKeyConfig { id: id.trim().to_owned(), secret: secret.to_owned() }),
                None => Err(format!("IMGEDGE_ADMIN_ACCESS_KEYS entry {}: expected id:secret", i + 1)),
            })
            .collect()
    }
}

/// Image processing limits (see `process::Limits`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest source object in bytes.
    #[serde(deserialize_with = "de_size")]
    pub max_source_bytes: u64,
    /// Largest source image in pixels.
    pub max_source_pixels: u64,
    /// Largest output image in pixels.
    pub max_output_pixels: u64,
    /// Most frames of an animated source.
    pub max_frames: u32,
    /// Most operations in one chain.
    pub max_ops: usize,
    /// Largest `blur` cost, pixels × kernel taps (2r+1); more is 400 ImageTooLarge.
    pub max_filter_cost: u64,
    /// libwebp method (encoder effort) for WebP outputs, 0-6. Default 2: at fit 400, 4
    /// saves ~5 % bytes at equal SSIMULACRA2 for ~2.3x the encode time, 6 ~8 % for ~4.7x
    /// (BENCHMARKS.md). Outputs with transparency use at most 3.
    pub webp_method: u8,
    /// Working memory all decodes together may use (pixels x bytes per pixel x frames
    /// kept, plus codec buffers, estimated from the header and charged before queueing);
    /// one decode above it is 400 ImageTooLarge, decodes that do not fit together wait
    /// for their deadline, then 503. 0 turns the budget off. Default 1 GiB.
    #[serde(deserialize_with = "de_size")]
    pub decode_memory: u64,
}

/// Default `limits.decode_memory`: four 16 MP RGBA decodes with their copies and
/// coefficient buffers fit; one 250 MP source at 4 bytes a pixel does not.
pub const DEFAULT_DECODE_MEMORY: u64 = 1 << 30;

impl Default for LimitsConfig {
    fn default() -> Self {
        let l = Limits::default();
        LimitsConfig {
            max_source_bytes: l.max_source_bytes,
            max_source_pixels: l.max_source_pixels,
            max_output_pixels: l.max_output_pixels,
            max_frames: l.max_frames,
            max_ops: l.max_ops,
            max_filter_cost: l.max_filter_cost,
            webp_method: l.webp_method,
            decode_memory: DEFAULT_DECODE_MEMORY,
        }
    }
}

impl LimitsConfig {
    /// The engine's view of these limits.
    pub fn to_limits(&self) -> Limits {
        Limits {
            max_source_bytes: self.max_source_bytes,
            max_source_pixels: self.max_source_pixels,
            max_output_pixels: self.max_output_pixels,
            max_frames: self.max_frames,
            max_ops: self.max_ops,
            max_filter_cost: self.max_filter_cost,
            webp_method: self.webp_method,
        }
    }
}

/// CPU worker pool.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WorkersConfig {
    /// Concurrent CPU jobs (0: one per core).
    pub threads: usize,
    /// Jobs that may wait for a worker before new ones get 503.
    pub queue: usize,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig { threads: 0, queue: 64 }
    }
}

impl WorkersConfig {
    /// Worker count with 0 resolved to the number of cores.
    pub fn effective_threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

impl Config {
    /// Checks cross-field rules; the message names the bad key.
    ///
    /// # Errors
    /// A message naming the offending key.
    pub fn validate(&self) -> Result<(), String> {
        if self.cache.size == 0 {
            return Err("cache.size must be greater than 0".into());
        }
        if self.cache.max_object_size > self.cache.size {
            return Err("cache.max_object_size must not exceed cache.size".into());
        }
        for (i, rule) in self.cache.ttl_rules.iter().enumerate() {
            if !(1..=99).contains(&rule.weight) {
                return Err(format!("cache.ttl_rules[{i}].weight must be 1..99"));
            }
            if rule.kind == TtlRuleKind::Directory && !rule.value.starts_with('/') {
                return Err(format!("cache.ttl_rules[{i}].value must start with '/'"));
            }
        }
        for (i, c) in self.style_delimiters.char_indices() {
            if !STYLE_DELIMITERS.contains(c) {
                return Err(format!(
                    "style_delimiters: {c:?} is not a style delimiter (use any of {STYLE_DELIMITERS:?}, as OSS offers them)"
                ));
            }
            if self.style_delimiters[..i].contains(c) {
                return Err(format!("style_delimiters: {c:?} is listed twice"));
            }
        }
        for f in &self.auto_format {
            match f.as_str() {
                "webp" | "avif" => {}
                other => return Err(format!("auto_format: unknown format {other:?} (webp, avif)")),
            }
        }
        if self.cache.disk_dir.is_some() && self.cache.disk_size < MIN_DISK_CACHE_SIZE {
            return Err("cache.disk_size must be at least 16MiB".into());
        }
        let in_flight = self.origin_client.max_bytes_in_flight;
        if in_flight > 0 && in_flight < self.cache.max_object_size.max(self.limits.max_source_bytes) {
            // A body the proxy must buffer whole could never get its bytes.
            return Err("origin_client.max_bytes_in_flight must be 0 or at least cache.max_object_size and \
                        limits.max_source_bytes"
                .into());
        }
        if self.workers.queue == 0 {
            return Err("workers.queue must be at least 1".into());
        }
        if self.limits.max_ops == 0 {
            return Err("limits.max_ops must be at least 1".into());
        }
        if self.limits.webp_method > 6 {
            return Err("limits.webp_method must be 0..6 (libwebp's method)".into());
        }
        if self.request_timeout_ms == 0 {
            return Err("request_timeout_ms must be greater than 0".into());
        }
        if !self.admin_listen.ip().is_loopback() && self.purge_token.is_none() {
            return Err(format!(
                "admin_listen {} is not a loopback address: set purge_token (or IMGEDGE_PURGE_TOKEN) so purge and prefetch need it",
                self.admin_listen
            ));
        }
        crate::access::Access::new(&self.sites)?;
        self.tls.validate()?;
        let mut ids = std::collections::HashSet::new();
        for (i, key) in self.admin.access_keys.iter().enumerate() {
            if key.id.is_empty() || key.secret.is_empty() {
                return Err(format!("admin.access_keys[{i}]: id and secret must not be empty"));
            }
            if !ids.insert(key.id.as_str()) {
                return Err(format!("admin.access_keys[{i}]: id {:?} is listed twice", key.id));
            }
        }
        if let Some(t) = &self.purge_token {
            if t.is_empty() {
                return Err("purge_token must not be empty".into());
            }
        }
        self.cluster.validate()?;
        Ok(())
    }

    /// True when auto-format may serve WebP.
    pub fn auto_webp(&self) -> bool {
        self.auto_format.iter().any(|f| f == "webp")
    }

    /// True when auto-format may serve AVIF.
    pub fn auto_avif(&self) -> bool {
        self.auto_format.iter().any(|f| f == "avif")
    }

    /// Whole-request deadline.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

/// The characters OSS offers as style delimiters (spec §1.1).
pub const STYLE_DELIMITERS: &str = "-_/!";

/// Parses a size such as `512MiB`, `64MB`, `1G`, `4096` (bytes).
///
/// # Errors
/// A message for an unknown unit or a number that does not fit.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("size {s:?} has no number"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => return Err(format!("size {s:?} has unknown unit {other:?}")),
    };
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

fn de_size<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        N(u64),
        S(String),
    }
    match Raw::deserialize(d)? {
        Raw::N(n) => Ok(n),
        Raw::S(s) => parse_size(&s).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("64mb"), Ok(64 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12XB").is_err());
        assert!(parse_size("MiB").is_err());
    }

    #[test]
    fn toml_rejects_unknown_keys_by_name() {
        let err = toml::from_str::<Config>("cache_sise = 1").unwrap_err().to_string();
        assert!(err.contains("cache_sise"), "{err}");
        let err = toml::from_str::<Config>("[cache]\nsizee = 1").unwrap_err().to_string();
        assert!(err.contains("sizee"), "{err}");
    }

    #[test]
    fn toml_reads_rules_and_sizes() {
        let c: Config = toml::from_str(
            "[cache]\nsize = \"64MiB\"\n[[cache.ttl_rules]]\nkind = \"extension\"\nvalue = \"jpg,png\"\nttl_secs = 60\nweight = 90\n",
        )
        .unwrap();
        assert_eq!(c.cache.size, 64 << 20);
        assert_eq!(c.cache.ttl_rules[0].weight, 90);
        c.validate().unwrap();
    }

    #[test]
    fn webp_method_defaults_to_2_and_stays_within_libwebps_range() {
        let c: Config = toml::from_str("[limits]\nwebp_method = 6\n").unwrap();
        assert_eq!((Config::default().limits.webp_method, c.limits.to_limits().webp_method), (2, 6));
        c.validate().unwrap();
        let c: Config = toml::from_str("[limits]\nwebp_method = 7\n").unwrap();
        assert!(c.validate().unwrap_err().contains("limits.webp_method"));
    }

    #[test]
    fn credentials_never_show_in_debug_output() {
        let c: Config =
            toml::from_str("[credentials]\naccess_key_id = \"LTAIid\"\naccess_key_secret = \"topsecret\"\n").unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("topsecret") && !text.contains("LTAIid"), "{text}");
        assert!(c.credentials.to_origin_credentials().is_some());
    }

    #[test]
    fn public_admin_listener_needs_a_token() {
        let mut c = Config { admin_listen: "0.0.0.0:8081".parse().unwrap(), ..Config::default() };
        assert!(c.validate().unwrap_err().contains("purge_token"));
        c.purge_token = Some("t".into());
        assert!(c.validate().is_ok());
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn admin_access_keys_come_from_toml_or_the_env_form() {
        let c: Config = toml::from_str("[[admin.access_keys]]\nid = \"LTAIa\"\nsecret = \"s:1\"\n").unwrap();
        assert_eq!((c.admin.access_keys[0].id.as_str(), c.admin.access_keys[0].secret.as_str()), ("LTAIa", "s:1"));
        assert!(!format!("{c:?}").contains("s:1"));
        c.validate().unwrap();
        let keys = AdminConfig::parse_access_keys("a:x, b:y:z").unwrap();
        assert_eq!(
            keys.iter().map(|k| (k.id.as_str(), k.secret.as_str())).collect::<Vec<_>>(),
            [("a", "x"), ("b", "y:z")]
        );
        assert!(AdminConfig::parse_access_keys("a:x,nosecret").unwrap_err().contains("entry 2"));
        let mut c = Config::default();
        c.admin.access_keys = AdminConfig::parse_access_keys("a:x,a:y").unwrap();
        assert!(c.validate().unwrap_err().contains("twice"));
        c.admin.access_keys = AdminConfig::parse_access_keys("a:").unwrap();
        assert!(c.validate().is_err());
    }

    #[test]
    fn ttl_rule_flags_parse() {
        let r = TtlRule::parse_flag("dir:/img/:600:70").unwrap();
        assert_eq!(r.kind, TtlRuleKind::Directory);
        assert_eq!((r.value.as_str(), r.ttl_secs, r.weight), ("/img/", 600, 70));
        assert!(TtlRule::parse_flag("foo:x:1").is_err());
        assert!(TtlRule::parse_flag("ext:jpg").is_err());
    }
}
