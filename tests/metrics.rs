//! Issue 8 (item 1): Prometheus metrics on the admin listener move with traffic.

use crate::common::server::start;
use http::{Method, StatusCode};

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test]
async fn counters_move_with_requests() {
    let s = start().await;
    let scrape = || async { s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await };
    let before = scrape().await;
    assert_eq!(before.status, StatusCode::OK);
    let text = before.text();
    for name in [
        "imgedge_origin_latency_seconds",
        "imgedge_cache_entries",
        "imgedge_cache_size_bytes",
        "imgedge_cache_evictions_total",
        "imgedge_worker_queue_depth",
        "imgedge_worker_rejections_total",
        "imgedge_cache_hit_ratio",
    ] {
        assert!(text.contains(name), "{name} missing:\n{text}");
    }
    assert_eq!(value(&text, "imgedge_origin_requests_total"), 0.0);

    s.get("/hello.txt").await;
    s.get("/hello.txt").await;
    s.get("/missing.txt").await;

    let text = scrape().await.text();
    assert_eq!(value(&text, "imgedge_origin_requests_total"), 2.0, "{text}");
    assert_eq!(value(&text, "imgedge_requests_total{status=\"200\",cache=\"miss\"}"), 1.0, "{text}");
    assert_eq!(value(&text, "imgedge_requests_total{status=\"200\",cache=\"hit\"}"), 1.0, "{text}");
    assert_eq!(value(&text, "imgedge_requests_total{status=\"404\",cache=\"none\"}"), 1.0, "{text}");
    assert_eq!(value(&text, "imgedge_cache_entries"), 1.0);
    assert!(value(&text, "imgedge_served_bytes_total") >= 38.0);
    assert!((value(&text, "imgedge_cache_hit_ratio") - 0.5).abs() < 1e-9, "{text}");
    assert_eq!(value(&text, "imgedge_origin_latency_seconds_count"), 2.0);
    assert_eq!(value(&text, "imgedge_origin_errors_total"), 1.0);
}

/// Issue 6: a srcset's variants of one original decode it once; with the decoded-source
/// cache off every variant decodes.
#[tokio::test]
async fn srcset_variants_share_one_decode() {
    let variants = [
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_320,h_320/format,webp",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_160,h_160/format,jpg",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_240,h_240/format,webp",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_160,h_160/format,webp",
    ];
    for (decoded_size, expect_hits) in [(32u64 << 20, 3.0), (0, 0.0)] {
        let s = crate::common::server::start_with(crate::common::server::fixtures(), |c| {
            c.cache.decoded_size = decoded_size
        })
        .await;
        for v in variants {
            let r = s.get(v).await;
            assert_eq!(r.status, StatusCode::OK, "{v}");
        }
        let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
        let hits = value(&text, "imgedge_decoded_sources_total{result=\"hit\"}");
        let decoded = value(&text, "imgedge_decoded_sources_total{result=\"decoded\"}");
        assert_eq!((hits, decoded), (expect_hits, 4.0 - expect_hits), "decoded_size {decoded_size}:\n{text}");
    }
}

/// Issue 6 (stampede): 50 identical cold image requests → one origin fetch and one
/// encode, all 200, shown by the counters.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_stampede_is_one_fetch_and_one_encode() {
    let s = std::sync::Arc::new(crate::common::server::start().await);
    let url = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_400,h_400/format,jpg/quality,Q_80";
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = std::sync::Arc::clone(&s);
            tokio::spawn(async move { s.get(url).await.status })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap(), StatusCode::OK);
    }
    let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    assert_eq!(value(&text, "imgedge_origin_requests_total"), 1.0, "{text}");
    assert_eq!(value(&text, "imgedge_process_stage_seconds_count{stage=\"encode\"}"), 1.0, "{text}");
}
