//! Verifies the signatures of Alibaba Cloud API calls against the configured
//! AccessKey pairs, as the CDN's API gateway does.
//!
//! Two schemes, both read from what the official SDKs send (aliyunsdkcore 2.16
//! `auth/composer/rpc_signature_composer.py`; alibabacloud-tea-openapi 0.4
//! `utils.py` `get_authorization`):
//!
//! * RPC v1 (HMAC-SHA1): every query and form parameter but `Signature`, sorted by
//!   name, `enc(name)=enc(value)` joined by `&`; StringToSign =
//!   `METHOD&%2F&enc(that)`; Signature = base64(HMAC-SHA1(secret + "&", StringToSign)).
//! * ACS3-HMAC-SHA256: `Authorization: ACS3-HMAC-SHA256 Credential=ID,SignedHeaders=a;b,Signature=HEX`;
//!   canonical request = method, path, sorted query (`name=enc(value)`), the signed
//!   headers as `name:trimmed values\n`, the signed header list, hex SHA-256 of the body;
//!   StringToSign = `ACS3-HMAC-SHA256\n` + hex SHA-256(canonical request);
//!   Signature = hex HMAC-SHA256(secret, StringToSign).
//!
//! `enc` is RFC 3986 percent-encoding (only `A-Za-z0-9-_.~` left as is). The
//! timestamp must be within [`MAX_SKEW_SECS`] of now, and a nonce is accepted once per
//! AccessKey: nonces are remembered for twice that window (a request's whole
//! validity), at most [`MAX_NONCES`] at a time; when the cache is full of live
//! nonces, new calls are refused (`Throttling.User`) rather than forgetting one
//! early, so a replay is never accepted. The nonce is recorded only after the
//! signature checks out, so nobody can burn another caller's nonces.

use crate::config::AccessKeyConfig;
use crate::error::Error;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use http::{HeaderMap, Method, StatusCode};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use subtle::ConstantTimeEq;

/// Accepted distance between a call's timestamp and the server clock, as the API's.
pub const MAX_SKEW_SECS: u64 = 15 * 60;
/// Nonces remembered at once (about 100 bytes each).
pub const MAX_NONCES: usize = 100_000;

/// The ACS3 algorithm name, as sent in `Authorization`.
const ACS3: &str = "ACS3-HMAC-SHA256";

/// One API call as the verifier needs it: parameters already decoded.
#[derive(Debug)]
pub struct SignedCall<'a> {
    /// HTTP method.
    pub method: &'a Method,
    /// Request path (always `/` for RPC calls).
    pub path: &'a str,
    /// Decoded query parameters, in request order.
    pub query: &'a [(String, String)],
    /// Decoded form-body parameters (empty unless the body is a form).
    pub form: &'a [(String, String)],
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Raw body bytes.
    pub body: &'a [u8],
}

/// Checks signatures and remembers nonces.
pub struct Verifier {
    keys: HashMap<String, String>,
    /// Shared with the verifiers of later config generations ([`Verifier::with_keys`]):
    /// a reload must not let a nonce be used again.
    nonces: Arc<Mutex<Nonces>>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier").field("keys", &self.keys.len()).finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Nonces {
    seen: HashSet<String>,
    /// (expiry, key) in insertion order; expiries only grow, so the front is oldest.
    order: VecDeque<(u64, String)>,
}

impl Verifier {
    /// A verifier for these pairs (empty: every signed call is refused).
    pub fn new(keys: &[AccessKeyConfig]) -> Verifier {
        Verifier { keys: keys.iter().map(|k| (k.id.clone(), k.secret.clone())).collect(), nonces: Arc::default() }
    }

    /// A verifier for new pairs that remembers the nonces this one has seen (a reload).
    pub fn with_keys(&self, keys: &[AccessKeyConfig]) -> Verifier {
        Verifier {
            keys: keys.iter().map(|k| (k.id.clone(), k.secret.clone())).collect(),
            nonces: Arc::clone(&self.nonces),
        }
    }

