//! Issue 17 item 5: the original a rendition is made from is a cache entry of its own
//! (the plain GET's key), filled once through the single-flight lock, honouring the
//! origin's cache headers and purges. Counted with the mock OSS origin.

use crate::common::mock_origin::{MockObject, MockOss};
use crate::common::server::{start_app, TestServer};
use http::StatusCode;
use imgedge::config::{Config, TtlRule, TtlRuleKind};
use imgedge::origin::{Origin, OriginCredentials};
use serde_json::json;
use std::time::Duration;

const LANDSCAPE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg");
/// EXIF orientation 6: served upright, taller than wide.
const PORTRAIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/libvips_rotation_6_progressive_icc.jpg");

fn object(path: &str) -> MockObject {
    MockObject::new(std::fs::read(path).unwrap(), "image/jpeg")
}

async fn server(m: &MockOss) -> TestServer {
    server_with(m, |_| {}).await
}

async fn server_with(m: &MockOss, tweak: impl FnOnce(&mut Config)) -> TestServer {
    let mut config = Config::default();
    tweak(&mut config);
    config.origin = format!("oss://media?endpoint={}&region=cn-hangzhou", m.endpoint());
    config.validate().unwrap();
    let origin =
        Origin::from_spec_with(&config.origin, &OriginCredentials::default(), &config.origin_client.to_origin_config())
            .unwrap();
    start_app(config, origin).await
}

async fn bucket_with(obj: MockObject) -> MockOss {
    let m = MockOss::start_with("media", "cn-hangzhou", vec![], true).await;
    m.put("p.jpg", obj);
    m
}

fn width(w: u32) -> String {
    format!("/p.jpg?x-oss-process=image/resize,w_{w}")
}

/// (width, height) of a JPEG response.
fn dims(body: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(body).unwrap();
    (img.width(), img.height())
}

#[tokio::test]
async fn a_srcset_of_four_widths_and_the_plain_original_cost_one_origin_get() {
    let m = bucket_with(object(LANDSCAPE)).await;
    let s = server(&m).await;
    for w in [100, 200, 300, 400] {
        let r = s.get(&width(w)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(dims(&r.body).0, w);
    }
    let plain = s.get("/p.jpg").await;
    assert_eq!(plain.status, StatusCode::OK);
    assert_eq!(plain.body, std::fs::read(LANDSCAPE).unwrap());
    assert_eq!(plain.x_cache(), "HIT TCP_MEM_HIT", "the renditions' original is the plain GET's entry");
    assert_eq!(m.requests(), 1, "one origin GET for the srcset and the plain object");
    // The renditions themselves are cached too.
    assert_eq!(s.get(&width(200)).await.x_cache(), "HIT TCP_MEM_HIT");
    assert_eq!(m.requests(), 1);
}

#[tokio::test]
async fn a_cached_plain_original_serves_its_first_rendition() {
    let m = bucket_with(object(LANDSCAPE)).await;
    let s = server(&m).await;
    assert_eq!(s.get("/p.jpg").await.status, StatusCode::OK);
    let r = s.get(&width(120)).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.x_cache(), "MISS TCP_MISS");
    assert_eq!(m.requests(), 1);
}

#[tokio::test]
async fn a_burst_of_four_widths_of_a_new_original_shares_one_origin_get() {
    let m = bucket_with(object(LANDSCAPE)).await;
    let s = server(&m).await;
    let urls: Vec<String> = [110, 220, 330, 440].into_iter().map(width).collect();
    let all = futures_util::future::join_all(urls.iter().map(|u| s.get(u))).await;
    for (r, w) in all.iter().zip([110, 220, 330, 440]) {
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(dims(&r.body).0, w);
    }
    assert_eq!(m.requests(), 1, "four concurrent renditions of a new original: one origin GET");
}

