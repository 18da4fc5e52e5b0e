//! CDN URL authentication, types A, B and C (spec f.6).
//!
//! A signed URL is checked against the primary key, then the secondary one (key
//! rotation). The hash always covers the path exactly as sent (percent-encoded).
//! On success the URL is rewritten to the plain object URL: type B and type C
//! (format 1) drop their path prefix, and the signature parameters leave the query,
//! so signed and unsigned spellings share one cache entry.
//!
//! Expiry: `expires_at = timestamp + validity`; a request after it is refused.
//!
//! Like the CDN, types A, B and C sign the path only, so one signature for an object
//! also admits every `x-oss-process` chain on it. With `sign_process = true` the signed
//! URI is the path followed by `?x-oss-process=<value exactly as sent>` whenever the
//! request carries that parameter, so a signature covers one chain and cannot be
//! reused for arbitrary (and arbitrarily expensive) ones.

use md5::{Digest, Md5};
use serde::Deserialize;
use subtle::ConstantTimeEq;

/// Which signing scheme a site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum AuthType {
    /// `?auth_key=<timestamp>-<rand>-<uid>-<md5>`.
    A,
    /// `/<YYYYMMDDHHMM UTC+8>/<md5>/path`.
    B,
    /// `/<md5>/<hex timestamp>/path` or `?KEY1=<md5>&KEY2=<hex timestamp>`.
    C,
}

/// URL authentication settings of one site.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlAuthConfig {
    /// Scheme.
    #[serde(rename = "type")]
    pub auth_type: AuthType,
    /// Primary key (16-32 letters or digits).
    pub primary_key: String,
    /// Secondary key, accepted too (for rotation).
    #[serde(default)]
    pub secondary_key: Option<String>,
    /// Seconds a signature stays valid after its timestamp.
    #[serde(default = "default_validity")]
    pub validity_secs: u64,
    /// Type A parameter name.
    #[serde(default = "default_a_param")]
    pub param: String,
    /// Type C query parameter names for the hash and the time (format 2).
    #[serde(default = "default_c_hash")]
    pub c_hash_param: String,
    /// See `c_hash_param`.
    #[serde(default = "default_c_time")]
    pub c_time_param: String,
    /// Only URLs with `x-oss-process` must be signed; plain objects pass unsigned.
    #[serde(default)]
    pub only_processing: bool,
    /// Also sign the `x-oss-process` value: the signed URI is
    /// `<path>?x-oss-process=<raw value>` when the parameter is present (default false:
    /// path only, as the CDN does).
    #[serde(default)]
    pub sign_process: bool,
}

fn default_validity() -> u64 {
    1800
}
fn default_a_param() -> String {
    "auth_key".into()
}
fn default_c_hash() -> String {
    "KEY1".into()
}
fn default_c_time() -> String {
    "KEY2".into()
}

/// Why a signed URL was refused; the text goes into `X-Tengine-Error`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No signature in the URL.
    Missing,
    /// The signature's time is past.
    Expired,
    /// Malformed signature parts.
    Malformed,
    /// The hash does not match either key.
    BadHash,
}

impl AuthFailure {
    /// The CDN's error text.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "denied by req auth: no url arg auth_key",
            AuthFailure::Expired => "denied by req auth: expired timestamp",
            AuthFailure::Malformed => "denied by req auth: invalid auth arguments",
            AuthFailure::BadHash => "denied by req auth: invalid md5hash",
        }
    }
}

/// The plain URL after a successful check: raw path and remaining query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Raw (still percent-encoded) path.
    pub path: String,
    /// Query without the signature parameters.
    pub query: Option<String>,
}

