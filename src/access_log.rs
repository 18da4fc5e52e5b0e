//! The access log: one line per request, in nginx's combined format (with imgedge's
//! own fields after it) or as one JSON object, written to the `imgedge::access`
//! tracing target (main.rs prints that target bare, without level or timestamp).
//!
//! The query string is logged, but the values of URL-auth and presign parameters
//! (`auth_key`, `Signature`, `OSSAccessKeyId`, `x-oss-signature*`, `X-Amz-Signature`,
//! `X-Amz-Credential`, `security-token`, ...: the cache key's list,
//! [`crate::cache::key::is_auth_param`]) are written as `REDACTED`: they are
//! credentials, and a log is read by more people than the keys' owners.

use crate::config::{ClientAddress, LogConfig, LogFormat};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The tracing target of access log lines.
pub const TARGET: &str = "imgedge::access";

/// What stands in for a redacted parameter value.
pub const REDACTED: &str = "REDACTED";

/// Everything one line says about a request.
#[derive(Debug)]
pub struct Record<'a> {
    /// When the request arrived.
    pub time: SystemTime,
    /// The request head.
    pub head: &'a http::request::Parts,
    /// The TCP peer.
    pub peer: IpAddr,
    /// Response status.
    pub status: u16,
    /// Body bytes sent (None: not known up front, e.g. a streamed body).
    pub bytes: Option<u64>,
    /// Time to the response head.
    pub duration: Duration,
    /// Cache status (`HIT TCP_MEM_HIT`, ...; None: not an object answer).
    pub cache: Option<&'a str>,
    /// Time this request spent waiting on the origin.
    pub origin: Duration,
    /// The `x-oss-request-id` sent back.
    pub request_id: &'a str,
    /// `http` or `https`: how the request arrived.
    pub scheme: &'a str,
}

impl Record<'_> {
    /// The line in the configured format.
    pub fn line(&self, config: &LogConfig) -> String {
        match config.format {
            LogFormat::Combined => self.combined(config.client_address),
            LogFormat::Json => self.json(config.client_address),
        }
    }

    fn client(&self, source: ClientAddress) -> IpAddr {
        match source {
            ClientAddress::Peer => self.peer,
            ClientAddress::ForwardedFor => {
                let xff = self.header(http::header::HeaderName::from_static("x-forwarded-for"));
                crate::access::rules::first_forwarded_for(xff).unwrap_or(self.peer)
            }
        }
    }

    fn header(&self, name: http::header::HeaderName) -> Option<&str> {
        self.head.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Host header, else the URI's authority (HTTP/2).
    fn host(&self) -> Option<&str> {
        self.header(http::header::HOST).or_else(|| self.head.uri.authority().map(http::uri::Authority::as_str))
    }

    /// Path and query, auth parameter values redacted.
    fn target(&self) -> String {
        let path = self.head.uri.path();
        match self.head.uri.query() {
            Some(q) => format!("{path}?{}", redact_query(q)),
            None => path.to_owned(),
        }
    }

    /// `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent
    /// "$http_referer" "$http_user_agent"`, then `host="..." request_time=s
    /// origin_time=s cache="..." request_id=... scheme=http|https`.
    fn combined(&self, source: ClientAddress) -> String {
        let request = format!("{} {} {:?}", self.head.method, self.target(), self.head.version);
        let mut line = format!(
            "{} - - [{}] \"{}\" {} {} \"{}\" \"{}\"",
            self.client(source),
            time_local(self.time),
            escape(&request),
            self.status,
            self.bytes.map_or_else(|| "-".to_owned(), |b| b.to_string()),
            escape(self.header(http::header::REFERER).unwrap_or("-")),
            escape(self.header(http::header::USER_AGENT).unwrap_or("-")),
        );
        let _ = write!(
            line,
            " host=\"{}\" request_time={:.3} origin_time={:.3} cache=\"{}\" request_id={} scheme={}",
            escape(self.host().unwrap_or("-")),
            self.duration.as_secs_f64(),
            self.origin.as_secs_f64(),
            self.cache.unwrap_or("-"),
            self.request_id,
            self.scheme,
        );
        line
    }

    fn json(&self, source: ClientAddress) -> String {
        serde_json::json!({
            "time": rfc3339(self.time),
            "client": self.client(source).to_string(),
            "method": self.head.method.as_str(),
            "host": self.host(),
            "path": self.target(),
            "protocol": format!("{:?}", self.head.version),
            "status": self.status,
            "bytes": self.bytes,
            "request_time": round_ms(self.duration),
            "origin_time": round_ms(self.origin),
            "cache": self.cache,
            "request_id": self.request_id,
            "scheme": self.scheme,
            "referer": self.header(http::header::REFERER),
            "user_agent": self.header(http::header::USER_AGENT),
        })
        .to_string()
    }
}

/// Seconds with millisecond precision, as nginx's `$request_time`.
fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1000.0).round() / 1000.0
}