#[tokio::test]
async fn a_no_store_original_is_refetched_for_every_rendition() {
    let mut obj = object(LANDSCAPE);
    obj.cache_control = Some("no-store".into());
    let m = bucket_with(obj).await;
    let s = server(&m).await;
    for (i, w) in [100, 200, 100].into_iter().enumerate() {
        let r = s.get(&width(w)).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.x_cache(), "MISS TCP_MISS_NOCACHE");
        assert_eq!(m.requests(), i + 1);
    }
    assert_eq!(s.get("/p.jpg").await.x_cache(), "MISS TCP_MISS_NOCACHE");
    assert_eq!(m.requests(), 4);
}

#[tokio::test]
async fn a_private_original_is_not_kept_either() {
    let mut obj = object(LANDSCAPE);
    obj.cache_control = Some("private, max-age=600".into());
    let m = bucket_with(obj).await;
    let s = server(&m).await;
    s.get(&width(100)).await;
    s.get(&width(200)).await;
    assert_eq!(m.requests(), 2);
}

#[tokio::test]
async fn a_purge_of_the_original_makes_renditions_refetch_it() {
    let m = bucket_with(object(LANDSCAPE)).await;
    let s = server(&m).await;
    let (w, h) = dims(&s.get(&width(100)).await.body);
    assert!(w > h, "landscape first");
    assert_eq!(m.requests(), 1);
    // The object changes at the origin; the original's URL is purged.
    m.put("p.jpg", object(PORTRAIT));
    let r = s.admin_json("/purge", json!({"type": "file", "paths": ["/p.jpg"]}), None).await;
    assert_eq!(r.status, StatusCode::OK);
    // A new width is made from the new original, fetched once.
    let (w, h) = dims(&s.get(&width(200)).await.body);
    assert!(h > w, "made from the new original");
    assert_eq!(m.requests(), 2);
    // A purge of every variant of the path re-makes the old width from a refetched original.
    let r = s.admin_json("/purge", json!({"type": "ignore_params", "paths": ["/p.jpg"]}), None).await;
    assert_eq!(r.status, StatusCode::OK);
    let (w, h) = dims(&s.get(&width(100)).await.body);
    assert!(h > w, "re-made from the new original");
    assert_eq!(m.requests(), 3);
    let (w, h) = dims(&s.get(&width(300)).await.body);
    assert!(h > w);
    assert_eq!(m.requests(), 3, "the refetched original is cached again");
}

#[tokio::test]
async fn an_expired_original_is_revalidated_with_its_etag_and_its_renditions_follow() {
    let m = bucket_with(object(LANDSCAPE)).await;
    let s = server_with(&m, |c| {
        c.cache.ttl_rules = vec![TtlRule {
            kind: TtlRuleKind::Directory,
            value: "/".into(),
            ttl_secs: 1,
            weight: 10,
            prefer_origin: false,
        }];
    })
    .await;
    s.get(&width(100)).await;
    s.get(&width(200)).await;
    assert_eq!(m.requests(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    // Unchanged at the origin: one conditional GET refreshes the original, and the
    // rendition is refreshed without being re-made.
    let r = s.get(&width(100)).await;
    assert_eq!(r.x_cache(), "HIT TCP_REFRESH_HIT");
    assert_eq!(m.requests(), 2);
    assert!(m.seen().last().unwrap().header("if-none-match").is_some(), "revalidated with the ETag");
    assert_eq!(s.get("/p.jpg").await.x_cache(), "HIT TCP_MEM_HIT");
    assert_eq!(s.get(&width(200)).await.x_cache(), "HIT TCP_REFRESH_HIT");
    assert_eq!(m.requests(), 2);
    // Changed at the origin: the original's revalidation gets the new object and drops
    // the renditions of the old one; both widths are re-made from it with no other GET.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    m.put("p.jpg", object(PORTRAIT));
    let (w, h) = dims(&s.get(&width(100)).await.body);
    assert!(h > w, "re-made from the new original");
    assert_eq!(m.requests(), 3);
    let r = s.get(&width(200)).await;
    assert_eq!(r.x_cache(), "MISS TCP_MISS", "dropped with the old original");
    let (w, h) = dims(&r.body);
    assert!(h > w);
    assert_eq!(m.requests(), 3);
}
