//! Issue 15 items 8, 9, 14, 17 and the cache-status part of 20: compression of hits
//! done once at fill, a bounded purge log, purges racing revalidations, prefetch as a
//! task with per-path status, and the cache status carried as a value.

use crate::common::mock_origin::{Fault, FaultOrigin};
use crate::common::server::{fixtures, start_app, start_with, TestServer};
use http::{Method, StatusCode};
use imgedge::cache::CacheStatus;
use imgedge::config::{TtlRule, TtlRuleKind};
use imgedge::origin::{Origin, OriginCredentials};
use imgedge::Config;
use serde_json::json;
use std::io::Read;
use std::sync::Arc;
use std::time::Duration;

/// Polls `GET /tasks/<id>` until the task is complete (bounded: 30 s) and returns it.
pub async fn wait_for_task(s: &TestServer, id: &str) -> serde_json::Value {
    for _ in 0..300 {
        let r = s.send(Method::GET, &s.admin_url(&format!("/tasks/{id}")), &[], bytes::Bytes::new()).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        if v["Status"] == "Complete" {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("task {id} did not complete");
}

async fn proxy_http(f: &FaultOrigin, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    tweak(&mut config);
    let origin =
        Origin::from_spec_with(&format!("{}/", f.url()), &OriginCredentials::default(), &crate::origins::fast_config())
            .unwrap();
    start_app(config, origin).await
}

fn ttl_everything(secs: u64) -> Vec<TtlRule> {
    vec![TtlRule { kind: TtlRuleKind::Directory, value: "/".into(), ttl_secs: secs, weight: 1, prefer_origin: false }]
}

// --- item 8: compression once, at fill, off the reactor ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_json_is_compressed_once_at_fill_and_hits_only_pick_a_copy() {
    let dir = tempfile::tempdir().unwrap();
    let mut json = String::with_capacity(8 << 20);
    let mut i = 0u64;
    while json.len() < 8 << 20 {
        json.push_str(&format!("{{\"id\": {i}, \"name\": \"item-{}\", \"ok\": true}},\n", i * 7919 % 100_003));
        i += 1;
    }
    std::fs::write(dir.path().join("big.json"), &json).unwrap();
    std::fs::write(dir.path().join("small.txt"), b"small").unwrap();
    let s = Arc::new(start_with(dir.path(), |_| {}).await);

    let first = s.get_with("/big.json", &[("accept-encoding", "br")]).await;
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.header("content-encoding"), "br");
    assert_eq!(s.app.stats.fill_compressions(), 1, "compressed when filled");

    // Five br hits and an unrelated small hit at once: hits never compress.
    let mut tasks: Vec<_> = (0..5)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.get_with("/big.json", &[("accept-encoding", "gzip, br")]).await })
        })
        .collect();
    let small = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/small.txt").await })
    };
    assert_eq!(small.await.unwrap().status, StatusCode::OK);
    for t in tasks.drain(..) {
        let r = t.await.unwrap();
        assert_eq!(r.x_cache(), "HIT TCP_MEM_HIT");
        assert_eq!(r.header("content-encoding"), "br");
        let mut out = String::new();
        brotli::Decompressor::new(&r.body[..], 4096).read_to_string(&mut out).unwrap();
        assert!(out == json, "br copy decodes to the body");
    }
    // gzip-only clients get the gzip copy, others identity; ranges are identity slices.
    let gz = s.get_with("/big.json", &[("accept-encoding", "gzip")]).await;
    assert_eq!(gz.header("content-encoding"), "gzip");
    let mut out = String::new();
    flate2::read::GzDecoder::new(&gz.body[..]).read_to_string(&mut out).unwrap();
    assert!(out == json);
    let plain = s.get("/big.json").await;
    assert_eq!(plain.header("content-encoding"), "");
    assert_eq!(plain.body.len(), json.len());
    let range = s.get_with("/big.json", &[("accept-encoding", "br"), ("range", "bytes=10-19")]).await;
    assert_eq!(range.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(range.header("content-encoding"), "");
    assert_eq!(&range.body[..], &json.as_bytes()[10..20]);
    assert_eq!(s.app.stats.fill_compressions(), 1, "no hit compressed");
    // The coded copies are weighed with the entry.
    assert!(s.app.cache.weighted_size() > json.len() as u64);
}

// --- item 9: the purge log is bounded ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hundred_purges_of_a_thousand_paths_keep_the_purge_log_bounded() {
    let s = start_with(fixtures(), |_| {}).await;
    for call in 0..300 {
        let paths: Vec<String> = (0..1000).map(|i| format!("/purged/{call}/object-number-{i}.jpg")).collect();
        let r = s.admin_json("/purge", json!({"type": "file", "paths": paths}), None).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let (records, bytes) = s.app.cache.purge_log_size();
    assert!(records <= imgedge::cache::purge_log::DEFAULT_MAX_RECORDS, "{records} records");
    assert!(bytes <= imgedge::cache::purge_log::DEFAULT_MAX_BYTES, "{bytes} bytes");
    let m = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await;
    assert!(m.text().contains(&format!("imgedge_purge_log_records {records}")), "{}", m.text());
    // Fills that start after the purges are stored as usual.
    assert_eq!(s.get("/hello.txt").await.x_cache(), "MISS TCP_MISS");
    assert_eq!(s.get("/hello.txt").await.x_cache(), "HIT TCP_MEM_HIT");
}