/// Lower-hex MD5.
pub fn md5_hex(input: &str) -> String {
    let digest = Md5::digest(input.as_bytes());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

impl UrlAuthConfig {
    fn keys(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.primary_key.as_str()).chain(self.secondary_key.as_deref())
    }

    fn any_key_matches(&self, given: &str, sign_input: impl Fn(&str) -> String) -> bool {
        let given = given.to_ascii_lowercase();
        // Every key is tried so timing does not tell which one matched.
        self.keys()
            .map(|k| bool::from(md5_hex(&sign_input(k)).as_bytes().ct_eq(given.as_bytes())))
            .fold(false, |acc, ok| acc | ok)
    }

    /// What the hash covers besides key and time: the path, plus the raw
    /// `x-oss-process` value of the remaining query when `sign_process` is on (the
    /// same occurrence `request.rs` will process).
    fn subject(&self, path: &str, rest: Option<&str>) -> String {
        match crate::url::encoded_process_param(rest).filter(|_| self.sign_process) {
            Some(process) => format!("{path}?x-oss-process={process}"),
            None => path.to_owned(),
        }
    }

    fn check_expiry(&self, timestamp: u64, now: u64) -> Result<(), AuthFailure> {
        if now > timestamp.saturating_add(self.validity_secs) {
            Err(AuthFailure::Expired)
        } else {
            Ok(())
        }
    }

    /// Verifies a request's raw path and query at `now` (Unix seconds).
    ///
    /// # Errors
    /// The reason, for a 403 with `X-Tengine-Error`.
    pub fn verify(&self, path: &str, query: Option<&str>, now: u64) -> Result<Verified, AuthFailure> {
        match self.auth_type {
            AuthType::A => self.verify_a(path, query, now),
            AuthType::B => self.verify_b(path, query, now),
            AuthType::C => self.verify_c(path, query, now),
        }
    }

    fn verify_a(&self, path: &str, query: Option<&str>, now: u64) -> Result<Verified, AuthFailure> {
        let (value, rest) = take_param(query, &self.param);
        let value = value.ok_or(AuthFailure::Missing)?;
        let parts: Vec<&str> = value.splitn(4, '-').collect();
        let [ts, rand, uid, hash] = parts[..] else {
            return Err(AuthFailure::Malformed);
        };
        let timestamp: u64 = ts.parse().map_err(|_| AuthFailure::Malformed)?;
        self.check_expiry(timestamp, now)?;
        let subject = self.subject(path, rest.as_deref());
        if !self.any_key_matches(hash, |k| format!("{subject}-{ts}-{rand}-{uid}-{k}")) {
            return Err(AuthFailure::BadHash);
        }
        Ok(Verified { path: path.to_owned(), query: rest })
    }

    fn verify_b(&self, path: &str, query: Option<&str>, now: u64) -> Result<Verified, AuthFailure> {
        let mut parts = path.splitn(4, '/');
        let (Some(""), Some(ts), Some(hash), Some(file)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(AuthFailure::Missing);
        };
        if ts.len() != 12 || hash.len() != 32 {
            return Err(AuthFailure::Missing);
        }
        let timestamp = utc8_minutes_to_unix(ts).ok_or(AuthFailure::Malformed)?;
        self.check_expiry(timestamp, now)?;
        let file = format!("/{file}");
        let subject = self.subject(&file, query);
        if !self.any_key_matches(hash, |k| format!("{k}{ts}{subject}")) {
            return Err(AuthFailure::BadHash);
        }
        Ok(Verified { path: file, query: query.map(str::to_owned) })
    }

    fn verify_c(&self, path: &str, query: Option<&str>, now: u64) -> Result<Verified, AuthFailure> {
        let (hash_q, rest) = take_param(query, &self.c_hash_param);
        let (time_q, rest) = take_param(rest.as_deref(), &self.c_time_param);
        let (hash, ts, file, rest) = match (hash_q, time_q) {
            (Some(h), Some(t)) => (h, t, path.to_owned(), rest),
            _ => {
                let mut parts = path.splitn(4, '/');
                let (Some(""), Some(h), Some(t), Some(file)) = (parts.next(), parts.next(), parts.next(), parts.next())
                else {
                    return Err(AuthFailure::Missing);
                };
                if h.len() != 32 {
                    return Err(AuthFailure::Missing);
                }
                (h.to_owned(), t.to_owned(), format!("/{file}"), query.map(str::to_owned))
            }
        };
        let timestamp = u64::from_str_radix(&ts, 16).map_err(|_| AuthFailure::Malformed)?;
        self.check_expiry(timestamp, now)?;
        let subject = self.subject(&file, rest.as_deref());
        if !self.any_key_matches(&hash, |k| format!("{k}{subject}{ts}")) {
            return Err(AuthFailure::BadHash);
        }
        Ok(Verified { path: file, query: rest })
    }
}

