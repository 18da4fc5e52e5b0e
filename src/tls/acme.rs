//! Certificates from an ACME (RFC 8555) CA with instant-acme: one certificate for
//! `tls.acme.domains`, validated by tls-alpn-01 (RFC 8737) on the HTTPS listener itself,
//! stored in the state directory, served by SNI and renewed before it expires.
//!
//! The state directory (created 0700) holds `account.json` (the ACME account's key and
//! id) and `<name>.crt` / `<name>.key` (the chain and its private key), all written 0600
//! through a temporary file and a rename, so a crash never leaves half a key. A failed,
//! refused or rate-limited order changes nothing: the certificate already held keeps
//! being served and the order is tried again later (`retry_secs`, doubling to an hour).

use crate::tls::certs;
use crate::tls::config::AcmeConfig;
use crate::tls::resolver::SniResolver;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount, NewOrder, OrderStatus,
    RetryPolicy,
};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// Longest sleep between checks (a clock jump or a changed file is noticed within it).
const MAX_SLEEP: Duration = Duration::from_secs(3600);

/// Starts the order-and-renew loop (a no-op without domains).
///
/// # Errors
/// The state directory cannot be created or given mode 0700.
pub fn start(config: AcmeConfig, resolver: Arc<SniResolver>) -> Result<(), String> {
    if config.domains.is_empty() {
        return Ok(());
    }
    private_dir(&config.state_dir)?;
    tokio::spawn(run(config, resolver));
    Ok(())
}

async fn run(config: AcmeConfig, resolver: Arc<SniResolver>) {
    let files = CertFiles::new(&config);
    let mut held = match files.load() {
        Ok(key) => {
            resolver.set_acme(&config.domains, &key);
            tracing::info!(sha256 = %certs::fingerprint(&key), "ACME certificate loaded from the state directory");
            Some(key)
        }
        Err(e) => {
            tracing::info!("no stored ACME certificate ({e}); ordering one");
            None
        }
    };
    let mut account: Option<Account> = None;
    let mut backoff = Duration::from_secs(config.retry_secs.max(1));
    loop {
        let wait = held.as_ref().map_or(Duration::ZERO, |k| until_renewal(k, config.renew_fraction, unix_now()));
        if !wait.is_zero() {
            tokio::time::sleep(wait.min(MAX_SLEEP)).await;
            continue;
        }
        match order(&config, &resolver, &mut account).await {
            Ok((chain, key_pem)) => match certs::from_pem(&chain, &key_pem) {
                Ok(key) => {
                    if let Err(e) = files.store(&chain, &key_pem) {
                        tracing::warn!("ACME certificate not stored (it is served until restart): {e}");
                    }
                    resolver.set_acme(&config.domains, &key);
                    tracing::info!(domains = ?config.domains, sha256 = %certs::fingerprint(&key), "ACME certificate issued");
                    held = Some(key);
                    backoff = Duration::from_secs(config.retry_secs.max(1));
                }
                Err(e) => tracing::warn!("ACME certificate unusable; the current one stays: {e}"),
            },
            Err(e) => {
                let what = if held.is_some() { "the current certificate stays" } else { "no certificate yet" };
                tracing::warn!("ACME order failed ({what}); next try in {}s: {e}", backoff.as_secs());
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_SLEEP);
            }
        }
    }
}

/// How long until `key` is due for renewal: when less than `fraction` of its lifetime is
/// left. Zero when due, or when its dates cannot be read.
pub fn until_renewal(key: &CertifiedKey, fraction: f64, now: i64) -> Duration {
    let Some((not_before, not_after)) = certs::validity(key) else { return Duration::ZERO };
    let lifetime = (not_after - not_before).max(0) as f64;
    let renew_at = not_after - (lifetime * fraction) as i64;
    Duration::from_secs(u64::try_from(renew_at - now).unwrap_or(0))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// One order: account (created once and stored), tls-alpn-01 for every name, finalize
/// with a fresh key (instant-acme's rcgen CSR), download the chain.
async fn order(
    config: &AcmeConfig,
    resolver: &SniResolver,
    account: &mut Option<Account>,
) -> Result<(String, String), String> {
    if account.is_none() {
        *account = Some(open_account(config).await?);
    }
    let Some(account) = account.as_ref() else { return Err("no account".into()) };
    let ids: Vec<Identifier> = config.domains.iter().map(|d| Identifier::Dns(d.clone())).collect();
    let mut order = account.new_order(&NewOrder::new(&ids)).await.map_err(|e| format!("new order: {e}"))?;
    let mut answered = Vec::new();
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let mut authz = authz.map_err(|e| format!("authorization: {e}"))?;
            match authz.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => return Err(format!("authorization is {other:?}")),
            }
            let mut challenge =
                authz.challenge(ChallengeType::TlsAlpn01).ok_or("the CA offers no tls-alpn-01 challenge")?;
            let name = challenge.identifier().to_string();
            let cert = challenge_cert(&name, challenge.key_authorization().digest().as_ref())?;
            resolver.set_challenge(&name, cert);
            answered.push(name);
            challenge.set_ready().await.map_err(|e| format!("challenge ready: {e}"))?;
        }
        let retry = RetryPolicy::new().timeout(Duration::from_secs(60));
        let status = order.poll_ready(&retry).await.map_err(|e| format!("waiting for validation: {e}"))?;
        if status != OrderStatus::Ready {
            return Err(format!("order is {status:?} after validation"));
        }
        let key_pem = order.finalize().await.map_err(|e| format!("finalize: {e}"))?;
        let chain = order.poll_certificate(&retry).await.map_err(|e| format!("certificate: {e}"))?;
        Ok((chain, key_pem))
    }
    .await;
    for name in &answered {
        resolver.clear_challenge(name);
    }
    result
}

