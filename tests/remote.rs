//! Issue 5 through the proxy: private OSS with signed back-to-origin requests (V1,
//! V4, STS), S3 via a real S3 server (moto), revalidation, faults, stale-if-error,
//! and coalescing/purge races against a slow origin (issue 2 items 5 and 7).

use crate::common::mock_origin::{Fault, FaultOrigin, MockObject, MockOss};
use crate::common::server::{start_app, TestServer};
use http::StatusCode;
use imgedge::config::{TtlRule, TtlRuleKind};
use imgedge::origin::{Credentials, Origin, OriginConfig, OriginCredentials};
use imgedge::Config;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

use crate::origins::{fast_config as fast, ID, SECRET, STS_ID, STS_SECRET, TOKEN};

fn ttl_everything(secs: u64) -> Vec<TtlRule> {
    vec![TtlRule { kind: TtlRuleKind::Directory, value: "/".into(), ttl_secs: secs, weight: 1, prefer_origin: false }]
}

async fn bucket() -> MockOss {
    let keys = vec![Credentials::new(ID, SECRET), Credentials::new(STS_ID, STS_SECRET).with_token(TOKEN)];
    let m = MockOss::start("media", "cn-hangzhou", keys).await;
    m.put("photos/cat.jpg", MockObject::new(&b"\xff\xd8\xffcat-bytes"[..], "image/jpeg"));
    m
}

async fn proxy_for(spec: &str, creds: Credentials, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    tweak(&mut config);
    let origin =
        Origin::from_spec_with(spec, &OriginCredentials { oss: Some(creds.clone()), aws: Some(creds) }, &fast())
            .unwrap();
    start_app(config, origin).await
}

async fn proxy_http(f: &FaultOrigin, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    tweak(&mut config);
    let origin = Origin::from_spec_with(&format!("{}/", f.url()), &OriginCredentials::default(), &fast()).unwrap();
    start_app(config, origin).await
}

#[tokio::test]
async fn private_oss_bucket_through_the_proxy_with_v4_v1_and_sts() {
    let m = bucket().await;
    let spec = |sig: &str| format!("oss://media?endpoint={}&region=cn-hangzhou&signature={sig}", m.endpoint());
    for (sig, creds) in [
        ("v4", Credentials::new(ID, SECRET)),
        ("v1", Credentials::new(ID, SECRET)),
        ("v4", Credentials::new(STS_ID, STS_SECRET).with_token(TOKEN)),
        ("v1", Credentials::new(STS_ID, STS_SECRET).with_token(TOKEN)),
    ] {
        let sts = creds.security_token.is_some();
        let s = proxy_for(&spec(sig), creds, |_| {}).await;
        let r = s.get("/photos/cat.jpg").await;
        assert_eq!(r.status, StatusCode::OK, "{sig} sts={sts}: {}", r.text());
        assert_eq!(&r.body[..], b"\xff\xd8\xffcat-bytes");
        assert_eq!(r.header("content-type"), "image/jpeg");
        let seen = m.seen();
        let last = seen.last().unwrap();
        let auth = last.header("authorization").unwrap_or("");
        if sig == "v4" {
            assert!(auth.starts_with("OSS4-HMAC-SHA256 "), "{auth}");
        } else {
            assert!(auth.starts_with("OSS "), "{auth}");
        }
        assert_eq!(last.header("x-oss-security-token").is_some(), sts);
        // The client never sees anything of the credentials.
        let all_headers = format!("{:?}", r.headers);
        assert!(!all_headers.contains(ID) && !all_headers.contains("STS."), "{all_headers}");
    }
}

#[tokio::test]
async fn wrong_credentials_are_a_gateway_error_without_origin_details() {
    let m = bucket().await;
    let spec = format!("oss://media?endpoint={}&region=cn-hangzhou", m.endpoint());
    let s = proxy_for(&spec, Credentials::new(ID, "not-the-secret"), |_| {}).await;
    let r = s.get("/photos/cat.jpg").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    let body = r.text();
    assert!(body.contains("<Code>OriginAuthFailed</Code>"), "{body}");
    for leak in ["SignatureDoesNotMatch", "StringToSign", ID, "not-the-secret", "OSS4-HMAC"] {
        assert!(!body.contains(leak), "{leak} leaked: {body}");
    }
    // Not cached: a fixed secret would work on the next request.
    assert_eq!(s.get("/photos/cat.jpg").await.status, StatusCode::BAD_GATEWAY);
    assert!(m.requests() >= 2);
}

