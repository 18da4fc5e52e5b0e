//! The `imgedge` binary: command line → Config → logging → runtime → `imgedge::serve`.

use clap::Parser;
use imgedge::config::{parse_size, TtlRule};
use imgedge::origin::{Origin, OriginCredentials};
use imgedge::{App, Config};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

/// On-the-fly image processing edge proxy: a caching CDN node plus an
/// OSS-compatible `x-oss-process` image service. Flags override the config file.
#[derive(Debug, Clone, Parser)]
#[command(name = "imgedge", version)]
struct Cli {
    /// TOML config file (every flag has a key there; flags win).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Public listener address [default: 127.0.0.1:8080].
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Admin listener address for purge, prefetch and health [default: 127.0.0.1:8081].
    #[arg(long, value_name = "ADDR")]
    admin_listen: Option<SocketAddr>,
    /// Origin: a folder path [default: fixtures], `oss://BUCKET?endpoint=...&region=...
    /// [&signature=v1|v4][&addressing=virtual|path|cname]`, `s3://BUCKET?endpoint=...&region=...`
    /// or `http(s)://host/prefix`. OSS/S3 credentials come from the config file's
    /// [credentials] or ALIBABA_CLOUD_ACCESS_KEY_ID/_SECRET/ALIBABA_CLOUD_SECURITY_TOKEN,
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN.
    #[arg(long, value_name = "ORIGIN")]
    origin: Option<String>,
    /// Response cache size in bytes, e.g. 512MiB [default: 512MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    cache_size: Option<u64>,
    /// Largest object that is cached; larger ones stream through, e.g. 32MiB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_cacheable_size: Option<u64>,
    /// Directory of the disk cache tier under the memory cache; entries survive
    /// restarts [default: none, memory only].
    #[arg(long, value_name = "DIR")]
    disk_cache: Option<PathBuf>,
    /// Disk cache tier size, e.g. 20GiB (at least 16MiB) [default: 1GiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    disk_cache_size: Option<u64>,
    /// Decoded-source cache size in bytes of pixels, 0 to disable [default: 32MiB].
    #[arg(long, value_name = "SIZE", value_parser = parse_size, env = "IMGEDGE_DECODED_CACHE_SIZE")]
    decoded_cache_size: Option<u64>,
    /// Bearer token required by the admin API.
    #[arg(long, value_name = "TOKEN", env = "IMGEDGE_PURGE_TOKEN", hide_env_values = true)]
    purge_token: Option<String>,
    /// Cache rule KIND:VALUE:TTL[:WEIGHT], KIND = ext | dir | path; repeatable.
    /// Example: --ttl-rule ext:jpg,png:86400:90 --ttl-rule dir:/tmp/:0:95
    #[arg(long = "ttl-rule", value_name = "RULE", value_parser = TtlRule::parse_flag)]
    ttl_rules: Vec<TtlRule>,
    /// Cache 2xx responses even when the origin sends no-cache/no-store.
    #[arg(long)]
    ignore_origin_no_cache: bool,
    /// CPU worker threads for image work (0 = one per core).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// Serve WebP to clients that accept it when a chain has no `format` (`webp`).
    #[arg(long, value_name = "FORMATS", value_delimiter = ',')]
    auto_format: Vec<String>,
    /// Turn off the per-request access log (config `access_log = false`).
    #[arg(long)]
    no_access_log: bool,
    /// Folder with the four watermark font files to use instead of the embedded ones.
    #[arg(long, value_name = "DIR")]
    fonts_dir: Option<PathBuf>,
    /// Ask the running server's admin listener (from the same configuration) for
    /// `/healthz` and exit 0 when it answers 200, 1 otherwise: a container HEALTHCHECK
    /// with nothing else in the image.
    #[arg(long)]
    health_check: bool,
    /// Validate the configuration (file, flags, origin spelling) and exit.
    #[arg(long)]
    check_config: bool,
    /// HTTPS listener address (config `tls.listen`); off by default.
    #[arg(long, value_name = "ADDR")]
    tls_listen: Option<SocketAddr>,
    /// Default certificate chain for HTTPS, PEM (`tls.cert`).
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// Private key of --tls-cert, PEM; RSA or ECDSA (`tls.key`).
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS only, without the plain HTTP listener (`tls.only`).
    #[arg(long)]
    tls_only: bool,
    /// A name to obtain an ACME certificate for; repeatable (`tls.acme.domains`).
    #[arg(long = "acme-domain", value_name = "DOMAIN")]
    acme_domains: Vec<String>,
    /// Contact e-mail for the ACME account (`tls.acme.email`).
    #[arg(long, value_name = "EMAIL")]
    acme_email: Option<String>,
    /// ACME directory URL [default: Let's Encrypt] (`tls.acme.directory`).
    #[arg(long, value_name = "URL")]
    acme_directory: Option<String>,
    /// Folder for the ACME account key and certificates, kept 0700 [default: acme-state]
    /// (`tls.acme.state_dir`).
    #[arg(long, value_name = "DIR")]
    acme_state: Option<PathBuf>,
    /// Root certificate (PEM) to trust for the ACME directory's own HTTPS, for private or
    /// test CAs (`tls.acme.ca_root`).
    #[arg(long, value_name = "FILE")]
    acme_ca_root: Option<PathBuf>,
    /// Join a cluster whose membership and purge stream live in this Redis:
    /// redis://HOST:PORT/DB (config `cluster.redis`).
    #[arg(long = "cluster", value_name = "URL")]
    cluster_redis: Option<String>,
    /// This node's id in the cluster (config `cluster.node_id`).
    #[arg(long, value_name = "ID")]
    node_id: Option<String>,
    /// Where peers reach this node's public listener, http://HOST:PORT
    /// (config `cluster.advertise`).
    #[arg(long, value_name = "URL")]
    cluster_advertise: Option<String>,
    /// Secret authenticating forwards between nodes; prefer IMGEDGE_CLUSTER_SECRET
    /// (a flag shows in the process list).
    #[arg(long, value_name = "SECRET", hide_env_values = true)]
    cluster_secret: Option<String>,
    /// Static cluster members id=http://HOST:PORT, comma-separated (config `cluster.peers`).
    #[arg(long, value_name = "ID=URL", value_delimiter = ',')]
    peers: Vec<String>,
    /// Folder keeping this node's purge-stream cursor (config `cluster.state_dir`).
    #[arg(long, value_name = "DIR")]
    cluster_state: Option<PathBuf>,
}