    /// True when both check nonces against the same store.
    pub fn shares_nonces_with(&self, other: &Verifier) -> bool {
        Arc::ptr_eq(&self.nonces, &other.nonces)
    }

    /// True when at least one AccessKey pair is configured.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verifies a call signed with either scheme at Unix time `now`; returns the
    /// AccessKeyId.
    ///
    /// # Errors
    /// The API's codes: `MissingParameter`, `InvalidAccessKeyId.NotFound`,
    /// `InvalidTimeStamp.Format`/`.Expired`, `SignatureDoesNotMatch`,
    /// `SignatureNonceUsed`, `IncompleteSignature`, `Throttling.User`.
    pub fn verify(&self, call: &SignedCall<'_>, now: u64) -> Result<String, Error> {
        let authorization = call.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        match authorization {
            Some(a) if a.starts_with(ACS3) => self.verify_acs3(call, a, now),
            _ => self.verify_rpc_v1(call, now),
        }
    }

    fn secret(&self, id: &str) -> Result<&str, Error> {
        if self.keys.is_empty() {
            return Err(api(
                StatusCode::NOT_FOUND,
                "InvalidAccessKeyId.NotFound",
                "Specified access key is not found. (No AccessKey pairs are configured on this server: set [[admin.access_keys]] or IMGEDGE_ADMIN_ACCESS_KEYS.)",
            ));
        }
        self.keys.get(id).map(String::as_str).ok_or_else(|| {
            api(StatusCode::NOT_FOUND, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
        })
    }

    fn verify_rpc_v1(&self, call: &SignedCall<'_>, now: u64) -> Result<String, Error> {
        let param = |name: &str| call.query.iter().chain(call.form).find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        let required = |name: &'static str| param(name).ok_or_else(|| missing(name));
        let id = required("AccessKeyId")?;
        let signature = required("Signature")?;
        let timestamp = required("Timestamp")?;
        let nonce = required("SignatureNonce")?;
        let method = param("SignatureMethod").unwrap_or("HMAC-SHA1");
        if method != "HMAC-SHA1" {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "InvalidSignatureMethod",
                "Specified signature method is not supported (HMAC-SHA1 or ACS3-HMAC-SHA256).",
            ));
        }
        if param("SignatureVersion").is_some_and(|v| v != "1.0") {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "InvalidSignatureVersion",
                "Specified signature version is not supported.",
            ));
        }
        let secret = self.secret(id)?;
        check_time(timestamp, now)?;
        let string_to_sign = rpc_string_to_sign(call.method.as_str(), call.query.iter().chain(call.form));
        let expected = rpc_signature(secret, &string_to_sign);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "SignatureDoesNotMatch",
                &format!("Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"),
            ));
        }
        self.use_nonce(id, nonce, now)?;
        Ok(id.to_owned())
    }

    fn verify_acs3(&self, call: &SignedCall<'_>, authorization: &str, now: u64) -> Result<String, Error> {
        let fields = authorization[ACS3.len()..].trim();
        let (mut id, mut signed, mut signature) = (None, None, None);
        for part in fields.split(',') {
            match part.trim().split_once('=') {
                Some(("Credential", v)) => id = Some(v),
                Some(("SignedHeaders", v)) => signed = Some(v),
                Some(("Signature", v)) => signature = Some(v),
                _ => {}
            }
        }
        let (Some(id), Some(signed), Some(signature)) = (id, signed, signature) else {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "IncompleteSignature",
                "The Authorization header lacks Credential, SignedHeaders or Signature.",
            ));
        };
        let signed: Vec<&str> = signed.split(';').collect();
        // The headers that make a call unique must be covered by the signature.
        for must in ["x-acs-action", "x-acs-date", "x-acs-signature-nonce"] {
            if !signed.contains(&must) {
                return Err(api(
                    StatusCode::BAD_REQUEST,
                    "IncompleteSignature",
                    &format!("The request signature must cover the {must} header."),
                ));
            }
        }
        let header =
            |name: &'static str| call.headers.get(name).and_then(|v| v.to_str().ok()).ok_or_else(|| missing(name));
        let timestamp = header("x-acs-date")?;
        let nonce = header("x-acs-signature-nonce")?;
        let secret = self.secret(id)?;
        check_time(timestamp, now)?;
        let canonical = acs3_canonical_request(call, &signed);
        let string_to_sign = format!("{ACS3}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        let expected = hex::encode(hmac_sha256(secret.as_bytes(), string_to_sign.as_bytes()));
        if !bool::from(expected.as_bytes().ct_eq(signature.to_ascii_lowercase().as_bytes())) {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "SignatureDoesNotMatch",
                &format!(
                    "The request signature does not conform to Aliyun standards. server string to sign is:{}",
                    string_to_sign.replace('\n', "\\n")
                ),
            ));
        }
        self.use_nonce(id, nonce, now)?;
        Ok(id.to_owned())
    }

    /// Records a nonce for this key; refuses one seen within the validity window.
    fn use_nonce(&self, id: &str, nonce: &str, now: u64) -> Result<(), Error> {
        let key = format!("{id}\n{nonce}");
        let mut nonces = self.nonces.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while nonces.order.front().is_some_and(|(expiry, _)| *expiry <= now) {
            if let Some((_, old)) = nonces.order.pop_front() {
                nonces.seen.remove(&old);
            }
        }
        if nonces.seen.contains(&key) {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "SignatureNonceUsed",
                "Specified signature nonce was used already.",
            ));
        }
        if nonces.order.len() >= MAX_NONCES {
            return Err(api(
                StatusCode::BAD_REQUEST,
                "Throttling.User",
                "Request was denied due to user flow control.",
            ));
        }
        nonces.seen.insert(key.clone());
        nonces.order.push_back((now + 2 * MAX_SKEW_SECS, key));
        Ok(())
    }
}