// --- item 14: a purge during a revalidation keeps its result out ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_304_revalidation_keeps_the_old_copy_out() {
    let not_modified = "HTTP/1.1 304 Not Modified\r\netag: \"fault-etag\"\r\nconnection: close\r\n\r\n".to_owned();
    let f = FaultOrigin::start(
        &b"old-bytes"[..],
        vec![Fault::Ok, Fault::SlowRaw(Duration::from_millis(800), not_modified)],
    )
    .await;
    let s = Arc::new(proxy_http(&f, |c| c.cache.ttl_rules = ttl_everything(1)).await);
    assert_eq!(s.get("/reval.bin").await.x_cache(), "MISS TCP_MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let revalidation = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/reval.bin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.admin_json("/purge", json!({"type": "ignore_params", "paths": ["/reval.bin"]}), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let first = revalidation.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.x_cache(), "MISS TCP_MISS_NOCACHE", "served, not stored");
    let next = s.get("/reval.bin").await;
    assert_eq!(next.x_cache(), "MISS TCP_MISS", "the purge is not undone by the revalidation");
    assert_eq!(f.requests(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_refill_of_a_changed_original_keeps_it_out() {
    let changed =
        "HTTP/1.1 200 OK\r\ncontent-length: 9\r\netag: \"new-etag\"\r\nconnection: close\r\n\r\nnew-bytes".to_owned();
    let f = FaultOrigin::start(&b"old-bytes"[..], vec![Fault::Ok, Fault::SlowRaw(Duration::from_millis(800), changed)])
        .await;
    let s = Arc::new(proxy_http(&f, |c| c.cache.ttl_rules = ttl_everything(1)).await);
    assert_eq!(s.get("/refill.bin").await.x_cache(), "MISS TCP_MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let refill = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/refill.bin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.admin_json("/purge", json!({"type": "ignore_params", "paths": ["/refill.bin"]}), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let first = refill.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.x_cache(), "MISS TCP_MISS_NOCACHE", "served, not stored");
    assert_eq!(s.get("/refill.bin").await.x_cache(), "MISS TCP_MISS");
    assert_eq!(f.requests(), 3);
}

// --- item 17: prefetch is a task with per-path status ---

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_prefetch_on_a_slow_origin_answers_with_a_task_and_reports_each_path() {
    let delays = vec![Fault::Delay(Duration::from_millis(700)); 6];
    let f = FaultOrigin::start(&b"payload"[..], delays).await;
    // The admin call's deadline (1.5 s) is shorter than fetching six paths one by one.
    let s = proxy_http(&f, |c| {
        c.request_timeout_ms = 1500;
        c.cache.ttl_rules = ttl_everything(60);
    })
    .await;
    let mut paths: Vec<String> = (0..6).map(|i| format!("/pre/{i}.bin")).collect();
    paths.push("not-a-path".into());
    let r = s.admin_json("/prefetch", json!({ "paths": paths }), None).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let id = v["PushTaskId"].as_str().unwrap().to_owned();
    assert_eq!(v["paths"], 7);
    let task = wait_for_task(&s, &id).await;
    assert_eq!(task["total"], 7);
    assert_eq!(task["done"], 7);
    assert_eq!(task["failed"], 1);
    assert_eq!(task["Process"], "100%");
    for i in 0..6 {
        assert_eq!(task["paths"][i]["state"], "done", "{task}");
        assert_eq!(task["paths"][i]["cache"], "MISS TCP_MISS");
    }
    assert_eq!(task["paths"][6]["status"], 400);
    assert_eq!(s.get("/pre/3.bin").await.x_cache(), "HIT TCP_MEM_HIT");
    let unknown = s.send(Method::GET, &s.admin_url("/tasks/999999"), &[], bytes::Bytes::new()).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
}

// --- item 20: the cache status is a value on the response ---

#[tokio::test]
async fn the_cache_status_travels_as_a_response_extension() {
    let s = start_with(fixtures(), |_| {}).await;
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::OK);
    let entry = {
        let uri: http::Uri = "/hello.txt".parse().unwrap();
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, s.addr.to_string().parse().unwrap());
        let req = imgedge::request::ObjectRequest::parse(&Method::GET, &uri, &headers, &s.app.live().chains).unwrap();
        let served = imgedge::fill::serve_object(&s.app, &req).await.unwrap();
        let imgedge::fill::Served::Entry(entry, status) = served else { panic!("streamed") };
        assert_eq!(status, CacheStatus::Hit);
        let served = imgedge::fill::Served::Entry(Arc::clone(&entry), CacheStatus::StaleHit);
        let response = imgedge::respond::respond(&s.app, &req, served, std::time::Instant::now()).unwrap();
        assert_eq!(response.extensions().get::<CacheStatus>(), Some(&CacheStatus::StaleHit));
        entry
    };
    assert_eq!(&entry.body[..], std::fs::read(format!("{}/hello.txt", fixtures())).unwrap());
    // Stats count by the value: the hit above is labelled without reading X-Cache.
    assert_eq!(s.get("/hello.txt").await.x_cache(), "HIT TCP_MEM_HIT");
    let m = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await;
    assert!(m.text().contains("imgedge_requests_total{status=\"200\",cache=\"hit\"} 1"), "{}", m.text());
}