#[tokio::test]
async fn origin_errors_map_to_oss_codes() {
    let m = bucket().await;
    let mut archived = MockObject::new(&b"cold"[..], "image/jpeg");
    archived.archived = true;
    m.put("cold.jpg", archived);
    let spec = format!("oss://media?endpoint={}&region=cn-hangzhou", m.endpoint());
    let s = proxy_for(&spec, Credentials::new(ID, SECRET), |_| {}).await;
    let r = s.get("/nope.jpg").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.text().contains("<Code>NoSuchKey</Code>"));
    let r = s.get("/cold.jpg").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("<Code>InvalidObjectState</Code>"), "{}", r.text());
    // Anonymous access to a private bucket: AccessDenied, no origin body.
    let anon = {
        let origin = Origin::from_spec_with(&spec, &OriginCredentials::default(), &fast()).unwrap();
        start_app(Config::default(), origin).await
    };
    let r = anon.get("/photos/cat.jpg").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.text().contains("<Code>AccessDenied</Code>"));
}

#[tokio::test]
async fn stale_entries_revalidate_and_a_changed_etag_drops_variants() {
    let m = bucket().await;
    let spec = format!("oss://media?endpoint={}&region=cn-hangzhou", m.endpoint());
    let s = proxy_for(&spec, Credentials::new(ID, SECRET), |c| c.cache.ttl_rules = ttl_everything(1)).await;
    assert_eq!(s.get("/photos/cat.jpg").await.x_cache(), "MISS TCP_MISS");
    assert_eq!(s.get("/photos/cat.jpg?v=small").await.x_cache(), "MISS TCP_MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let before = m.requests();
    let r = s.get("/photos/cat.jpg").await;
    assert_eq!(r.x_cache(), "HIT TCP_REFRESH_HIT");
    assert_eq!(&r.body[..], b"\xff\xd8\xffcat-bytes");
    assert_eq!(m.requests(), before + 1);
    let reval = m.seen().last().cloned().unwrap();
    assert!(reval.header("if-none-match").is_some(), "revalidation must be conditional");

    // The original changes at the origin.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    m.put("photos/cat.jpg", MockObject::new(&b"\xff\xd8\xffnew-cat"[..], "image/jpeg"));
    let r = s.get("/photos/cat.jpg").await;
    assert_eq!(r.x_cache(), "MISS TCP_REFRESH_MISS");
    assert_eq!(&r.body[..], b"\xff\xd8\xffnew-cat");
    // Its other variant was dropped, not merely left stale.
    assert_eq!(s.get("/photos/cat.jpg?v=small").await.x_cache(), "MISS TCP_MISS");
}

#[tokio::test]
async fn origin_faults_become_502_and_504() {
    let f = FaultOrigin::start(&b"payload"[..], vec![Fault::Status(503); 3]).await;
    let s = proxy_http(&f, |_| {}).await;
    let r = s.get("/a.bin").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(!r.text().contains("injected"));
    assert_eq!(f.requests(), 3, "retried up to max_attempts");
    assert_eq!(s.get("/a.bin").await.status, StatusCode::OK, "recovers");

    let f = FaultOrigin::start(&b"payload"[..], vec![Fault::Delay(Duration::from_secs(3)); 3]).await;
    let s = proxy_http(&f, |_| {}).await;
    assert_eq!(s.get("/a.bin").await.status, StatusCode::GATEWAY_TIMEOUT);

    let f = FaultOrigin::start(&b"payload"[..], vec![Fault::Reset, Fault::Reset]).await;
    let s = proxy_http(&f, |_| {}).await;
    let r = s.get("/a.bin").await;
    assert_eq!(r.status, StatusCode::OK, "resets are retried");
    assert_eq!(&r.body[..], b"payload");
}

#[tokio::test]
async fn stale_if_error_serves_the_old_copy_and_says_so() {
    let f = FaultOrigin::start(
        &b"payload"[..],
        vec![Fault::Ok, Fault::Status(503), Fault::Status(503), Fault::Status(503)],
    )
    .await;
    let s = proxy_http(&f, |c| {
        c.cache.ttl_rules = ttl_everything(1);
        c.origin_client.stale_if_error_secs = 60;
    })
    .await;
    assert_eq!(s.get("/a.bin").await.x_cache(), "MISS TCP_MISS");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let r = s.get("/a.bin").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x_cache(), "HIT TCP_STALE_HIT");
    assert!(r.header("warning").contains("Stale"));
    assert_eq!(&r.body[..], b"payload");

    // Without stale-if-error the same failure is a 502.
    let f = FaultOrigin::start(
        &b"payload"[..],
        vec![Fault::Ok, Fault::Status(503), Fault::Status(503), Fault::Status(503)],
    )
    .await;
    let s = proxy_http(&f, |c| c.cache.ttl_rules = ttl_everything(1)).await;
    s.get("/a.bin").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(s.get("/a.bin").await.status, StatusCode::BAD_GATEWAY);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_origin_does_not_block_other_keys() {
    let f = FaultOrigin::start(&b"payload"[..], vec![Fault::Delay(Duration::from_millis(2500))]).await;
    let s = Arc::new(proxy_http(&f, |_| {}).await);
    let slow = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/slow.bin").await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let other = s.get("/other.bin").await;
    assert_eq!(other.status, StatusCode::OK);
    assert!(!slow.is_finished(), "the other key was answered while the slow one was still waiting");
    assert_eq!(slow.await.unwrap().status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_misses_on_a_slow_origin_make_one_request() {
    let f = FaultOrigin::start(&b"payload"[..], vec![Fault::Delay(Duration::from_millis(500))]).await;
    let s = Arc::new(proxy_http(&f, |_| {}).await);
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.get("/hot.bin").await })
        })
        .collect();
    let mut coalesced = 0;
    for t in tasks {
        let r = t.await.unwrap();
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(&r.body[..], b"payload");
        coalesced += usize::from(r.x_cache() == "HIT TCP_COALESCED_HIT");
    }
    assert_eq!(f.requests(), 1, "exactly one origin read");
    assert_eq!(coalesced, 49);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_during_a_fill_keeps_the_fill_out_of_the_cache() {
    let f = FaultOrigin::start(&b"old-bytes"[..], vec![Fault::Delay(Duration::from_millis(800))]).await;
    let s = Arc::new(proxy_http(&f, |_| {}).await);
    let fill = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/race.bin").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = s.admin_json("/purge", json!({"type": "ignore_params", "paths": ["/race.bin"]}), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let first = fill.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.x_cache(), "MISS TCP_MISS_NOCACHE", "served, not stored");
    assert_eq!(s.get("/race.bin").await.x_cache(), "MISS TCP_MISS");
    assert_eq!(f.requests(), 2);
}