/// A start-up failure: the one line `main` prints after `imgedge: `, and the exit code
/// (2: the configuration is wrong, 1: the run failed).
#[derive(Debug)]
struct Fail {
    code: u8,
    message: String,
}

impl Fail {
    /// The configuration is wrong: exit 2.
    fn config(message: impl Into<String>) -> Fail {
        Fail { code: 2, message: message.into() }
    }

    /// Something failed at run time: exit 1.
    fn runtime(message: impl Into<String>) -> Fail {
        Fail { code: 1, message: message.into() }
    }
}

/// Where each configuration value came from, so an error can name what to change.
struct Sources {
    /// The config file, if one was given.
    file: Option<PathBuf>,
    /// Dotted key paths the file sets.
    file_keys: std::collections::HashSet<String>,
    /// `(variable, dotted path)` of the `IMGEDGE_*` variables applied.
    env: Vec<(String, String)>,
    /// Long flags given on the command line (`--origin`).
    flags: Vec<&'static str>,
}

impl Sources {
    /// "--origin", "IMGEDGE_ORIGIN", "origin in the config file x.toml" or "the default;
    /// set --origin, IMGEDGE_ORIGIN or origin in the config file", for the key `path`
    /// (dotted) whose flag is `flag`.
    fn of(&self, path: &str, flag: Option<&'static str>) -> String {
        if let Some(flag) = flag.filter(|f| self.flags.contains(f)) {
            return flag.to_owned();
        }
        if let Some((var, _)) = self.env.iter().find(|(_, p)| p == path) {
            return format!("from {var}");
        }
        if self.file_keys.contains(path) {
            let file = self.file.as_ref().map_or_else(String::new, |f| format!(" {}", f.display()));
            return format!("{path} in the config file{file}");
        }
        let var = format!("{}{}", imgedge::config_env::PREFIX, path.replace('.', "_").to_uppercase());
        match flag {
            Some(flag) => format!("the default; set {flag}, {var} or {path} in the config file"),
            None => format!("the default; set {var} or {path} in the config file"),
        }
    }
}

/// Every dotted key path a TOML table sets (`cache.size`, `origin`).
fn key_paths(table: &toml::Table, prefix: &str, out: &mut std::collections::HashSet<String>) {
    for (name, value) in table {
        let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
        if let toml::Value::Table(inner) = value {
            key_paths(inner, &path, out);
        }
        out.insert(path);
    }
}

