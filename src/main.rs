//! The `imgedge` binary: command line → Config → logging → runtime → `imgedge::serve`.

use anyhow::{bail, Context};
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
}

/// Defaults < config file < `IMGEDGE_*` environment < flags. Returns the config, whether
/// only to check it, and the names of `IMGEDGE_*` variables that set nothing (warned
/// about once logging is up).
fn load_config(cli: Cli) -> anyhow::Result<(Config, bool, Vec<String>)> {
    let check_only = cli.check_config;
    let health_check = cli.health_check;
    let (mut table, source) = match &cli.config {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
            let table = text.parse::<toml::Table>().with_context(|| format!("config file {}", path.display()))?;
            (table, format!("config file {}", path.display()))
        }
        None => (toml::Table::new(), "configuration".to_owned()),
    };
    let env = imgedge::config_env::overlay::<Config>(&mut table, std::env::vars())
        .map_err(|why| anyhow::anyhow!("environment variable {}{why}", imgedge::config_env::PREFIX))?;
    let mut config: Config = toml::Value::Table(table).try_into().with_context(|| source)?;
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
        config.admin.access_keys =
            imgedge::config::AdminConfig::parse_access_keys(&keys).map_err(|e| anyhow::anyhow!(e))?;
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
    if let Err(msg) = config.validate() {
        bail!("invalid configuration: {msg}");
    }
    if health_check {
        std::process::exit(i32::from(!admin_is_healthy(config.admin_listen)));
    }
    Ok((config, check_only, env.unknown))
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

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutdown signal received; draining");
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
fn log_filter(access_log: bool) -> anyhow::Result<tracing_subscriber::EnvFilter> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    Ok(if access_log { filter } else { filter.add_directive("imgedge::access=off".parse()?) })
}

/// Swaps the log filter in place (a reload turning the access log on or off).
type LogSwitch = tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

/// SIGHUP: re-read the config file and environment (flags still win) and apply what can
/// change live (see `imgedge::live`). A config that does not parse or validate is
/// refused with one error line and the running one stays; restart-only keys that
/// differ get one warning line and keep their old values.
#[cfg(unix)]
async fn reload_on_hangup(mut hangups: tokio::signal::unix::Signal, cli: Cli, app: Arc<App>, log: LogSwitch) {
    while hangups.recv().await.is_some() {
        // The file is small; reading it on the reactor for one signal is fine.
        let applied = load_config(cli.clone()).and_then(|(config, _, _)| {
            let fixed = app.reload(&config).map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
            Ok((config, fixed))
        });
        match applied {
            Err(e) => {
                // One line: TOML errors span several (source excerpt, caret).
                let why = format!("{e:#}");
                let why: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
                tracing::error!("reload refused, the running configuration stays: {}", why.join(" "));
            }
            Ok((config, fixed)) => {
                if let Err(e) = log_filter(config.access_log).map(|f| log.reload(f)) {
                    tracing::warn!("reload: the log filter was not changed: {e:#}");
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

fn main() -> anyhow::Result<()> {
    cap_malloc_arenas();
    let cli = Cli::parse();
    let (config, check_only, unknown_env) = load_config(cli.clone())?;
    let (filter, log_switch) = tracing_subscriber::reload::Layer::new(log_filter(config.access_log)?);
    {
        use tracing_subscriber::layer::SubscriberExt as _;
        use tracing_subscriber::util::SubscriberInitExt as _;
        tracing_subscriber::registry()
            .with(filter)
            .with(tracing_subscriber::fmt::layer().with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())))
            .init();
    }
    for name in &unknown_env {
        tracing::warn!(variable = %name, "{name} names no configuration key; it is ignored");
    }
    let credentials = config.credentials.to_origin_credentials().unwrap_or_else(OriginCredentials::from_env);
    let origin = Origin::from_spec_with(&config.origin, &credentials, &config.origin_client.to_origin_config())
        .context("--origin")?;
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
        Some(dir) => imgedge::process::Fonts::load_dir(dir)
            .with_context(|| format!("loading watermark fonts from fonts_dir {}", dir.display()))?,
        None => imgedge::process::Fonts::embedded().context("the embedded watermark fonts")?,
    };
    let fonts = Arc::new(fonts);
    if check_only {
        println!("configuration OK: origin {}", origin.describe());
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let public = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding --listen {}", config.listen))?;
        let admin = tokio::net::TcpListener::bind(config.admin_listen)
            .await
            .with_context(|| format!("binding --admin-listen {}", config.admin_listen))?;
        // SIGHUP is caught from here on (before the "serving" line scripts wait for), so
        // a reload signal never kills the process.
        #[cfg(unix)]
        let hangups =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("listening for SIGHUP")?;
        // Log the bound addresses (port 0 picks one), so scripts and tests can find them.
        tracing::info!(
            listen = %public.local_addr()?,
            admin = %admin.local_addr()?,
            origin = %origin.describe(),
            "imgedge serving"
        );
        let app = Arc::new(App::new(config, origin).with_fonts(fonts));
        #[cfg(unix)]
        tokio::spawn(reload_on_hangup(hangups, cli, Arc::clone(&app), log_switch));
        #[cfg(not(unix))]
        let _ = (cli, log_switch);
        imgedge::serve(public, admin, app, shutdown_signal()).await?;
        tracing::info!("stopped");
        Ok(())
    })
}