fn api(status: StatusCode, code: &'static str, message: &str) -> Error {
    Error::Api { status, code, message: message.to_owned() }
}

fn missing(name: &str) -> Error {
    api(
        StatusCode::BAD_REQUEST,
        "MissingParameter",
        &format!("The input parameter \"{name}\" that is mandatory for processing this request is not supplied."),
    )
}

fn check_time(timestamp: &str, now: u64) -> Result<(), Error> {
    let t = parse_iso8601(timestamp).ok_or_else(|| {
        api(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    })?;
    if t.abs_diff(now) > MAX_SKEW_SECS {
        return Err(api(
            StatusCode::BAD_REQUEST,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        ));
    }
    Ok(())
}

/// RFC 3986 percent-encoding, as the API's `percentEncode`.
pub fn percent_encode(s: &str) -> String {
    const UNRESERVED: &percent_encoding::AsciiSet =
        &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');
    percent_encoding::utf8_percent_encode(s, UNRESERVED).to_string()
}

/// The RPC v1 StringToSign over every parameter but `Signature`.
pub fn rpc_string_to_sign<'a>(method: &str, params: impl Iterator<Item = &'a (String, String)>) -> String {
    let mut pairs: Vec<(String, String)> =
        params.filter(|(n, _)| n != "Signature").map(|(n, v)| (percent_encode(n), percent_encode(v))).collect();
    pairs.sort();
    let canonical: Vec<String> = pairs.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    format!("{method}&%2F&{}", percent_encode(&canonical.join("&")))
}