/// A TOML error as one line: its message and where (`line 3, column 7`).
fn toml_error_line(e: &impl std::fmt::Display) -> String {
    // toml's Display is several lines: a "TOML parse error at line L, column C" header,
    // the source line with a caret, then the message. Keep the position and the message.
    let text = e.to_string();
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let message = text.lines().map(str::trim).rfind(|l| !l.is_empty() && !l.starts_with('|') && !l.contains('^'));
    match first.strip_prefix("TOML parse error at ") {
        Some(position) => format!("{} ({position})", message.unwrap_or(first)),
        None => text.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join("; "),
    }
}

/// Defaults < config file < `IMGEDGE_*` environment < flags. Returns the config, whether
/// only to check it, the names of `IMGEDGE_*` variables that set nothing (warned
/// about once logging is up) and where the values came from.
fn load_config(cli: Cli) -> Result<(Config, bool, Vec<String>, Sources), Fail> {
    let check_only = cli.check_config;
    let health_check = cli.health_check;
    let cli_tls = cli.clone();
    let mut sources =
        Sources { file: cli.config.clone(), file_keys: Default::default(), env: Vec::new(), flags: Vec::new() };
    let mut table = match &cli.config {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                Fail::config(format!(
                    "config file {} (--config) cannot be read: {e}. Check the path and its permissions",
                    path.display()
                ))
            })?;
            let table = text.parse::<toml::Table>().map_err(|e| {
                Fail::config(format!(
                    "config file {} is not valid TOML: {}. Fix that line",
                    path.display(),
                    toml_error_line(&e)
                ))
            })?;
            // Deserialised from the text once more, for an error that names its line (the
            // table built below has lost the positions).
            if let Err(e) = toml::from_str::<Config>(&text) {
                return Err(Fail::config(format!(
                    "config file {} has a bad value: {}. Fix that line",
                    path.display(),
                    toml_error_line(&e)
                )));
            }
            key_paths(&table, "", &mut sources.file_keys);
            table
        }
        None => toml::Table::new(),
    };
    let env = imgedge::config_env::overlay::<Config>(&mut table, std::env::vars()).map_err(|why| {
        Fail::config(format!(
            "environment variable {}{why}. Change or unset that variable",
            imgedge::config_env::PREFIX
        ))
    })?;
    sources.env.clone_from(&env.applied);
    let mut config: Config = toml::Value::Table(table).try_into().map_err(|e| {
        // The file alone deserialised above: the variables broke it.
        Fail::config(format!(
            "an {}* variable has a bad value: {}. Fix that variable",
            imgedge::config_env::PREFIX,
            toml_error_line(&e)
        ))
    })?;
    let flag = |given: bool, name: &'static str, flags: &mut Vec<&'static str>| {
        if given {
            flags.push(name);
        }
    };
    flag(cli.listen.is_some(), "--listen", &mut sources.flags);
    flag(cli.admin_listen.is_some(), "--admin-listen", &mut sources.flags);
    flag(cli.origin.is_some(), "--origin", &mut sources.flags);
    flag(cli.fonts_dir.is_some(), "--fonts-dir", &mut sources.flags);
    flag(cli.disk_cache.is_some(), "--disk-cache", &mut sources.flags);
    if let Some(v) = cli.listen {
        config.listen = v;
    }
    if let Some(v) = cli.admin_listen {
        config.admin_listen = v;
    }
    if let Some(v) = cli.origin {
        config.origin = v;
    }
    if let Some(v) = cli.cache_size {
        config.cache.size = v;
    }
    if let Some(v) = cli.disk_cache {
        config.cache.disk_dir = Some(v);
    }
    if let Some(v) = cli.disk_cache_size {
        config.cache.disk_size = v;
    }
    if let Some(v) = cli.decoded_cache_size {
        config.cache.decoded_size = v;
    }
    if let Some(v) = cli.max_cacheable_size {
        config.cache.max_object_size = v;
    }
    if cli.purge_token.is_some() {
        config.purge_token = cli.purge_token;
    }
    // Secrets stay out of the command line: AccessKey pairs come from the file or here.
    if let Ok(keys) = std::env::var("IMGEDGE_ADMIN_ACCESS_KEYS") {
        config.admin.access_keys = imgedge::config::AdminConfig::parse_access_keys(&keys)
            .map_err(|e| Fail::config(format!("IMGEDGE_ADMIN_ACCESS_KEYS: {e}. Use id:secret[,id:secret]")))?;
    }
    if !cli.ttl_rules.is_empty() {
        config.cache.ttl_rules = cli.ttl_rules;
    }
    if cli.no_access_log {
        config.access_log = false;
    }
    if cli.ignore_origin_no_cache {
        config.cache.ignore_origin_no_cache = true;
    }
    if !cli.auto_format.is_empty() {
        config.auto_format = cli.auto_format;
    }
    if cli.fonts_dir.is_some() {
        config.fonts_dir = cli.fonts_dir;
    }
    if let Some(v) = cli.workers {
        config.workers.threads = v;
    }
    apply_tls_flags(&cli_tls, &mut config.tls, &mut sources.flags);
    if cli.cluster_redis.is_some() {
        config.cluster.redis = cli.cluster_redis;
    }
    if cli.node_id.is_some() {
        config.cluster.node_id = cli.node_id;
    }
    if cli.cluster_advertise.is_some() {
        config.cluster.advertise = cli.cluster_advertise;
    }
    if cli.cluster_secret.is_some() {
        config.cluster.secret = cli.cluster_secret;
    }
    if !cli.peers.is_empty() {
        config.cluster.peers = cli.peers;
    }
    if cli.cluster_state.is_some() {
        config.cluster.state_dir = cli.cluster_state;
    }
    if let Err(msg) = config.validate() {
        let place = match &sources.file {
            Some(f) => {
                format!("in {} or the flag or {}* variable that sets it", f.display(), imgedge::config_env::PREFIX)
            }
            None => format!("with its flag, {}* variable or config file key", imgedge::config_env::PREFIX),
        };
        return Err(Fail::config(format!("invalid configuration: {msg}. Change it {place}")));
    }
    if health_check {
        std::process::exit(i32::from(!admin_is_healthy(config.admin_listen)));
    }
    Ok((config, check_only, env.unknown, sources))
}

