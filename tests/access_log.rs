//! Issue 16 item 4: access log lines an operator can use. The real binary's stdout:
//! nginx's combined line (or JSON) with host, request and origin time, cache status and
//! request id; the query logged with auth parameter values redacted; the admin
//! listener's probes left out unless asked for.

use crate::binary::{http, sigterm, spawn};
use std::sync::mpsc::Receiver;
use std::time::Duration;

const TOKEN: &str = "tok-5e1b-admin-secret";

/// Every line the server printed until it exited (the reader thread ends at EOF).
fn drain(rx: &Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(10)) {
        lines.push(line);
    }
    lines
}

/// Runs the same traffic against a server started with `envs`: a signed miss, a hit,
/// a 404, and health and metrics probes. Returns every line it printed.
fn traffic(envs: &[(&str, &str)]) -> Vec<String> {
    let mut envs = envs.to_vec();
    envs.push(("IMGEDGE_PURGE_TOKEN", TOKEN));
    let (mut child, addr, admin, rx) = spawn(&["--origin", "fixtures"], &envs);
    let get = |target: &str| {
        http(
            &addr,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: img.example\r\nReferer: https://shop.example/p\r\nUser-Agent: probe-agent/1.0\r\nX-Forwarded-For: 203.0.113.7, 10.1.1.1\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    let signed = "/hello.txt?auth_key=1700000000-0-0-deadbeefsig&x-oss-signature=sigvalue2&X-Amz-Credential=AKIDEXAMPLE%2F20260101&keep=1";
    assert!(get(signed).starts_with("HTTP/1.1 200"));
    assert!(get(signed).starts_with("HTTP/1.1 200"));
    assert!(get("/missing.txt").starts_with("HTTP/1.1 404"));
    let probe = |path: &str| {
        http(
            &admin,
            &format!("GET {path} HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer {TOKEN}\r\nConnection: close\r\n\r\n"),
        )
    };
    assert!(probe("/healthz").starts_with("HTTP/1.1 200"));
    assert!(probe("/metrics").starts_with("HTTP/1.1 200"));
    sigterm(&child);
    assert!(child.wait().unwrap().success());
    let lines = drain(&rx);
    for line in &lines {
        for secret in ["deadbeefsig", "sigvalue2", "AKIDEXAMPLE", TOKEN] {
            assert!(!line.contains(secret), "{secret} logged: {line}");
        }
    }
    lines
}

const REDACTED_TARGET: &str = "/hello.txt?auth_key=REDACTED&x-oss-signature=REDACTED&X-Amz-Credential=REDACTED&keep=1";

#[test]
fn combined_lines_carry_every_field_with_signatures_redacted() {
    let lines = traffic(&[]);
    let access: Vec<&String> = lines.iter().filter(|l| l.contains(" request_id=")).collect();
    // Three public requests; the probes are not logged by default.
    assert_eq!(access.len(), 3, "{lines:#?}");
    assert!(!lines.iter().any(|l| l.contains("/healthz") || l.contains("GET /metrics")), "{lines:#?}");
    let miss = access[0];
    // Bare nginx combined line first: no tracing timestamp, level or target before it.
    assert!(miss.starts_with("127.0.0.1 - - ["), "{miss}");
    assert!(miss.contains(" +0000] "), "{miss}");
    for part in [
        format!("\"GET {REDACTED_TARGET} HTTP/1.1\" 200 "),
        "\"https://shop.example/p\" \"probe-agent/1.0\"".to_owned(),
        "host=\"img.example\"".to_owned(),
        " request_time=".to_owned(),
        " origin_time=".to_owned(),
        "cache=\"MISS TCP_MISS\"".to_owned(),
    ] {
        assert!(miss.contains(&part), "{part} missing in {miss}");
    }
    let bytes: u64 = miss.split("\" 200 ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!(bytes > 0, "{miss}");
    let id = miss.rsplit("request_id=").next().unwrap();
    assert!(!id.is_empty() && id != "-", "{miss}");
    assert!(access[1].contains("cache=\"HIT TCP_MEM_HIT\""), "{}", access[1]);
    // A hit did not wait on the origin.
    assert!(access[1].contains(" origin_time=0.000 "), "{}", access[1]);
    assert!(access[2].contains("\"GET /missing.txt HTTP/1.1\" 404 "), "{}", access[2]);
}

#[test]
fn json_lines_carry_every_field_and_the_forwarded_client() {
    let lines = traffic(&[("IMGEDGE_LOG_FORMAT", "json"), ("IMGEDGE_LOG_CLIENT_ADDRESS", "forwarded_for")]);
    let access: Vec<serde_json::Value> =
        lines.iter().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(access.len(), 3, "{lines:#?}");
    let miss = &access[0];
    assert_eq!(miss["client"], "203.0.113.7", "{miss}");
    assert_eq!(miss["method"], "GET");
    assert_eq!(miss["host"], "img.example");
    assert_eq!(miss["path"], REDACTED_TARGET);
    assert_eq!(miss["protocol"], "HTTP/1.1");
    assert_eq!(miss["status"], 200);
    assert!(miss["bytes"].as_u64().unwrap() > 0, "{miss}");
    assert!(miss["request_time"].as_f64().unwrap() >= 0.0, "{miss}");
    assert!(miss["origin_time"].as_f64().unwrap() >= 0.0, "{miss}");
    assert_eq!(miss["cache"], "MISS TCP_MISS");
    assert!(!miss["request_id"].as_str().unwrap().is_empty());
    assert_eq!(miss["referer"], "https://shop.example/p");
    assert_eq!(miss["user_agent"], "probe-agent/1.0");
    assert!(miss["time"].as_str().unwrap().ends_with('Z'), "{miss}");
    assert_eq!(access[1]["cache"], "HIT TCP_MEM_HIT");
    assert_eq!(access[1]["origin_time"], 0.0);
    assert_eq!(access[2]["status"], 404);
}

#[test]
fn probes_are_logged_when_asked() {
    let lines = traffic(&[("IMGEDGE_LOG_PROBES", "true")]);
    let access: Vec<&String> = lines.iter().filter(|l| l.contains(" request_id=")).collect();
    assert_eq!(access.len(), 5, "{lines:#?}");
    assert!(access[3].contains("\"GET /healthz HTTP/1.1\" 200 "), "{}", access[3]);
    assert!(access[4].contains("\"GET /metrics HTTP/1.1\" 200 "), "{}", access[4]);
}
