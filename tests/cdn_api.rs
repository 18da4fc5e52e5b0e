//! The CDN's own API on the admin listener (issue 16 item 6), driven by the official
//! Alibaba Cloud SDKs from PyPI (tests/python/, run with `<crate>/.venv/bin/python`;
//! install with `python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt`):
//! signed calls refresh and prefetch, Describe* report the tasks, bad signatures,
//! unknown keys, stale timestamps and replayed nonces get the API's codes.

use crate::common::server::{fixtures, start_with, TestServer};
use bytes::Bytes;
use http::{Method, StatusCode};
use imgedge::cdn_api::sign;
use imgedge::config::AccessKeyConfig;
use serde_json::Value;
use std::path::PathBuf;

const KEY_ID: &str = "LTAItestid";
const SECRET: &str = "testsecret";

async fn start_signed() -> TestServer {
    start_with(fixtures(), |c| {
        c.admin.access_keys = vec![AccessKeyConfig { id: KEY_ID.into(), secret: SECRET.into() }];
    })
    .await
}

/// Runs one SDK script against the server and parses its JSON summary. Fails (never
/// skips) when the venv or the SDKs are missing.
async fn run_sdk(script: &str, s: &TestServer, refresh_url: &str, push_url: &str) -> Value {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let python = root.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "{} missing: python3 -m venv .venv && .venv/bin/pip install -r tests/requirements.txt",
        python.display()
    );
    let script = root.join("tests/python").join(script);
    let args = [s.admin.to_string(), KEY_ID.into(), SECRET.into(), refresh_url.into(), push_url.into()];
    let out = tokio::task::spawn_blocking(move || std::process::Command::new(python).arg(script).args(args).output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "SDK script failed (are the SDKs in .venv? see tests/requirements.txt):\n{stderr}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("bad script output {e}: {stderr}"))
}

async fn warm(s: &TestServer, path: &str) {
    s.get(path).await;
    assert!(s.get(path).await.x_cache().starts_with("HIT"), "{path} should be cached");
}

/// The checks both SDKs share: refresh dropped the URL, push warmed the other,
/// Describe* and the quota show them.
async fn check_common(s: &TestServer, out: &Value, refresh_url: &str, push_url: &str) {
    let refresh_id = out["refresh"]["ok"]["RefreshTaskId"].as_str().expect("RefreshTaskId");
    assert!(out["refresh"]["ok"]["RequestId"].is_string(), "{out}");
    assert!(s.get("/hello.txt").await.x_cache().starts_with("MISS"), "refreshed URL must be a MISS");
    assert!(out["push"]["ok"]["PushTaskId"].is_string(), "{out}");
    let push_task = &out["push_task"]["ok"];
    assert_eq!(push_task["TotalCount"], 1, "{out}");
    let t = &push_task["Tasks"][0];
    assert_eq!((t["Status"].as_str(), t["Process"].as_str()), (Some("Complete"), Some("100%")), "{out}");
    assert_eq!((t["ObjectType"].as_str(), t["ObjectPath"].as_str()), (Some("preload"), Some(push_url)));
    assert!(s.get("/docs/nested.txt").await.x_cache().starts_with("HIT"), "pushed URL must be cached");
    let tasks = &out["tasks"]["ok"];
    assert_eq!(
        (tasks["TotalCount"].as_u64(), tasks["PageNumber"].as_u64(), tasks["PageSize"].as_u64()),
        (Some(1), Some(1), Some(20))
    );
    let t = &tasks["Tasks"]["CDNTask"][0];
    assert_eq!(t["TaskId"], refresh_id);
    assert_eq!((t["ObjectPath"].as_str(), t["ObjectType"].as_str()), (Some(refresh_url), Some("file")));
    assert_eq!((t["Status"].as_str(), t["Process"].as_str()), (Some("Complete"), Some("100%")));
    assert!(sign::parse_iso8601(t["CreationTime"].as_str().unwrap_or("")).is_some(), "{t}");
    assert!(t["Description"].is_string());
    let q = &out["quota"]["ok"];
    assert_eq!((q["UrlQuota"].as_str(), q["UrlRemain"].as_str()), (Some("10000"), Some("9999")), "{q}");
    assert_eq!((q["PreloadQuota"].as_str(), q["PreloadRemain"].as_str()), (Some("1000"), Some("999")));
    assert_eq!((q["DirQuota"].as_str(), q["RegexRemain"].as_str()), (Some("100"), Some("20")));
    assert!(q["BlockQuota"].is_string() && q["IgnoreParamsRemain"].is_string());
    assert_eq!(
        (out["unknown_key"]["status"].as_u64(), out["unknown_key"]["code"].as_str()),
        (Some(404), Some("InvalidAccessKeyId.NotFound")),
        "{out}"
    );
}