/// The HTTPS and ACME flags over `[tls]` (flags win).
fn apply_tls_flags(cli: &Cli, tls: &mut imgedge::tls::TlsConfig, flags: &mut Vec<&'static str>) {
    if let Some(v) = cli.tls_listen {
        tls.listen = Some(v);
        flags.push("--tls-listen");
    }
    if let Some(v) = &cli.tls_cert {
        tls.cert = Some(v.clone());
        flags.push("--tls-cert");
    }
    if let Some(v) = &cli.tls_key {
        tls.key = Some(v.clone());
        flags.push("--tls-key");
    }
    if cli.tls_only {
        tls.only = true;
    }
    if !cli.acme_domains.is_empty() {
        tls.acme.domains.clone_from(&cli.acme_domains);
    }
    if cli.acme_email.is_some() {
        tls.acme.email.clone_from(&cli.acme_email);
    }
    if let Some(v) = &cli.acme_directory {
        tls.acme.directory.clone_from(v);
    }
    if let Some(v) = &cli.acme_state {
        tls.acme.state_dir.clone_from(v);
    }
    if cli.acme_ca_root.is_some() {
        tls.acme.ca_root.clone_from(&cli.acme_ca_root);
    }
}

/// Opens the origin, or says which value to change and why it does not work.
fn open_origin(config: &Config, credentials: &OriginCredentials, sources: &Sources) -> Result<Origin, Fail> {
    let spec = &config.origin;
    let from = sources.of("origin", Some("--origin"));
    if !spec.contains("://") {
        let path = std::path::Path::new(spec);
        if !path.exists() {
            return Err(Fail::config(format!(
                "origin folder {spec:?} ({from}) does not exist. Name an existing folder, or an oss://, s3:// or http(s):// origin"
            )));
        }
        if !path.is_dir() {
            return Err(Fail::config(format!("origin {spec:?} ({from}) is not a folder. Name a folder of images")));
        }
    }
    Origin::from_spec_with(spec, credentials, &config.origin_client.to_origin_config()).map_err(|e| {
        let why = e.to_string();
        let why = why.strip_prefix("origin configuration: ").unwrap_or(&why);
        Fail::config(format!(
            "origin {spec:?} ({from}) cannot be used: {why}. Use a folder, \
             oss://BUCKET?endpoint=...&region=..., s3://BUCKET?endpoint=...&region=... or http(s)://host/prefix"
        ))
    })
}