/// The query with each auth parameter's value replaced by [`REDACTED`]; names are
/// compared decoded, as the cache key compares them.
pub fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|token| {
            let name = token.split_once('=').map_or(token, |(n, _)| n);
            if crate::cache::key::is_auth_param(&crate::url::decode_component(name)) {
                format!("{name}={REDACTED}")
            } else {
                token.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Quotes and backslashes escaped, control and non-ASCII bytes as `\xHH` (nginx's
/// escaping), so a header cannot forge a field or a line.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'"' | b'\\' => {
                out.push('\\');
                out.push(b as char);
            }
            0x20..=0x7e => out.push(b as char),
            _ => {
                let _ = write!(out, "\\x{b:02X}");
            }
        }
    }
    out
}

/// (year, month, day, hour, minute, second, millisecond) in UTC.
fn civil(time: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = crate::civil::civil_from_days(days);
    (year, month, day, rem / 3600, rem % 3600 / 60, rem % 60, since.subsec_millis())
}

/// nginx's `$time_local` (in UTC): `06/Dec/2026:02:40:07 +0000`.
fn time_local(time: SystemTime) -> String {
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let (y, mo, d, h, mi, s, _) = civil(time);
    let month = MONTHS[(mo as usize).saturating_sub(1) % 12];
    format!("{d:02}/{month}/{y}:{h:02}:{mi:02}:{s:02} +0000")
}

/// RFC 3339 in UTC with milliseconds: `2026-12-06T02:40:07.123Z`.
fn rfc3339(time: SystemTime) -> String {
    let (y, mo, d, h, mi, s, ms) = civil(time);
    format!("{y}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{ms:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
        let mut b = http::Request::builder().method("GET").uri(uri);
        for (n, v) in headers {
            b = b.header(*n, *v);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn auth_values_are_redacted_and_the_rest_kept() {
        let q = "x-oss-process=image/resize,w_10&auth_key=1-0-0-sig&OSSAccessKeyId=AK&Signature=s%2B&x-oss-signature-version=v4&X-Amz-Signature=abc&X-Amz-Credential=AK%2Fdate&security-token=tok&a=1&flag";
        assert_eq!(
            redact_query(q),
            "x-oss-process=image/resize,w_10&auth_key=REDACTED&OSSAccessKeyId=REDACTED&Signature=REDACTED&x-oss-signature-version=REDACTED&X-Amz-Signature=REDACTED&X-Amz-Credential=REDACTED&security-token=REDACTED&a=1&flag"
        );
        // Encoded names are still auth parameters.
        assert_eq!(redact_query("auth%5Fkey=secret"), "auth%5Fkey=REDACTED");
    }

    #[test]
    fn times_are_formatted_in_utc() {
        let t = UNIX_EPOCH + Duration::from_millis(1_796_524_807_123); // 2026-12-06 02:40:07.123
        assert_eq!(time_local(t), "06/Dec/2026:02:40:07 +0000");
        assert_eq!(rfc3339(t), "2026-12-06T02:40:07.123Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn combined_and_json_carry_every_field() {
        let h = head(
            "/a.jpg?auth_key=1-0-0-sig&w=1",
            &[
                ("host", "img.example"),
                ("referer", "https://r/\"x"),
                ("user-agent", "UA/1"),
                ("x-forwarded-for", "203.0.113.9, 10.0.0.1"),
            ],
        );
        let r = Record {
            time: UNIX_EPOCH + Duration::from_secs(1_796_524_807),
            head: &h,
            peer: "10.0.0.1".parse().unwrap(),
            status: 200,
            bytes: Some(42),
            duration: Duration::from_millis(12),
            cache: Some("MISS TCP_MISS"),
            origin: Duration::from_millis(7),
            request_id: "RID1",
            scheme: "https",
        };
        let mut config = LogConfig::default();
        assert_eq!(
            r.line(&config),
            "10.0.0.1 - - [06/Dec/2026:02:40:07 +0000] \"GET /a.jpg?auth_key=REDACTED&w=1 HTTP/1.1\" 200 42 \"https://r/\\\"x\" \"UA/1\" host=\"img.example\" request_time=0.012 origin_time=0.007 cache=\"MISS TCP_MISS\" request_id=RID1 scheme=https"
        );
        config.format = LogFormat::Json;
        config.client_address = ClientAddress::ForwardedFor;
        let v: serde_json::Value = serde_json::from_str(&r.line(&config)).unwrap();
        assert_eq!(v["client"], "203.0.113.9");
        assert_eq!(v["path"], "/a.jpg?auth_key=REDACTED&w=1");
        assert_eq!(v["host"], "img.example");
        assert_eq!(v["status"], 200);
        assert_eq!(v["bytes"], 42);
        assert_eq!(v["request_time"], 0.012);
        assert_eq!(v["origin_time"], 0.007);
        assert_eq!(v["cache"], "MISS TCP_MISS");
        assert_eq!(v["request_id"], "RID1");
        assert_eq!(v["scheme"], "https");
        assert_eq!(v["referer"], "https://r/\"x");
        assert_eq!(v["user_agent"], "UA/1");
        assert_eq!(v["time"], "2026-12-06T02:40:07.000Z");
    }
}
