//! HTTPS at the edge: the TLS listener's configuration ([`config`]), certificates from
//! PEM ([`certs`]), the choice of certificate by SNI ([`resolver`]), the handshake
//! ([`listener`]), certificates from an ACME CA ([`acme`]) and the per-site HTTPS
//! policy: HTTP → HTTPS redirects and HSTS ([`policy`]).
//!
//! rustls does all TLS (ring provider; TLS 1.2 and 1.3 only; ALPN h2 and http/1.1;
//! its default session tickets and resumption); instant-acme all ACME. After the
//! handshake the stream is served by `server.rs` exactly as a plain one.
//!
//! Keys are never logged: log lines name files and SHA-256 fingerprints of
//! certificates only.

pub mod acme;
pub mod certs;
pub mod config;
pub mod listener;
pub mod policy;
pub mod resolver;

pub use config::{AcmeConfig, TlsConfig, UnknownSni};
pub use listener::Tls;

/// The scheme a request arrived with (the access log's `scheme`, the redirect and HSTS
/// decisions, and the cache key when `tls.cache_key_scheme` is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Plain HTTP (or h2c).
    Http,
    /// HTTP over TLS.
    Https,
}

impl Scheme {
    /// `"http"` or `"https"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}