/// Binds a listener, or says which value to change.
async fn bind(
    addr: SocketAddr,
    key: &str,
    flag: &'static str,
    sources: &Sources,
) -> Result<tokio::net::TcpListener, Fail> {
    tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        let from = sources.of(key, Some(flag));
        let (why, fix) = match e.kind() {
            std::io::ErrorKind::AddrInUse => {
                ("address in use", format!("stop the other server or choose another {flag}"))
            }
            std::io::ErrorKind::PermissionDenied => (
                "permission denied",
                format!("use a port above 1023 or grant CAP_NET_BIND_SERVICE, or choose another {flag}"),
            ),
            std::io::ErrorKind::AddrNotAvailable => {
                ("no such local address", format!("use an address of this machine in {flag}"))
            }
            _ => ("cannot listen", format!("choose another {flag}")),
        };
        let detail = if matches!(e.kind(), std::io::ErrorKind::AddrInUse | std::io::ErrorKind::PermissionDenied) {
            String::new()
        } else {
            format!(" ({e})")
        };
        let source = if from == flag { String::new() } else { format!(" ({from})") };
        Fail::config(format!("binding {flag} {addr}{source}: {why}{detail}; {fix}"))
    })
}

/// `GET /healthz` on the admin listener (an unspecified bind address is reached on
/// loopback), within two seconds.
fn admin_is_healthy(admin: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let mut addr = admin;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() { [127, 0, 0, 1].into() } else { std::net::Ipv6Addr::LOCALHOST.into() });
    }
    let timeout = std::time::Duration::from_secs(2);
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, timeout) else { return false };
    let _ = stream.set_read_timeout(Some(timeout));
    let _ = stream.set_write_timeout(Some(timeout));
    if stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// SIGTERM and SIGINT, registered before the "imgedge serving" line. tokio installs a
/// signal's handler when `signal()` is called; that used to happen inside the shutdown
/// future, first polled by the accept loop after serving had begun, so a SIGTERM in
/// between met the default action and killed the node instead of draining it (seen once
/// in CI: a disk-tier test's node exited by signal 15 under load).
#[cfg(unix)]
struct StopSignals {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

#[cfg(unix)]
impl StopSignals {
    fn register() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self { term: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {},
            _ = self.interrupt.recv() => {},
        }
        tracing::info!("shutdown signal received; draining");
    }
}

/// Without Unix signals: Ctrl-C only.
#[cfg(not(unix))]
struct StopSignals;

#[cfg(not(unix))]
impl StopSignals {
    fn register() -> std::io::Result<Self> {
        Ok(Self)
    }

    async fn wait(self) {
        let _ = tokio::signal::ctrl_c().await;
        tracing::info!("shutdown signal received; draining");
    }
}

