//! Which certificate a handshake gets, by SNI: a pending tls-alpn-01 challenge (ALPN
//! `acme-tls/1`), else a site's certificate, else an ACME certificate, else the default
//! (or, with `unknown_sni = "reject"`, no certificate: the handshake fails).
//!
//! The configured certificates are one immutable map behind an `ArcSwap`: a reload
//! builds a whole new map and swaps it in, so a handshake sees the old set or the new,
//! and connections already open keep the certificate they were made with.

use crate::tls::config::UnknownSni;
use arc_swap::ArcSwap;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The ALPN protocol of RFC 8737 (tls-alpn-01).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

/// One generation of configured certificates.
#[derive(Debug, Default)]
pub struct CertSet {
    /// `tls.cert` / `tls.key`.
    pub default: Option<Arc<CertifiedKey>>,
    /// Lower-case host name → site certificate.
    pub by_name: HashMap<String, Arc<CertifiedKey>>,
}

/// The server's certificate resolver.
#[derive(Debug)]
pub struct SniResolver {
    configured: ArcSwap<CertSet>,
    acme: ArcSwap<HashMap<String, Arc<CertifiedKey>>>,
    challenges: Mutex<HashMap<String, Arc<CertifiedKey>>>,
    unknown: UnknownSni,
}

impl SniResolver {
    /// A resolver over `set`.
    pub fn new(set: CertSet, unknown: UnknownSni) -> SniResolver {
        SniResolver {
            configured: ArcSwap::from_pointee(set),
            acme: ArcSwap::from_pointee(HashMap::new()),
            challenges: Mutex::new(HashMap::new()),
            unknown,
        }
    }

    /// New handshakes use `set` from now on.
    pub fn replace(&self, set: CertSet) {
        self.configured.store(Arc::new(set));
    }

    /// Serves `key` for each of `names` (an ACME certificate), replacing what was there.
    pub fn set_acme(&self, names: &[String], key: &Arc<CertifiedKey>) {
        let mut next = HashMap::clone(&self.acme.load());
        for name in names {
            next.insert(name.to_ascii_lowercase(), Arc::clone(key));
        }
        self.acme.store(Arc::new(next));
    }

    /// Answers tls-alpn-01 for `name` with `key` until [`SniResolver::clear_challenge`].
    pub fn set_challenge(&self, name: &str, key: Arc<CertifiedKey>) {
        if let Ok(mut c) = self.challenges.lock() {
            c.insert(name.to_ascii_lowercase(), key);
        }
    }

    /// Stops answering the challenge for `name`.
    pub fn clear_challenge(&self, name: &str) {
        if let Ok(mut c) = self.challenges.lock() {
            c.remove(&name.to_ascii_lowercase());
        }
    }

    fn pick(&self, name: Option<&str>, acme_alpn: bool) -> Option<Arc<CertifiedKey>> {
        let name = name.map(str::to_ascii_lowercase);
        if acme_alpn {
            // Only a challenge answers acme-tls/1 (RFC 8737 §3: never a real certificate).
            let challenges = self.challenges.lock().ok()?;
            return name.and_then(|n| challenges.get(&n).cloned());
        }
        let set = self.configured.load();
        if let Some(n) = &name {
            if let Some(k) = set.by_name.get(n) {
                return Some(Arc::clone(k));
            }
            if let Some(k) = self.acme.load().get(n) {
                return Some(Arc::clone(k));
            }
        }
        match (self.unknown, &name) {
            // Without SNI (an IP address URL) there is no name to be unknown.
            (UnknownSni::Reject, Some(_)) => None,
            _ => set.default.clone(),
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        self.pick(hello.server_name(), acme)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> Arc<CertifiedKey> {
        let k = rcgen::KeyPair::generate().unwrap();
        let c = rcgen::CertificateParams::new(vec![name.into()]).unwrap().self_signed(&k).unwrap();
        crate::tls::certs::from_pem(&c.pem(), &k.serialize_pem()).unwrap()
    }

    #[test]
    fn sni_picks_site_then_acme_then_default_or_nothing() {
        let (d, s, a, ch) = (key("d"), key("s.test"), key("a.test"), key("a.test"));
        let set = || CertSet { default: Some(Arc::clone(&d)), by_name: [("s.test".into(), Arc::clone(&s))].into() };
        let r = SniResolver::new(set(), UnknownSni::Default);
        r.set_acme(&["a.test".into()], &a);
        assert!(Arc::ptr_eq(&r.pick(Some("S.test"), false).unwrap(), &s));
        assert!(Arc::ptr_eq(&r.pick(Some("a.test"), false).unwrap(), &a));
        assert!(Arc::ptr_eq(&r.pick(Some("x.test"), false).unwrap(), &d));
        assert!(Arc::ptr_eq(&r.pick(None, false).unwrap(), &d));
        // acme-tls/1 gets the challenge only.
        assert!(r.pick(Some("a.test"), true).is_none());
        r.set_challenge("a.test", Arc::clone(&ch));
        assert!(Arc::ptr_eq(&r.pick(Some("a.test"), true).unwrap(), &ch));
        r.clear_challenge("a.test");
        assert!(r.pick(Some("a.test"), true).is_none());

        let strict = SniResolver::new(set(), UnknownSni::Reject);
        assert!(strict.pick(Some("x.test"), false).is_none());
        assert!(strict.pick(Some("s.test"), false).is_some());
        assert!(strict.pick(None, false).is_some());
    }
}