#[tokio::test]
async fn rpc_sdk_refreshes_pushes_describes_and_is_refused_when_wrong() {
    let s = start_signed().await;
    warm(&s, "/hello.txt").await;
    let (refresh_url, push_url) = (s.url("/hello.txt"), s.url("/docs/nested.txt"));
    let out = run_sdk("cdn_sdk_rpc.py", &s, &refresh_url, &push_url).await;
    check_common(&s, &out, &refresh_url, &push_url).await;
    let preload = &out["preload_tasks"]["ok"];
    assert_eq!((preload["TotalCount"].as_u64(), preload["PageSize"].as_u64()), (Some(1), Some(50)), "{out}");
    // The server says SignatureDoesNotMatch with its string to sign; this SDK compares
    // that with its own and reports the secret as wrong, as against the real API.
    let wrong = &out["wrong_secret"];
    assert_eq!(
        (wrong["status"].as_u64(), wrong["code"].as_str()),
        (Some(400), Some("InvalidAccessKeySecret")),
        "{out}"
    );
    assert_eq!(out["first_send"]["status"], 200, "{out}");
    assert_eq!(out["replay"]["status"], 400, "{out}");
    assert_eq!(out["replay"]["body"]["Code"], "SignatureNonceUsed");
}

#[tokio::test]
async fn acs3_sdk_refreshes_pushes_describes_and_is_refused_when_wrong() {
    let s = start_signed().await;
    warm(&s, "/hello.txt").await;
    let (refresh_url, push_url) = (s.url("/hello.txt"), s.url("/docs/nested.txt"));
    let out = run_sdk("cdn_sdk_acs3.py", &s, &refresh_url, &push_url).await;
    check_common(&s, &out, &refresh_url, &push_url).await;
    let wrong = &out["wrong_secret"];
    assert_eq!((wrong["status"].as_u64(), wrong["code"].as_str()), (Some(400), Some("SignatureDoesNotMatch")), "{out}");
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// A v1-signed GET query for `action` (none when empty) with `extra` parameters, signed with `secret`.
fn signed_query(action: &str, extra: &[(&str, &str)], secret: &str, nonce: &str, timestamp: u64) -> String {
    let ts = sign::format_iso8601(timestamp);
    let mut params: Vec<(String, String)> = [
        ("Action", action),
        ("Version", "2018-05-10"),
        ("Format", "JSON"),
        ("AccessKeyId", KEY_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("SignatureNonce", nonce),
        ("Timestamp", ts.as_str()),
    ]
    .iter()
    .chain(extra)
    .filter(|(n, v)| *n != "Action" || !v.is_empty())
    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
    .collect();
    let signature = sign::rpc_signature(secret, &sign::rpc_string_to_sign("GET", params.iter()));
    params.push(("Signature".into(), signature));
    params
        .iter()
        .map(|(n, v)| format!("{}={}", sign::percent_encode(n), sign::percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

async fn api_get(s: &TestServer, query: &str) -> (StatusCode, Value) {
    let r = s.send(Method::GET, &s.admin_url(&format!("/?{query}")), &[], Bytes::new()).await;
    assert_eq!(r.header("content-type"), "application/json;charset=utf-8", "{}", r.text());
    (r.status, serde_json::from_slice(&r.body).unwrap())
}

#[tokio::test]
async fn raw_calls_get_the_apis_status_codes_and_json_errors() {
    let s = start_signed().await;
    let t = now();
    let (status, v) = api_get(&s, &signed_query("DescribeRefreshQuota", &[], SECRET, "n1", t)).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = api_get(&s, &signed_query("DescribeRefreshQuota", &[], "bad", "n2", t)).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("SignatureDoesNotMatch")), "{v}");
    assert!(v["Message"].as_str().unwrap().contains("server string to sign is:GET&%2F&"), "{v}");
    for field in ["RequestId", "HostId", "Recommend"] {
        assert!(v[field].is_string(), "{field}: {v}");
    }
    let (status, v) = api_get(&s, &signed_query("DescribeRefreshQuota", &[], SECRET, "n3", t - 3600)).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidTimeStamp.Expired")), "{v}");
    let (status, v) = api_get(&s, "Action=DescribeRefreshQuota&AccessKeyId=LTAItestid").await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("MissingParameter")), "{v}");
    // A v1 call takes its Action from its signed parameters, never from a header.
    let no_action = signed_query("", &[], SECRET, "n10", t);
    let r = s
        .send(
            Method::GET,
            &s.admin_url(&format!("/?{no_action}")),
            &[("x-acs-action", "DescribeRefreshQuota")],
            Bytes::new(),
        )
        .await;
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!((r.status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("MissingParameter")), "{v}");
    let (status, v) = api_get(&s, &signed_query("DeleteCdnDomain", &[], SECRET, "n4", t)).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::NOT_FOUND, Some("InvalidAction.NotFound")), "{v}");
    // Purge parameters are checked as /purge checks them, with the CDN's codes.
    let (status, v) =
        api_get(&s, &signed_query("RefreshObjectCaches", &[("ObjectPath", "no-slash.jpg")], SECRET, "n5", t)).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("InvalidObjectPath.Malformed")), "{v}");
    let (status, v) = api_get(&s, &signed_query("DescribeRefreshTaskById", &[], SECRET, "n6", t)).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::BAD_REQUEST, Some("MissingParameter")), "{v}");
    // Directory refresh by GET, then listed by type.
    let dir = s.url("/docs/");
    let (status, v) = api_get(
        &s,
        &signed_query("RefreshObjectCaches", &[("ObjectPath", &dir), ("ObjectType", "Directory")], SECRET, "n7", t),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (_, v) =
        api_get(&s, &signed_query("DescribeRefreshTasks", &[("ObjectType", "directory")], SECRET, "n8", t)).await;
    assert_eq!(v["Tasks"]["CDNTask"][0]["ObjectPath"], dir.as_str(), "{v}");
    let (_, v) = api_get(&s, &signed_query("DescribeRefreshQuota", &[], SECRET, "n9", t)).await;
    assert_eq!(v["DirRemain"], "99", "{v}");
}