/// base64(HMAC-SHA1(secret + "&", StringToSign)).
pub fn rpc_signature(secret: &str, string_to_sign: &str) -> String {
    let mut key = secret.as_bytes().to_vec();
    key.push(b'&');
    let mut mac = <Hmac<Sha1> as Mac>::new_from_slice(&key).unwrap_or_else(|_| unreachable_hmac());
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

// HMAC takes keys of any length; this is never reached.
fn unreachable_hmac<T>() -> T {
    unreachable!("HMAC accepts keys of any length")
}

/// The ACS3 canonical request for these signed headers.
fn acs3_canonical_request(call: &SignedCall<'_>, signed: &[&str]) -> String {
    let mut query: Vec<(String, String)> =
        call.query.iter().map(|(n, v)| (percent_encode(n), percent_encode(v))).collect();
    query.sort();
    let query: Vec<String> = query.into_iter().map(|(n, v)| format!("{n}={v}")).collect();
    let mut headers = String::new();
    for name in signed {
        let mut values: Vec<&str> =
            call.headers.get_all(*name).iter().filter_map(|v| v.to_str().ok()).map(str::trim).collect();
        values.sort_unstable();
        headers.push_str(name);
        headers.push(':');
        headers.push_str(&values.join(","));
        headers.push('\n');
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        call.method,
        if call.path.is_empty() { "/" } else { call.path },
        query.join("&"),
        headers,
        signed.join(";"),
        hex::encode(Sha256::digest(call.body))
    )
}

/// Parses `YYYY-MM-DDThh:mm:ssZ` (UTC) into Unix seconds.
pub fn parse_iso8601(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' || b[19] != b'Z'
    {
        return None;
    }
    let num = |from: usize, to: usize| s.get(from..to)?.parse::<u64>().ok();
    let (y, mo, d, h, mi, se) = (num(0, 4)?, num(5, 7)?, num(8, 10)?, num(11, 13)?, num(14, 16)?, num(17, 19)?);
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60
    {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

/// Formats Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn format_iso8601(t: u64) -> String {
    let (days, secs) = (t / 86_400, t % 86_400);
    let (y, m, d) = crate::civil::civil_from_days(days as i64);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", secs / 3600, secs % 3600 / 60, secs % 60)
}

// Howard Hinnant's days-from-civil (the inverse of `crate::civil`), for dates from 1970 on.
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn iso8601_round_trips() {
        assert_eq!(parse_iso8601("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_iso8601("2026-12-06T01:44:33Z"), Some(1_796_521_473));
        assert_eq!(format_iso8601(1_796_521_473), "2026-12-06T01:44:33Z");
        assert_eq!(format_iso8601(951_782_400), "2000-02-29T00:00:00Z");
        assert!(parse_iso8601("2026-12-06 01:44:33Z").is_none());
        assert!(parse_iso8601("2026-13-06T01:44:33Z").is_none());
    }

    #[test]
    fn percent_encoding_is_rfc3986() {
        assert_eq!(percent_encode("a b*c~d/é"), "a%20b%2Ac~d%2F%C3%A9");
    }

    // The docs' DescribeRegions example, signed with "testsecret" by aliyunsdkcore
    // 2.16's own composer (`__compose_string_to_sign` + HMAC-SHA1).
    #[test]
    fn rpc_v1_matches_the_documented_example() {
        let params = pairs(&[
            ("Timestamp", "2016-02-23T12:46:24Z"),
            ("Format", "XML"),
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"),
            ("Version", "2014-05-26"),
            ("SignatureVersion", "1.0"),
        ]);
        let sts = rpc_string_to_sign("GET", params.iter());
        assert!(sts.starts_with("GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions"), "{sts}");
        assert_eq!(rpc_signature("testsecret", &sts), "OLeaidS1JvxuMvnyHOwuJ+uX5qY=");
    }

    fn signed_v1(secret: &str, nonce: &str, ts: &str) -> Vec<(String, String)> {
        let mut p = pairs(&[
            ("Action", "DescribeRefreshQuota"),
            ("AccessKeyId", "id1"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureVersion", "1.0"),
            ("SignatureNonce", nonce),
            ("Timestamp", ts),
        ]);
        let sig = rpc_signature(secret, &rpc_string_to_sign("GET", p.iter()));
        p.push(("Signature".into(), sig));
        p
    }

    fn code(r: Result<String, Error>) -> &'static str {
        r.map_or_else(|e| e.code(), |_| "ok")
    }

    #[test]
    fn rpc_v1_checks_key_signature_time_and_nonce() {
        let v = Verifier::new(&[AccessKeyConfig { id: "id1".into(), secret: "s1".into() }]);
        let now = parse_iso8601("2026-12-06T01:00:00Z").unwrap();
        let headers = HeaderMap::new();
        let check = |q: &[(String, String)], now: u64| {
            let call =
                SignedCall { method: &Method::GET, path: "/", query: q, form: &[], headers: &headers, body: b"" };
            code(v.verify(&call, now))
        };
        let good = signed_v1("s1", "n1", "2026-12-06T01:00:00Z");
        assert_eq!(check(&good, now), "ok");
        assert_eq!(check(&good, now), "SignatureNonceUsed");
        assert_eq!(check(&signed_v1("wrong", "n2", "2026-12-06T01:00:00Z"), now), "SignatureDoesNotMatch");
        // A refused signature does not burn the nonce.
        assert_eq!(check(&signed_v1("s1", "n2", "2026-12-06T01:00:00Z"), now), "ok");
        assert_eq!(check(&signed_v1("s1", "n3", "2026-12-06T00:40:00Z"), now), "InvalidTimeStamp.Expired");
        assert_eq!(check(&signed_v1("s1", "n4", "yesterday"), now), "InvalidTimeStamp.Format");
        let mut unknown = signed_v1("s1", "n5", "2026-12-06T01:00:00Z");
        unknown[1].1 = "nobody".into();
        assert_eq!(check(&unknown, now), "InvalidAccessKeyId.NotFound");
        let mut tampered = signed_v1("s1", "n6", "2026-12-06T01:00:00Z");
        tampered[0].1 = "RefreshObjectCaches".into();
        assert_eq!(check(&tampered, now), "SignatureDoesNotMatch");
        assert_eq!(check(&good[..3], now), "MissingParameter");
        // After the validity window the nonce is forgotten, and the old timestamp refused.
        assert_eq!(check(&good, now + 2 * MAX_SKEW_SECS + 1), "InvalidTimeStamp.Expired");
        let none = Verifier::new(&[]);
        let call =
            SignedCall { method: &Method::GET, path: "/", query: &good, form: &[], headers: &headers, body: b"" };
        assert_eq!(code(none.verify(&call, now)), "InvalidAccessKeyId.NotFound");
    }

    #[test]
    fn acs3_signature_verifies_and_covers_the_body() {
        let v = Verifier::new(&[AccessKeyConfig { id: "id1".into(), secret: "s1".into() }]);
        let now = parse_iso8601("2026-12-06T01:00:00Z").unwrap();
        let mut headers = HeaderMap::new();
        headers.insert("host", "127.0.0.1:1".parse().unwrap());
        headers.insert("x-acs-action", "RefreshObjectCaches".parse().unwrap());
        headers.insert("x-acs-date", "2026-12-06T01:00:00Z".parse().unwrap());
        headers.insert("x-acs-signature-nonce", "abc".parse().unwrap());
        let query = pairs(&[("OwnerId", "1")]);
        let body = b"ObjectPath=%2Fa.jpg";
        let signed = ["host", "x-acs-action", "x-acs-date", "x-acs-signature-nonce"];
        let call = SignedCall { method: &Method::POST, path: "/", query: &query, form: &[], headers: &headers, body };
        let canonical = acs3_canonical_request(&call, &signed);
        assert!(canonical.starts_with("POST\n/\nOwnerId=1\nhost:127.0.0.1:1\n"), "{canonical}");
        let sts = format!("{ACS3}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
        let sig = hex::encode(hmac_sha256(b"s1", sts.as_bytes()));
        let auth = format!("{ACS3} Credential=id1,SignedHeaders={},Signature={sig}", signed.join(";"));
        headers.insert(http::header::AUTHORIZATION, auth.parse().unwrap());
        let call = SignedCall { method: &Method::POST, path: "/", query: &query, form: &[], headers: &headers, body };
        assert_eq!(code(v.verify(&call, now)), "ok");
        assert_eq!(code(v.verify(&call, now)), "SignatureNonceUsed");
        let other = SignedCall { body: b"ObjectPath=%2Fb.jpg", ..call };
        assert_eq!(code(v.verify(&other, now)), "SignatureDoesNotMatch");
    }
}