/// Removes one parameter from a raw query: (its raw value, the rest).
fn take_param(query: Option<&str>, name: &str) -> (Option<String>, Option<String>) {
    let Some(query) = query else {
        return (None, None);
    };
    let mut value = None;
    let rest: Vec<&str> = query
        .split('&')
        .filter(|token| match token.split_once('=') {
            Some((n, v)) if n == name => {
                value = Some(v.to_owned());
                false
            }
            _ => !token.is_empty(),
        })
        .collect();
    let rest = (!rest.is_empty()).then(|| rest.join("&"));
    (value, rest)
}

/// `YYYYMMDDHHMM` in UTC+8 to Unix seconds.
fn utc8_minutes_to_unix(ts: &str) -> Option<u64> {
    if !ts.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| ts.get(r).and_then(|s| s.parse::<i64>().ok());
    let (y, mo, d, h, mi) = (num(0..4)?, num(4..6)?, num(6..8)?, num(8..10)?, num(10..12)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 {
        return None;
    }
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 - 8 * 3600;
    u64::try_from(secs).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn vectors() -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/vectors/cdn-url-auth.json");
        let text = std::fs::read_to_string(path).expect("shared vectors present");
        let v: Value = serde_json::from_str(&text).unwrap();
        v["cases"].as_array().unwrap().clone()
    }

    fn config(t: AuthType, key: &str) -> UrlAuthConfig {
        UrlAuthConfig {
            auth_type: t,
            primary_key: key.into(),
            secondary_key: None,
            validity_secs: 1800,
            param: default_a_param(),
            c_hash_param: default_c_hash(),
            c_time_param: default_c_time(),
            only_processing: false,
            sign_process: false,
        }
    }

    fn split(pq: &str) -> (&str, Option<&str>) {
        match pq.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (pq, None),
        }
    }

    #[test]
    fn every_vector_verifies_and_rewrites_to_the_plain_path() {
        let cases = vectors();
        assert!(cases.len() >= 8);
        for case in cases {
            let key = case["private_key"].as_str().unwrap();
            let path = case["path"].as_str().unwrap();
            let ts = case["timestamp_unix"].as_u64().unwrap();
            let hash = case["md5hash"].as_str().unwrap();
            let signed: Vec<&str> = match case["type"].as_str().unwrap() {
                "A" => vec![case["signed_path_and_query"].as_str().unwrap()],
                "B" => vec![case["signed_path"].as_str().unwrap()],
                _ => vec![case["signed_path_format1"].as_str().unwrap(), case["signed_path_format2"].as_str().unwrap()],
            };
            let t = match case["type"].as_str().unwrap() {
                "A" => AuthType::A,
                "B" => AuthType::B,
                _ => AuthType::C,
            };
            let cfg = config(t, key);
            for url in signed {
                let (p, q) = split(url);
                let ok = cfg.verify(p, q, ts + 10).unwrap_or_else(|e| panic!("{url}: {e:?}"));
                assert_eq!(ok.path, path, "{url}");
                assert_eq!(ok.query, None, "{url}");
                // Expired after the validity window.
                assert_eq!(cfg.verify(p, q, ts + 1801), Err(AuthFailure::Expired), "{url}");
                // Another key: bad hash.
                assert_eq!(config(t, "WrongKey00000000").verify(p, q, ts), Err(AuthFailure::BadHash));
            }
            // The published hash is what we compute.
            let sign_input = case["sign_string"].as_str().unwrap();
            assert_eq!(md5_hex(sign_input), hash);
        }
    }

    #[test]
    fn secondary_key_is_accepted_for_rotation() {
        let mut cfg = config(AuthType::A, "NewKey0123456789");
        cfg.secondary_key = Some("aliyuncdnexp1234".into());
        let ok = cfg.verify(
            "/video/standard/test.mp4",
            Some("x=1&auth_key=1444435200-0-0-23bf85053008f5c0e791667a313e28ce"),
            1444435200,
        );
        assert_eq!(ok.unwrap().query.as_deref(), Some("x=1"));
    }

    #[test]
    fn missing_and_malformed_signatures() {
        let cfg = config(AuthType::A, "k");
        assert_eq!(cfg.verify("/a.jpg", None, 0), Err(AuthFailure::Missing));
        assert_eq!(cfg.verify("/a.jpg", Some("auth_key=abc"), 0), Err(AuthFailure::Malformed));
        let b = config(AuthType::B, "k");
        assert_eq!(b.verify("/a.jpg", None, 0), Err(AuthFailure::Missing));
        assert_eq!(
            b.verify("/209913999999/0123456789abcdef0123456789abcdef/a.jpg", None, 0),
            Err(AuthFailure::Malformed)
        );
    }

    /// C13: by default (as the CDN) a signature covers the path only, so any chain rides
    /// on it; with `sign_process` it covers the chain too.
    #[test]
    fn sign_process_binds_the_signature_to_one_chain() {
        let (key, now) = ("aliyuncdnexp1234", 1444435200u64);
        let chain = "image%2Fresize%2Cw_100";
        for t in [AuthType::A, AuthType::B, AuthType::C] {
            let mut cfg = config(t, key);
            // (path, query) of a URL signed over `subject`, with `chain` in the query.
            let signed = |subject: &str| -> (String, String) {
                match t {
                    AuthType::A => {
                        let h = md5_hex(&format!("{subject}-{now}-0-0-{key}"));
                        ("/a.jpg".into(), format!("x-oss-process={chain}&auth_key={now}-0-0-{h}"))
                    }
                    AuthType::B => {
                        let ts = "201510100800";
                        let h = md5_hex(&format!("{key}{ts}{subject}"));
                        (format!("/{ts}/{h}/a.jpg"), format!("x-oss-process={chain}"))
                    }
                    AuthType::C => {
                        let ts = format!("{now:x}");
                        let h = md5_hex(&format!("{key}{subject}{ts}"));
                        (format!("/{h}/{ts}/a.jpg"), format!("x-oss-process={chain}"))
                    }
                }
            };
            let with_chain = format!("/a.jpg?x-oss-process={chain}");
            // Path-only signature: accepted by default, refused once the chain is signed.
            let (p, q) = signed("/a.jpg");
            assert!(cfg.verify(&p, Some(&q), now).is_ok(), "{t:?} default");
            cfg.sign_process = true;
            assert_eq!(cfg.verify(&p, Some(&q), now), Err(AuthFailure::BadHash), "{t:?} reused for a chain");
            // Signed over the chain: accepted, and only for that chain.
            let (p, q) = signed(&with_chain);
            let ok = cfg.verify(&p, Some(&q), now).unwrap_or_else(|e| panic!("{t:?}: {e:?}"));
            assert_eq!(ok.query.as_deref(), Some(format!("x-oss-process={chain}").as_str()));
            let other = q.replace("w_100", "w_4000");
            assert_eq!(cfg.verify(&p, Some(&other), now), Err(AuthFailure::BadHash), "{t:?} other chain");
            // A second x-oss-process cannot smuggle another chain past the signed one.
            let smuggled = format!("{q}&x-oss-process=image%2Fblur%2Cr_50%2Cs_50");
            assert_eq!(cfg.verify(&p, Some(&smuggled), now), Err(AuthFailure::BadHash), "{t:?} second chain");
            // A plain object (no chain) still signs the path alone.
            let (p, q) = signed("/a.jpg");
            let plain: String = q.split('&').filter(|t| !t.starts_with("x-oss-process")).collect::<Vec<_>>().join("&");
            let plain = (!plain.is_empty()).then_some(plain);
            assert!(cfg.verify(&p, plain.as_deref(), now).is_ok(), "{t:?} plain");
        }
    }

    #[test]
    fn utc8_conversion_matches_the_doc_example() {
        assert_eq!(utc8_minutes_to_unix("201508150800"), Some(1439596800));
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11017);
    }
}