/// glibc gives each thread that allocates its own arena (up to 8 per core), and every
/// arena keeps the memory its thread freed: the decode worker's, each blocking thread's
/// that read a source, the runtime's that copied a body. Two arenas cut the peer run's
/// peak RSS by about 10 MB at the same speed. `MALLOC_ARENA_MAX` or `GLIBC_TUNABLES`
/// in the environment win.
fn cap_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() && std::env::var_os("GLIBC_TUNABLES").is_none() {
        // SAFETY: runs first thing in main, before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// The log filter: `RUST_LOG` (default `info`), with the access log off when configured.
fn log_filter(access_log: bool) -> tracing_subscriber::EnvFilter {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    match (access_log, "imgedge::access=off".parse()) {
        (false, Ok(off)) => filter.add_directive(off),
        _ => filter,
    }
}

/// Swaps the log filter in place (a reload turning the access log on or off).
type LogSwitch = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// Two outputs on stdout: the server's events as usual, and the access log's lines
/// bare (no timestamp, level or target: the line carries its own, as nginx's does).
/// `RUST_LOG` and `access_log = false` filter both, through a filter a reload can swap.
fn init_logging(access_log: bool) -> LogSwitch {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::prelude::*;
    let (filter, switch) = tracing_subscriber::reload::Layer::new(log_filter(access_log));
    let access = imgedge::access_log::TARGET;
    let events = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_filter(filter_fn(move |m| m.target() != access));
    let lines = tracing_subscriber::fmt::layer()
        .without_time()
        .with_level(false)
        .with_target(false)
        .with_ansi(false)
        .with_filter(filter_fn(move |m| m.target() == access));
    tracing_subscriber::registry().with(filter).with(events).with(lines).init();
    switch
}

/// SIGHUP: re-read the config file and environment (flags still win) and apply what can
/// change live (see `imgedge::live`). A config that does not parse or validate is
/// refused with one error line and the running one stays; restart-only keys that
/// differ get one warning line and keep their old values.
#[cfg(unix)]
async fn reload_on_hangup(
    mut hangups: tokio::signal::unix::Signal,
    cli: Cli,
    app: Arc<App>,
    log: LogSwitch,
    tls: Option<imgedge::tls::Tls>,
) {
    while hangups.recv().await.is_some() {
        // The file is small; reading it on the reactor for one signal is fine.
        let applied = load_config(cli.clone()).map_err(|fail| fail.message).and_then(|(config, ..)| {
            let fixed = app.reload(&config).map_err(|e| format!("invalid configuration: {e}"))?;
            Ok((config, fixed))
        });
        match applied {
            Err(why) => {
                // One line: TOML errors span several (source excerpt, caret).
                let why: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                tracing::error!("reload refused, the running configuration stays: {}", why.join(" "));
            }
            Ok((config, fixed)) => {
                // New certificate files: all load or none is taken (the running ones stay).
                if let Some(tls) = &tls {
                    match tls.reload(&config.tls, &config.sites) {
                        Ok(n) => tracing::info!("TLS certificates reloaded ({n})"),
                        Err(e) => tracing::error!("TLS certificates not reloaded, the running ones stay: {e}"),
                    }
                }
                if let Err(e) = log.reload(log_filter(config.access_log)) {
                    tracing::warn!("reload: the log filter was not changed: {e}");
                }
                if !fixed.is_empty() {
                    tracing::warn!(
                        "reload: {} changed but take effect only at restart; the running values stay",
                        fixed.join(", ")
                    );
                }
                tracing::info!("configuration reloaded");
            }
        }
    }
}

fn main() -> std::process::ExitCode {
    cap_malloc_arenas();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(fail) => {
            // One line for a person: what is wrong, why, what to change. No error chain,
            // no backtrace (RUST_BACKTRACE is for panics, not for a wrong path).
            eprintln!("imgedge: {}", fail.message);
            std::process::ExitCode::from(fail.code)
        }
    }
}