#[tokio::test]
async fn without_access_keys_every_api_call_is_refused() {
    let s = start_with(fixtures(), |c| c.purge_token = Some("tok".into())).await;
    let (status, v) = api_get(&s, &signed_query("DescribeRefreshQuota", &[], SECRET, "n1", now())).await;
    assert_eq!((status, v["Code"].as_str()), (StatusCode::NOT_FOUND, Some("InvalidAccessKeyId.NotFound")), "{v}");
}

#[tokio::test]
async fn prefetch_takes_the_cdn_parameters_in_the_query_or_form() {
    let s = start_with(fixtures(), |_| {}).await;
    let url = sign::percent_encode(&s.url("/hello.txt"));
    let r = s
        .send(Method::POST, &s.admin_url(&format!("/prefetch?ObjectPath={url}&ObjectType=File")), &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(s.get("/hello.txt").await.x_cache().starts_with("HIT"));
    let form = format!("ObjectPath={}", sign::percent_encode(&s.url("/docs/nested.txt")));
    let r = s
        .send(Method::POST, &s.admin_url("/prefetch"), &[("content-type", "application/x-www-form-urlencoded")], form)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert!(s.get("/docs/nested.txt").await.x_cache().starts_with("HIT"));
    let r = s
        .send(Method::POST, &s.admin_url("/prefetch?ObjectPath=%2Fa%2F&ObjectType=Directory"), &[], Bytes::new())
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[test]
fn the_binary_reads_access_keys_from_the_environment() {
    let keys = format!("other:x, {KEY_ID}:{SECRET}");
    let (child, _addr, admin, _rx) = crate::binary::spawn(&[], &[("IMGEDGE_ADMIN_ACCESS_KEYS", &keys)]);
    let q = signed_query("DescribeRefreshQuota", &[], SECRET, "b1", now());
    let reply =
        crate::binary::http(&admin, &format!("GET /?{q} HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"));
    crate::binary::sigterm(&child);
    let _ = child.wait_with_output();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgedge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("--check-config")
        .env("IMGEDGE_ADMIN_ACCESS_KEYS", "no-secret-here")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("IMGEDGE_ADMIN_ACCESS_KEYS entry 1"), "{stderr}");
}
