//! The HTTPS side of a connection: the rustls server configuration (TLS 1.2 and 1.3,
//! ALPN h2 then http/1.1, certificates by SNI) and the handshake under a deadline.
//! `server.rs` accepts the TCP connection (under its connection limit) and serves the
//! stream this returns like a plain one.

use crate::access::SiteConfig;
use crate::tls::certs;
use crate::tls::config::TlsConfig;
use crate::tls::resolver::{CertSet, SniResolver, ACME_TLS_ALPN};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// The TLS listener's state, shared by every connection.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    resolver: Arc<SniResolver>,
    handshake_timeout: Duration,
    /// `tls.cache_key_scheme`.
    pub cache_key_scheme: bool,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("handshake_timeout", &self.handshake_timeout).finish_non_exhaustive()
    }
}

impl Tls {
    /// Loads every configured certificate and builds the server configuration.
    ///
    /// # Errors
    /// A certificate or key that does not load (one line naming the file), or a
    /// configuration rustls refuses.
    pub fn new(config: &TlsConfig, sites: &[SiteConfig]) -> Result<Tls, String> {
        let resolver = Arc::new(SniResolver::new(load_set(config, sites)?, config.unknown_sni));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut server = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| format!("TLS configuration: {e}"))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&resolver) as Arc<dyn rustls::server::ResolvesServerCert>);
        // Server preference: h2 first. acme-tls/1 is answered only for a pending
        // tls-alpn-01 challenge (the resolver has no other certificate for it).
        server.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            resolver,
            handshake_timeout: Duration::from_millis(config.handshake_timeout_ms),
            cache_key_scheme: config.cache_key_scheme,
        })
    }

    /// Re-reads the certificate files (SIGHUP): on success new handshakes use the new
    /// set and connections already open keep theirs; on any failure nothing changes.
    ///
    /// # Errors
    /// The first certificate that does not load, naming its file.
    pub fn reload(&self, config: &TlsConfig, sites: &[SiteConfig]) -> Result<usize, String> {
        let set = load_set(config, sites)?;
        let count = set.by_name.len() + usize::from(set.default.is_some());
        self.resolver.replace(set);
        Ok(count)
    }

    /// The certificate resolver (ACME adds its certificates and challenges there).
    pub fn resolver(&self) -> &Arc<SniResolver> {
        &self.resolver
    }

    /// The TLS handshake on an accepted connection, within the handshake timeout.
    /// `None`: it failed, timed out, or was a tls-alpn-01 validation (which ends with
    /// the handshake).
    pub async fn handshake(&self, tcp: TcpStream) -> Option<TlsStream<TcpStream>> {
        let mut stream = match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "TLS handshake failed");
                return None;
            }
            Err(_) => {
                tracing::debug!("TLS handshake not finished within the handshake timeout; closing");
                return None;
            }
        };
        if stream.get_ref().1.alpn_protocol() == Some(ACME_TLS_ALPN) {
            let _ = stream.shutdown().await;
            return None;
        }
        Some(stream)
    }
}

/// The default certificate and each site's, loaded from their files.
fn load_set(config: &TlsConfig, sites: &[SiteConfig]) -> Result<CertSet, String> {
    let mut set = CertSet::default();
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        let loaded = certs::load(cert, key)?;
        tracing::info!(cert = %cert.display(), sha256 = %certs::fingerprint(&loaded), "TLS default certificate loaded");
        set.default = Some(loaded);
    }
    for (i, site) in sites.iter().enumerate() {
        let (Some(cert), Some(key)) = (&site.tls_cert, &site.tls_key) else { continue };
        let loaded = certs::load(cert, key).map_err(|e| format!("sites[{i}]: {e}"))?;
        tracing::info!(cert = %cert.display(), sha256 = %certs::fingerprint(&loaded), "TLS site certificate loaded");
        for host in &site.hosts {
            if host == "*" {
                if set.default.is_none() {
                    set.default = Some(Arc::clone(&loaded));
                }
            } else {
                set.by_name.insert(host.to_ascii_lowercase(), Arc::clone(&loaded));
            }
        }
    }
    Ok(set)
}
