//! Certificates from PEM: a chain and its private key (RSA or ECDSA, PKCS#8, PKCS#1 or
//! SEC1) into a rustls `CertifiedKey`, checked to belong together. Parsing is
//! rustls-pki-types' `PemObject`; signing keys are ring's through rustls.
//!
//! Error messages name the file and what is wrong with it, never key material.

use rustls::crypto::ring::sign::any_supported_type;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::Path;
use std::sync::Arc;

/// Loads `cert` (PEM chain, leaf first) and `key` (PEM private key).
///
/// # Errors
/// A one-line message naming the file: unreadable, no certificate, no or unsupported
/// key, or a key that does not match the leaf certificate.
pub fn load(cert: &Path, key: &Path) -> Result<Arc<CertifiedKey>, String> {
    let chain = read_chain(cert)?;
    let key_der = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("{}: no usable PEM private key ({})", key.display(), pem_error(&e)))?;
    from_parts(chain, &key_der).map_err(|e| format!("{} with {}: {e}", cert.display(), key.display()))
}

/// Builds a `CertifiedKey` from PEM text (ACME's issued chain and key).
///
/// # Errors
/// As [`load`], without file names.
pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("certificate chain: {}", pem_error(&e)))?;
    if chain.is_empty() {
        return Err("no certificate in the chain".into());
    }
    let key =
        PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| format!("private key: {}", pem_error(&e)))?;
    from_parts(chain, &key)
}

/// A certificate and key used as they are, without the match check: the tls-alpn-01
/// answer, whose critical acmeIdentifier extension webpki (rightly) does not parse.
///
/// # Errors
/// An unsupported key.
pub fn unchecked(cert: CertificateDer<'static>, key: &PrivateKeyDer<'_>) -> Result<Arc<CertifiedKey>, String> {
    let signer = any_supported_type(key).map_err(|e| format!("unsupported private key ({e})"))?;
    Ok(Arc::new(CertifiedKey::new(vec![cert], signer)))
}

fn read_chain(cert: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| format!("{}: cannot be read ({})", cert.display(), pem_error(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: bad PEM ({})", cert.display(), pem_error(&e)))?;
    if chain.is_empty() {
        return Err(format!("{}: no PEM certificate in it", cert.display()));
    }
    Ok(chain)
}

fn from_parts(chain: Vec<CertificateDer<'static>>, key: &PrivateKeyDer<'_>) -> Result<Arc<CertifiedKey>, String> {
    let signer = any_supported_type(key).map_err(|e| format!("unsupported private key ({e})"))?;
    let certified = CertifiedKey::new(chain, signer);
    // A key for another certificate would fail every handshake: refuse it here.
    certified.keys_match().map_err(|e| format!("the key does not match the certificate ({e})"))?;
    Ok(Arc::new(certified))
}

/// pki-types' PEM errors, without echoing file content.
fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::Io(io) => io.to_string(),
        E::NoItemsFound => "nothing found".into(),
        E::MissingSectionEnd { .. } | E::IllegalSectionStart { .. } => "malformed PEM section".into(),
        E::Base64Decode(_) => "bad base64".into(),
        _ => "unreadable PEM".into(),
    }
}

/// SHA-256 of the leaf certificate, hex: what the logs name a certificate by.
pub fn fingerprint(key: &CertifiedKey) -> String {
    use sha2::Digest as _;
    let leaf = key.cert.first().map_or(&[][..], |c| c.as_ref());
    hex::encode(sha2::Sha256::digest(leaf))
}

/// The leaf's (notBefore, notAfter) as Unix seconds, for renewal decisions only (a
/// certificate whose dates cannot be read counts as due).
pub fn validity(key: &CertifiedKey) -> Option<(i64, i64)> {
    let leaf = key.cert.first()?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref()).ok()?;
    let v = cert.validity();
    Some((v.not_before.timestamp(), v.not_after.timestamp()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair(alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap().self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn ecdsa_and_rsa_keys_load_and_mismatches_are_refused() {
        let (c1, k1) = pair(&rcgen::PKCS_ECDSA_P256_SHA256);
        assert!(from_pem(&c1, &k1).is_ok());
        let (c2, k2) = pair(&rcgen::PKCS_ECDSA_P384_SHA384);
        assert!(from_pem(&c2, &k2).is_ok());
        let e = from_pem(&c1, &k2).unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(!e.contains("PRIVATE"), "{e}");
        assert!(from_pem("junk", &k1).is_err());
        assert!(from_pem(&c1, "junk").is_err());
    }

    #[test]
    fn rsa_key_files_load() {
        // rcgen (ring) cannot generate RSA keys: a fixed 2048-bit test pair.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/tls");
        let loaded = load(&dir.join("rsa.crt"), &dir.join("rsa.key")).unwrap();
        assert_eq!(fingerprint(&loaded).len(), 64);
    }

    #[test]
    fn validity_reads_the_leaf_dates() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2024, 2, 29);
        params.not_after = rcgen::date_time_ymd(2051, 1, 1);
        let cert = params.self_signed(&key).unwrap();
        let certified = unchecked(cert.der().clone(), &PrivateKeyDer::Pkcs8(key.serialize_der().into())).unwrap();
        assert_eq!(validity(&certified), Some((1_709_164_800, 2_556_144_000)));
        let junk = unchecked(
            CertificateDer::from(b"\x30\x05junk".to_vec()),
            &PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        );
        assert!(junk.map(|k| validity(&k)).ok().flatten().is_none());
    }
}
