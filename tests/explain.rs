//! Issue 8 (item 5): the admin-only explain endpoint, and per-stage metrics.

use crate::common::server::{fixtures, start, start_with};
use http::{Method, StatusCode};

#[tokio::test]
async fn explain_shows_pipeline_key_cache_state_and_timings() {
    let s = start().await;
    let target = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,h_100,w_100/format,webp";
    s.get(target).await;
    let q = percent_encoding::utf8_percent_encode(target, percent_encoding::NON_ALPHANUMERIC);
    let r = s.send(Method::GET, &s.admin_url(&format!("/explain?url={q}")), &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["object_key"], "giunchedi_srgb_icc.jpg");
    assert!(v["pipeline"].as_str().unwrap().contains("resize"));
    assert!(v["cache_key"]["url"].as_str().unwrap().contains("x-oss-process="));
    assert_eq!(v["cache_key"]["hash"].as_str().unwrap().len(), 32);
    assert_eq!(v["cache"]["state"], "fresh");
    // 800x533 -> 100 wide: DCT scaling 1/4 keeps >= 2x the target.
    assert_eq!(v["run"]["shrink_on_load"], "1/4", "{v}");
    for k in ["decode_ms", "ops_ms", "encode_ms", "origin_ms"] {
        assert!(v["run"][k].as_f64().unwrap() >= 0.0, "{k}");
    }
    assert_eq!(v["run"]["content_type"], "image/webp");

    // Stage histograms moved with the processed request.
    let m = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    // One processed GET plus the explain's fresh run.
    assert!(m.contains("imgedge_process_stage_seconds_count{stage=\"decode\"} 2"), "{m}");
}

#[tokio::test]
async fn explain_needs_the_token_and_a_url() {
    let s = start_with(fixtures(), |c| c.purge_token = Some("t0k".into())).await;
    let r = s.send(Method::GET, &s.admin_url("/explain?url=/hello.txt"), &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let r =
        s.send(Method::GET, &s.admin_url("/explain"), &[("authorization", "Bearer t0k")], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = s
        .send(
            Method::GET,
            &s.admin_url("/explain?url=/hello.txt"),
            &[("authorization", "Bearer t0k")],
            bytes::Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    // The explain endpoint is not on the public listener.
    assert_eq!(s.get("/explain?url=/hello.txt").await.status, StatusCode::NOT_FOUND);
}
