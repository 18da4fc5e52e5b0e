//! The `[tls]` section: the HTTPS listener, its default certificate, what an unknown SNI
//! gets, the handshake deadline, whether the cache key splits by scheme, and ACME.
//! Per-site certificates live in `[[sites]]` (`tls_cert`, `tls_key`).

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::PathBuf;

/// `[tls]`. Off unless `listen` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// HTTPS listener address (`--tls-listen`); None: no HTTPS.
    pub listen: Option<SocketAddr>,
    /// Default certificate chain, PEM (`--tls-cert`): served to clients whose SNI names
    /// no site certificate (and to clients without SNI).
    pub cert: Option<PathBuf>,
    /// The default certificate's private key, PEM (PKCS#8, PKCS#1 or SEC1; RSA or ECDSA).
    pub key: Option<PathBuf>,
    /// Serve HTTPS only: no plain HTTP listener (`--tls-only`). Default false.
    pub only: bool,
    /// What a client whose SNI names no configured certificate gets: `"default"` (the
    /// default certificate, as nginx's `default_server`) or `"reject"` (the handshake
    /// fails with `unrecognized_name`). Default `"default"`.
    pub unknown_sni: UnknownSni,
    /// A TLS handshake not finished within this many milliseconds is dropped (it holds
    /// a connection slot meanwhile). Default 10000.
    pub handshake_timeout_ms: u64,
    /// Split the cache key by scheme (the same URL over HTTP and HTTPS cached twice).
    /// Default false: one object serves both, as the CDN does.
    pub cache_key_scheme: bool,
    /// Certificates from an ACME CA (`[tls.acme]`).
    pub acme: AcmeConfig,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            listen: None,
            cert: None,
            key: None,
            only: false,
            unknown_sni: UnknownSni::Default,
            handshake_timeout_ms: 10_000,
            cache_key_scheme: false,
            acme: AcmeConfig::default(),
        }
    }
}

/// The unknown-SNI policy.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum UnknownSni {
    /// Serve the default certificate.
    Default,
    /// Fail the handshake.
    Reject,
}

/// `[tls.acme]`: off unless `domains` is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// Names to obtain one certificate for (`--acme-domain`, repeatable).
    pub domains: Vec<String>,
    /// Contact address given to the CA (`--acme-email`).
    pub email: Option<String>,
    /// The CA's directory URL (`--acme-directory`). Default Let's Encrypt production.
    pub directory: String,
    /// Where the account key and the certificates are kept (`--acme-state`); created
    /// 0700, files written 0600. Default `acme-state`.
    pub state_dir: PathBuf,
    /// A root certificate (PEM) to trust for the directory's own HTTPS instead of the
    /// public roots, for private or test CAs (`--acme-ca-root`).
    pub ca_root: Option<PathBuf>,
    /// Renew when less than this fraction of the certificate's lifetime is left
    /// (Let's Encrypt's 90 days: at 30 days left). Default 0.33.
    pub renew_fraction: f64,
    /// After a failed or rate-limited order, the next try is this many seconds later
    /// (doubling up to an hour); the certificate already held is served meanwhile.
    /// Default 60.
    pub retry_secs: u64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            domains: Vec::new(),
            email: None,
            directory: "https://acme-v02.api.letsencrypt.org/directory".into(),
            state_dir: PathBuf::from("acme-state"),
            ca_root: None,
            renew_fraction: 0.33,
            retry_secs: 60,
        }
    }
}

impl TlsConfig {
    /// Checks the combinations: key with cert, a listener for the certificates, something
    /// to serve when only HTTPS is on.
    ///
    /// # Errors
    /// A message naming the key to change.
    pub fn validate(&self) -> Result<(), String> {
        if self.cert.is_some() != self.key.is_some() {
            return Err("tls.cert and tls.key must be set together".into());
        }
        if self.only && self.listen.is_none() {
            return Err("tls.only needs tls.listen".into());
        }
        if !self.acme.domains.is_empty() && self.listen.is_none() {
            return Err("tls.acme.domains need tls.listen (the challenge is answered there)".into());
        }
        if !(self.acme.renew_fraction > 0.0 && self.acme.renew_fraction <= 1.0) {
            return Err("tls.acme.renew_fraction must be in (0, 1]".into());
        }
        if self.handshake_timeout_ms == 0 {
            return Err("tls.handshake_timeout_ms must be above 0".into());
        }
        Ok(())
    }
}