/// The tls-alpn-01 answer: a self-signed certificate for `name` carrying the
/// acmeIdentifier extension with the key authorization's digest (rcgen builds it).
fn challenge_cert(name: &str, digest: &[u8]) -> Result<Arc<CertifiedKey>, String> {
    let key = rcgen::KeyPair::generate().map_err(|e| format!("challenge key: {e}"))?;
    let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(|e| format!("challenge: {e}"))?;
    params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
    let cert = params.self_signed(&key).map_err(|e| format!("challenge certificate: {e}"))?;
    let key_der = rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der());
    certs::unchecked(cert.der().clone(), &key_der.into())
}

/// The stored account, or a new one (then stored 0600).
async fn open_account(config: &AcmeConfig) -> Result<Account, String> {
    let builder = || match &config.ca_root {
        Some(root) => Account::builder_with_root(root).map_err(|e| format!("ACME CA root {}: {e}", root.display())),
        None => Account::builder().map_err(|e| format!("ACME client: {e}")),
    };
    let path = config.state_dir.join("account.json");
    if let Ok(text) = std::fs::read_to_string(&path) {
        let credentials: AccountCredentials =
            serde_json::from_str(&text).map_err(|_| format!("{} is not an ACME account file", path.display()))?;
        return builder()?.from_credentials(credentials).await.map_err(|e| format!("ACME account: {e}"));
    }
    let contact = config.email.as_ref().map(|e| format!("mailto:{e}"));
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let new = NewAccount { contact: &contacts, terms_of_service_agreed: true, only_return_existing: false };
    let (account, credentials) = builder()?
        .create(&new, config.directory.clone(), None)
        .await
        .map_err(|e| format!("ACME account at {}: {e}", config.directory))?;
    let text = serde_json::to_string(&credentials).map_err(|e| format!("ACME account: {e}"))?;
    write_private(&path, text.as_bytes())?;
    tracing::info!(directory = %config.directory, "ACME account created");
    Ok(account)
}

/// Where the certificate for this set of domains is kept.
struct CertFiles {
    chain: PathBuf,
    key: PathBuf,
}

impl CertFiles {
    fn new(config: &AcmeConfig) -> CertFiles {
        // Named by the domain list: another list is another certificate.
        use sha2::Digest as _;
        let mut names = config.domains.iter().map(|d| d.to_ascii_lowercase()).collect::<Vec<_>>();
        names.sort();
        let digest = sha2::Sha256::digest(names.join(",").as_bytes());
        let first: String =
            names[0].chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
        let stem = format!("{first}-{}", &hex::encode(digest)[..12]);
        CertFiles {
            chain: config.state_dir.join(format!("{stem}.crt")),
            key: config.state_dir.join(format!("{stem}.key")),
        }
    }

    fn load(&self) -> Result<Arc<CertifiedKey>, String> {
        certs::load(&self.chain, &self.key)
    }

    fn store(&self, chain: &str, key: &str) -> Result<(), String> {
        write_private(&self.key, key.as_bytes())?;
        write_private(&self.chain, chain.as_bytes())
    }
}

/// Creates `dir` (and parents) and sets it to 0700.
fn private_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("ACME state directory {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("ACME state directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

/// Writes `data` to `path` with mode 0600 via a temporary file and a rename.
fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let write = || -> std::io::Result<()> {
        let mut file = options.open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_is_due_when_the_fraction_is_left() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["a.test".into()]).unwrap();
        params.not_before = rcgen::date_time_ymd(2030, 1, 1);
        params.not_after = rcgen::date_time_ymd(2030, 4, 1); // 90 days
        let cert = params.self_signed(&key).unwrap();
        let k = certs::from_pem(&cert.pem(), &key.serialize_pem()).unwrap();
        let (from, to) = certs::validity(&k).unwrap();
        assert_eq!(to - from, 90 * 86_400);
        // A third left = 30 days before notAfter.
        assert_eq!(until_renewal(&k, 1.0 / 3.0, from), Duration::from_secs(60 * 86_400));
        assert_eq!(until_renewal(&k, 1.0 / 3.0, to - 10), Duration::ZERO);
    }

    #[test]
    fn state_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        private_dir(&state).unwrap();
        write_private(&state.join("k"), b"secret").unwrap();
        assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(state.join("k")).unwrap().permissions().mode() & 0o777, 0o600);
    }
}
