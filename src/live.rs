//! The settings that change without a restart (SIGHUP in `main.rs`): TTL rules, styles,
//! sites and their access rules, the purge token, the CDN API's AccessKey pairs and the
//! access-log switch, as one immutable [`Live`] snapshot.
//!
//! A reload builds a whole new snapshot from a validated config and swaps it in with
//! one atomic store; a request loads the snapshot once (one atomic load on the hit
//! path) and so sees all the old settings or all the new ones. Requests in flight
//! keep the snapshot they loaded. Everything else in [`crate::Config`] (listeners,
//! origin, cache sizes, workers, limits, ...) is fixed at start-up: a reload that
//! changes it keeps the old value and names the key ([`restart_only_changes`]).

use crate::access::Access;
use crate::cache::ttl::TtlPolicy;
use crate::cdn_api::sign::Verifier;
use crate::config::Config;
use crate::process::{ChainMemo, Limits};
use arc_swap::ArcSwap;

/// Distinct `x-oss-process` values whose parse is kept (a few hundred bytes each).
const CHAIN_MEMO_ENTRIES: u64 = 10_000;

/// One generation of the live settings; never changed once built.
#[derive(Debug)]
pub struct Live {
    /// TTL decisions (`cache.ttl_rules`, `ignore_origin_no_cache`, `not_found_ttl_secs`,
    /// `etag_only_ttl_secs`).
    pub ttl: TtlPolicy,
    /// Site selection and access rules, URL-auth keys (`[[sites]]`).
    pub access: Access,
    /// Parsed `x-oss-process` chains with this generation's `[styles]` (a new
    /// generation starts an empty memo, so no chain parsed with old styles survives).
    pub chains: ChainMemo,
    /// The admin API's bearer token.
    pub purge_token: Option<String>,
    /// CDN API signatures against `[[admin.access_keys]]` (the nonce store is shared
    /// across generations, so a reload does not reopen replays).
    pub verifier: Verifier,
    /// `access_log`: whether per-request lines are written (applied by `main.rs` to the
    /// log filter).
    pub access_log: bool,
}

impl Live {
    /// The first generation, from a validated config (validate() already compiled the
    /// sites once, so they compile here).
    pub fn new(config: &Config, limits: &Limits) -> Live {
        let access = Access::new(&config.sites).unwrap_or_default();
        Live::with(config, limits, access, Verifier::new(&config.admin.access_keys))
    }

    /// The next generation from `config`, keeping `self`'s nonce store.
    ///
    /// # Errors
    /// A `[[sites]]` entry that does not compile; nothing is built.
    pub fn next(&self, config: &Config, limits: &Limits) -> Result<Live, String> {
        let access = Access::new(&config.sites)?;
        Ok(Live::with(config, limits, access, self.verifier.with_keys(&config.admin.access_keys)))
    }

    fn with(config: &Config, limits: &Limits, access: Access, verifier: Verifier) -> Live {
        Live {
            ttl: TtlPolicy::new(&config.cache),
            access,
            chains: ChainMemo::new(config.styles.clone(), limits.clone(), CHAIN_MEMO_ENTRIES)
                .with_style_delimiters(&config.style_delimiters),
            purge_token: config.purge_token.clone(),
            verifier,
            access_log: config.access_log,
        }
    }
}

/// The swappable cell (`App::live`).
pub type LiveCell = ArcSwap<Live>;

/// The config keys that differ between `old` and `new` but only take effect at
/// start-up (the top-level name, or `section.key` for the sections that are partly
/// live). Compared through their `Debug` text, which every section has.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut changed = Vec::new();
    let mut check = |name: &'static str, differ: bool| {
        if differ {
            changed.push(name);
        }
    };
    check("listen", old.listen != new.listen);
    check("admin_listen", old.admin_listen != new.admin_listen);
    check("origin", old.origin != new.origin);
    check("cache.size", old.cache.size != new.cache.size);
    check("cache.max_object_size", old.cache.max_object_size != new.cache.max_object_size);
    check("cache.decoded_size", old.cache.decoded_size != new.cache.decoded_size);
    check("cache.ignore_params", old.cache.ignore_params != new.cache.ignore_params);
    check("cache.lock_timeout_ms", old.cache.lock_timeout_ms != new.cache.lock_timeout_ms);
    check("cache.client_cache_control", old.cache.client_cache_control != new.cache.client_cache_control);
    check("cache.disk_dir", old.cache.disk_dir != new.cache.disk_dir);
    check("cache.disk_size", old.cache.disk_size != new.cache.disk_size);
    check("limits", differs(&old.limits, &new.limits));
    check("workers", differs(&old.workers, &new.workers));
    check("auto_format", old.auto_format != new.auto_format);
    check("cors", differs(&old.cors, &new.cors));
    check("http", differs(&old.http, &new.http));
    check("origin_client", differs(&old.origin_client, &new.origin_client));
    let (a, b) = (&old.credentials, &new.credentials);
    check(
        "credentials",
        (&a.access_key_id, &a.access_key_secret, &a.security_token)
            != (&b.access_key_id, &b.access_key_secret, &b.security_token),
    );
    check("request_timeout_ms", old.request_timeout_ms != new.request_timeout_ms);
    check("shutdown_grace_ms", old.shutdown_grace_ms != new.shutdown_grace_ms);
    check("fonts_dir", old.fonts_dir != new.fonts_dir);
    // The certificate files are re-read on reload (`tls::Tls::reload`); the listener,
    // its policies and ACME are fixed.
    let (a, b) = (&old.tls, &new.tls);
    check("tls.listen", a.listen != b.listen);
    check("tls.only", a.only != b.only);
    check("tls.unknown_sni", a.unknown_sni != b.unknown_sni);
    check("tls.handshake_timeout_ms", a.handshake_timeout_ms != b.handshake_timeout_ms);
    check("tls.cache_key_scheme", a.cache_key_scheme != b.cache_key_scheme);
    check("tls.acme", a.acme != b.acme);
    // The ring, the Redis link and the forward client are built once at start-up.
    let (a, b) = (&old.cluster, &new.cluster);
    check("cluster", differs(a, b) || a.secret != b.secret || a.hot_copy_ttl_secs != b.hot_copy_ttl_secs);
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_restart_keys_are_named() {
        let old = Config::default();
        let mut new = old.clone();
        new.purge_token = Some("t".into());
        new.cache.not_found_ttl_secs += 1;
        new.styles = toml::from_str("thumb = \"image/resize,w_10\"").unwrap_or_default();
        assert!(restart_only_changes(&old, &new).is_empty());
        new.listen = "127.0.0.1:1".parse().unwrap();
        new.cache.size += 1;
        new.workers.threads += 1;
        assert_eq!(restart_only_changes(&old, &new), ["listen", "cache.size", "workers"]);
        let mut new = old.clone();
        new.cluster.peers = vec!["b=http://127.0.0.1:1".into()];
        new.cache.disk_size += 1;
        assert_eq!(restart_only_changes(&old, &new), ["cache.disk_size", "cluster"]);
    }

    #[test]
    fn a_new_generation_keeps_the_nonce_store_and_takes_new_settings() {
        let mut config = Config::default();
        let limits = config.limits.to_limits();
        let first = Live::new(&config, &limits);
        assert!(first.purge_token.is_none());
        config.purge_token = Some("new".into());
        let second = first.next(&config, &limits).unwrap();
        assert_eq!(second.purge_token.as_deref(), Some("new"));
        assert!(first.verifier.shares_nonces_with(&second.verifier));
    }
}
