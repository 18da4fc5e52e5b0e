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
    // Issue 16 item 5: the origin's 404 is an answer, not an origin failure.
    assert_eq!(value(&text, "imgedge_origin_errors_total"), 0.0, "{text}");
    assert_eq!(value(&text, "imgedge_origin_not_found_total"), 1.0, "{text}");
}

/// The sum of every sample of a family (all label sets).
fn family_sum(text: &str, family: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(family) && l[family.len()..].starts_with(['{', ' ']))
        .filter_map(|l| l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()))
        .sum()
}

/// Issue 16 item 5: health checks and scrapes are not traffic: the request counter and
/// the duration histogram count only the public request.
#[tokio::test]
async fn probes_are_not_counted_as_requests() {
    let s = start().await;
    let scrape = || async { s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text() };
    for _ in 0..3 {
        let health = s.send(Method::GET, &s.admin_url("/healthz"), &[], bytes::Bytes::new()).await;
        assert_eq!(health.status, StatusCode::OK);
        scrape().await;
    }
    let text = scrape().await;
    assert_eq!(family_sum(&text, "imgedge_requests_total"), 0.0, "{text}");
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::OK);
    let text = scrape().await;
    assert_eq!(family_sum(&text, "imgedge_requests_total"), 1.0, "{text}");
    assert_eq!(family_sum(&text, "imgedge_request_duration_seconds_count"), 1.0, "{text}");
}

/// Issue 16 item 5: a missing object is counted as not found, never as an origin error.
#[tokio::test]
async fn origin_404_is_not_an_origin_error() {
    let s = start().await;
    for path in ["/missing.txt", "/missing.jpg?x-oss-process=image/resize,w_10"] {
        assert_eq!(s.get(path).await.status, StatusCode::NOT_FOUND, "{path}");
    }
    let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    assert_eq!(value(&text, "imgedge_origin_not_found_total"), 2.0, "{text}");
    assert_eq!(value(&text, "imgedge_origin_errors_total"), 0.0, "{text}");
}

/// Issue 16 item 5: request durations by cache status, one observation per request.
#[tokio::test]
async fn request_duration_histogram_is_labelled_by_cache_status() {
    let s = start().await;
    s.get("/hello.txt").await;
    s.get("/hello.txt").await;
    s.get("/hello.txt").await;
    s.get("/missing.txt").await;
    let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    assert!(text.contains("# TYPE imgedge_request_duration_seconds histogram"), "{text}");
    let count = |cache: &str| value(&text, &format!("imgedge_request_duration_seconds_count{{cache=\"{cache}\"}}"));
    assert_eq!((count("miss"), count("hit"), count("none")), (1.0, 2.0, 1.0), "{text}");
    let inf = value(&text, "imgedge_request_duration_seconds_bucket{le=\"+Inf\",cache=\"hit\"}")
        .max(value(&text, "imgedge_request_duration_seconds_bucket{cache=\"hit\",le=\"+Inf\"}"));
    assert_eq!(inf, 2.0, "{text}");
    assert!(value(&text, "imgedge_request_duration_seconds_sum{cache=\"hit\"}") > 0.0, "{text}");
}

/// Issue 16 item 5: the process collector's figures, with plausible values.
#[tokio::test]
async fn process_metrics_are_present_and_plausible() {
    let s = start().await;
    let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(text.contains("# TYPE process_cpu_seconds counter"), "{text}");
    let rss = value(&text, "process_resident_memory_bytes");
    assert!(rss > 1_000_000.0 && rss < 64e9, "{text}");
    // The test process holds at least stdio and the server's two listeners.
    assert!(value(&text, "process_open_fds") >= 5.0, "{text}");
    assert!(value(&text, "process_max_fds") >= value(&text, "process_open_fds"), "{text}");
    assert!(value(&text, "process_cpu_seconds_total") > 0.0, "{text}");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs_f64();
    let start = value(&text, "process_start_time_seconds");
    assert!(start > now - 7.0 * 86_400.0 && start <= now + 1.0, "{start} vs {now}");
}

/// Issue 6: a srcset's variants of one original share its decode; with the decoded-source
/// cache off every variant decodes. Since issue 20 (same URL, same bytes) a decode is
/// shared only at the exact shrink-on-load scale: these four variants need two scales,
/// so two decodes and two hits.
#[tokio::test]
async fn srcset_variants_share_one_decode() {
    let variants = [
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_320,h_320/format,webp",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_160,h_160/format,jpg",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_240,h_240/format,webp",
        "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_160,h_160/format,webp",
    ];
    for (decoded_size, expect_hits) in [(32u64 << 20, 2.0), (0, 0.0)] {
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
