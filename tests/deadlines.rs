//! Issue 15 (items 10, 11): one deadline per request, work cancelled once every client
//! left, cost limits for expensive ops, and coalescing without a cliff (waiters wait
//! for the one fill as long as their own deadline allows).

use crate::common::mock_origin::{Fault, FaultOrigin};
use crate::common::server::{start_with, TestServer};
use http::{Method, StatusCode};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

fn corpus_photos() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/photos").to_owned()
}

const BIG: &str = "/seeding_by_Clements_Engelhardt_16mp_progressive.jpg";

async fn metric(s: &TestServer, series: &str) -> f64 {
    let text = s.send(Method::GET, &s.admin_url("/metrics"), &[], bytes::Bytes::new()).await.text();
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Item 10: blur at its maximum on the 16 MP photo takes tens of seconds; once its one
/// client disconnects the worker is free again soon, and the next miss is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn work_whose_client_left_is_cancelled() {
    let s = start_with(corpus_photos(), |c| {
        c.workers.threads = 1;
        c.request_timeout_ms = 120_000;
        // Let the 16 MP r_50 blur through the cost limit: this test is about cancelling.
        c.limits.max_filter_cost = u64::MAX;
    })
    .await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let req = format!("GET {BIG}?x-oss-process=image/blur,r_50,s_50 HTTP/1.1\r\nHost: localhost\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    // Wait (bounded) until the blur holds the one worker, then leave.
    for _ in 0..200 {
        if s.app.workers.busy() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(s.app.workers.busy(), 1, "the blur never started");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(conn);
    // Without cancellation the blur holds the worker for its whole run (~20 s or more).
    let left = Instant::now();
    while s.app.workers.busy() != 0 && left.elapsed() < Duration::from_secs(8) {
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(s.app.workers.busy(), 0, "the worker still runs the abandoned blur");
    let r = s.get("/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_64").await;
    assert_eq!(r.status, StatusCode::OK);
    s.stop().await;
}

/// Item 10: an expensive op over its cost budget is a 400 before any pixel is decoded.
#[tokio::test]
async fn blur_over_its_cost_budget_is_400() {
    let s = start_with(corpus_photos(), |_| {}).await;
    let r = s.get(&format!("{BIG}?x-oss-process=image/blur,r_50,s_50")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
    assert!(r.text().contains("ImageTooLarge"), "{}", r.text());
    // The same blur after a resize is cheap enough.
    let r = s.get(&format!("{BIG}?x-oss-process=image/resize,w_400/blur,r_50,s_50")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    s.stop().await;
}

/// Item 11: 30 simultaneous requests for an object whose origin answers in 3 s, with a
/// lock timeout far below that: one origin GET, and every request gets the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_origin_costs_one_fetch_for_thirty_waiters() {
    let body = std::fs::read(format!("{}/giunchedi_srgb_icc.jpg", corpus_photos())).unwrap();
    let origin = FaultOrigin::start(body.clone(), vec![Fault::Delay(Duration::from_secs(3)); 30]).await;
    let s = Arc::new(
        start_with(origin.url(), |c| {
            c.request_timeout_ms = 10_000;
            c.cache.lock_timeout_ms = 200;
        })
        .await,
    );
    let all: Vec<_> = (0..30)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.get("/slow.jpg").await })
        })
        .collect();
    for t in all {
        let r = tokio::time::timeout(Duration::from_secs(30), t).await.expect("no hang").unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        assert_eq!(r.body.len(), body.len());
    }
    assert_eq!(origin.requests(), 1, "the origin was asked more than once");
}

/// Item 11: 20 simultaneous requests for a transform slower than the lock timeout cost
/// one encode, and all succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_transform_costs_one_encode_for_twenty_waiters() {
    let s = Arc::new(
        start_with(corpus_photos(), |c| {
            c.request_timeout_ms = 60_000;
            c.cache.lock_timeout_ms = 100;
        })
        .await,
    );
    let chain = format!("{BIG}?x-oss-process=image/resize,w_1500/blur,r_30,s_10");
    let all: Vec<_> = (0..20)
        .map(|_| {
            let (s, chain) = (Arc::clone(&s), chain.clone());
            tokio::spawn(async move { s.get(&chain).await })
        })
        .collect();
    for t in all {
        let r = tokio::time::timeout(Duration::from_secs(90), t).await.expect("no hang").unwrap();
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    }
    assert_eq!(metric(&s, "imgedge_process_stage_seconds_count{stage=\"encode\"}").await, 1.0);
}

/// Item 11: the fill goes on for the others when the request that started it leaves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fill_survives_its_starter_leaving() {
    let body = std::fs::read(format!("{}/giunchedi_srgb_icc.jpg", corpus_photos())).unwrap();
    let origin = FaultOrigin::start(body.clone(), vec![Fault::Delay(Duration::from_secs(2)); 5]).await;
    let s = Arc::new(start_with(origin.url(), |c| c.request_timeout_ms = 10_000).await);
    let mut starter = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    // The same Host as the test client sends, so both requests share a cache key.
    let req = format!("GET /left.jpg HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr);
    starter.write_all(req.as_bytes()).await.unwrap();
    for _ in 0..200 {
        if origin.requests() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let waiter = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/left.jpg").await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(starter);
    let r = tokio::time::timeout(Duration::from_secs(20), waiter).await.expect("no hang").unwrap();
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.x_cache(), "HIT TCP_COALESCED_HIT");
    assert_eq!(origin.requests(), 1);
}