#[tokio::test]
async fn s3_bucket_on_a_real_s3_server_through_the_proxy() {
    let Some(moto) = crate::common::moto::Moto::start().await else { return };
    let (status, body) = moto.put("media", None, b"", "").await;
    assert_eq!(status, 200, "CreateBucket: {body}");
    let (status, body) = moto.put("media", Some("photos/dog.jpg"), b"\xff\xd8\xffdog", "image/jpeg").await;
    assert_eq!(status, 200, "PutObject: {body}");
    let spec = format!("s3://media?endpoint=http://{}&region=us-east-1", moto.host);
    let creds = OriginCredentials { oss: None, aws: Some(moto.creds.clone()) };
    let cfg = OriginConfig { read_timeout: Duration::from_secs(20), ..fast() };
    let s = start_app(Config::default(), Origin::from_spec_with(&spec, &creds, &cfg).unwrap()).await;
    let r = s.get("/photos/dog.jpg").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(&r.body[..], b"\xff\xd8\xffdog");
    assert_eq!(s.get("/photos/dog.jpg").await.x_cache(), "HIT TCP_MEM_HIT");
    assert_eq!(s.get("/photos/cat.jpg").await.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn origin_cache_control_decides_ttl_after_rules() {
    // no-store from the origin: not cached.
    let f = FaultOrigin::start(
        &b"p"[..],
        vec![Fault::Headers("cache-control: no-store\r\n"), Fault::Headers("cache-control: no-store\r\n")],
    )
    .await;
    let s = proxy_http(&f, |_| {}).await;
    assert_eq!(s.get("/a.bin").await.x_cache(), "MISS TCP_MISS_NOCACHE");
    assert_eq!(s.get("/a.bin").await.x_cache(), "MISS TCP_MISS_NOCACHE");

    // max-age from the origin sets the TTL.
    let f = FaultOrigin::start(&b"p"[..], vec![Fault::Headers("cache-control: public, max-age=123\r\n")]).await;
    let s = proxy_http(&f, |_| {}).await;
    let r = s.get("/a.bin").await;
    assert_eq!(r.header("x-swift-cachetime"), "123");
    assert_eq!(s.get("/a.bin").await.x_cache(), "HIT TCP_MEM_HIT");

    // A weighted extension rule beats the origin's header; prefer_origin defers to it.
    let f = FaultOrigin::start(&b"p"[..], vec![Fault::Headers("cache-control: max-age=123\r\n"); 2]).await;
    let s = proxy_http(&f, |c| {
        c.cache.ttl_rules = vec![
            TtlRule {
                kind: TtlRuleKind::Extension,
                value: "bin".into(),
                ttl_secs: 777,
                weight: 90,
                prefer_origin: false,
            },
            TtlRule {
                kind: TtlRuleKind::Extension,
                value: "dat".into(),
                ttl_secs: 777,
                weight: 90,
                prefer_origin: true,
            },
        ]
    })
    .await;
    assert_eq!(s.get("/a.bin").await.header("x-swift-cachetime"), "777");
    assert_eq!(s.get("/a.dat").await.header("x-swift-cachetime"), "123");
}