fn run(cli: Cli) -> Result<(), Fail> {
    let (config, check_only, unknown_env, sources) = load_config(cli.clone())?;
    let log_switch = init_logging(config.access_log);
    for name in &unknown_env {
        tracing::warn!(variable = %name, "{name} names no configuration key; it is ignored");
    }
    let credentials = config.credentials.to_origin_credentials().unwrap_or_else(OriginCredentials::from_env);
    let origin = open_origin(&config, &credentials, &sources)?;
    let unsigned = match config.origin.split_once("://").map(|(scheme, _)| scheme) {
        Some("oss") => credentials.oss.is_none().then_some("ALIBABA_CLOUD_ACCESS_KEY_ID / _SECRET"),
        Some("s3") => credentials.aws.is_none().then_some("AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY"),
        _ => None,
    };
    if let Some(names) = unsigned {
        // Anonymous reads work for public buckets only; a private one answers 403 to all.
        tracing::warn!(
            "origin {} has no credentials: requests go unsigned (set {names}, or [credentials] in the config file)",
            origin.describe()
        );
    }
    // Fonts load once; a missing or broken file stops start-up here, not a request.
    let fonts = match &config.fonts_dir {
        Some(dir) => imgedge::process::Fonts::load_dir(dir).map_err(|e| {
            Fail::config(format!(
                "watermark fonts in {} ({}) cannot be loaded: {e}. Put the four font files there or unset fonts_dir",
                dir.display(),
                sources.of("fonts_dir", Some("--fonts-dir"))
            ))
        })?,
        None => imgedge::process::Fonts::embedded()
            .map_err(|e| Fail::runtime(format!("the embedded watermark fonts are broken: {e}. Rebuild imgedge")))?,
    };
    let fonts = Arc::new(fonts);
    if check_only {
        println!("configuration OK: origin {}", origin.describe());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Fail::runtime(format!("starting the runtime: {e}. Check the process limits (threads, files)")))?;
    runtime.block_on(async move {
        let public = match config.tls.only {
            true => None,
            false => Some(bind(config.listen, "listen", "--listen", &sources).await?),
        };
        let admin = bind(config.admin_listen, "admin_listen", "--admin-listen", &sources).await?;
        let tls = match config.tls.listen {
            Some(addr) => {
                let tls = imgedge::tls::Tls::new(&config.tls, &config.sites)
                    .map_err(|e| Fail::config(format!("HTTPS certificates: {e}. Fix the file or the tls.* setting")))?;
                let listener = bind(addr, "tls.listen", "--tls-listen", &sources).await?;
                imgedge::tls::acme::start(config.tls.acme.clone(), Arc::clone(tls.resolver()))
                    .map_err(|e| Fail::config(format!("{e}. Fix --acme-state")))?;
                Some((listener, tls))
            }
            None => None,
        };
        let local = |l: &tokio::net::TcpListener| l.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let local_opt = |l: Option<&tokio::net::TcpListener>| l.map(local).unwrap_or_else(|| "-".into());
        // SIGTERM/SIGINT and SIGHUP are caught from here on (before the "serving" line
        // scripts wait for), so neither a stop nor a reload signal kills the process.
        let stop = StopSignals::register().map_err(|e| Fail::runtime(format!("listening for SIGTERM: {e}")))?;
        #[cfg(unix)]
        let hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|e| Fail::runtime(format!("listening for SIGHUP: {e}")))?;
        // The disk tier recovers before the first request is accepted.
        let disk = open_disk_cache(&config, &sources).await?;
        // Log the bound addresses (port 0 picks one), so scripts and tests can find them.
        tracing::info!(
            listen = %local_opt(public.as_ref()),
            admin = %local(&admin),
            tls = %local_opt(tls.as_ref().map(|(l, _)| l)),
            origin = %origin.describe(),
            "imgedge serving"
        );
        let cluster = match config.cluster.enabled() {
            true => Some(imgedge::cluster::Cluster::connect(&config.cluster).await.map_err(|e| {
                Fail::runtime(format!("joining the cluster: {e}. Start Redis or fix --cluster / [cluster]"))
            })?),
            false => None,
        };
        let mut app = App::new(config, origin).with_fonts(fonts);
        if let Some(cluster) = cluster {
            app = app.with_cluster(cluster);
        }
        let app = Arc::new(app);
        if let Some(disk) = disk {
            app.cache.attach_disk(disk);
        }
        // Purges this node missed are replayed (to the disk tier too) before the listeners
        // accept anything.
        imgedge::cluster::start(&app)
            .await
            .map_err(|e| Fail::runtime(format!("cluster start-up: {e}. Check that Redis is reachable")))?;
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(
            hangups,
            cli,
            Arc::clone(&app),
            log_switch,
            tls.as_ref().map(|(_, t)| t.clone()),
        ));
        #[cfg(not(unix))]
        let _ = (cli, log_switch);
        // On SIGTERM the node first leaves the cluster (peers stop routing new misses to
        // it at their next heartbeat), then drains what is in flight.
        let cluster = app.cluster.clone();
        let shutdown = async move {
            stop.wait().await;
            if let Some(cluster) = cluster {
                cluster.leave().await;
            }
        };
        imgedge::serve_with_tls(public, admin, tls, Arc::clone(&app), shutdown)
            .await
            .map_err(|e| Fail::runtime(format!("serving stopped: {e}")))?;
        if let Some(disk) = app.cache.disk() {
            // Flushes what is queued, so a SIGTERM keeps every completed write.
            disk.close().await;
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Opens the disk cache tier when one is configured (recovering what it holds).
async fn open_disk_cache(
    config: &imgedge::Config,
    sources: &Sources,
) -> Result<Option<Arc<imgedge::cache::disk::Disk>>, Fail> {
    let Some(dir) = &config.cache.disk_dir else {
        return Ok(None);
    };
    let disk = imgedge::cache::disk::Disk::open(dir, config.cache.disk_size).await.map_err(|e| {
        Fail::config(format!(
            "the disk cache ({}) cannot be opened: {e}. Give a writable directory or unset it",
            sources.of("cache.disk_dir", Some("--disk-cache"))
        ))
    })?;
    tracing::info!(
        dir = %dir.display(),
        size = disk.capacity(),
        open_ms = disk.open_time.as_millis() as u64,
        "disk cache open"
    );
    Ok(Some(Arc::new(disk)))
}
