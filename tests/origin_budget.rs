//! Issue 15 item B7: origin bodies stay bounded in memory. A chunked origin body (no
//! Content-Length) is cut at the buffer limit as it streams: a processed request is
//! refused at once, a plain object streams through uncached; and bodies read whole are
//! charged against the bytes-in-flight budget (`origin_client.max_bytes_in_flight`).

use crate::common::mock_origin::{Fault, FaultOrigin};
use crate::common::server::{start_app, TestServer};
use http::StatusCode;
use imgedge::origin::{Origin, OriginConfig, OriginCredentials};
use imgedge::Config;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const MIB: u64 = 1 << 20;
/// What the origin would send if nobody stopped it.
const ENDLESS: u64 = 300 * MIB;
/// What the origin may get out before the proxy stops it: the 1 MiB buffer limit plus
/// the loopback socket buffers between origin, proxy and client (a few MiB each).
const ALLOWED: u64 = 48 * MIB;

async fn proxy(f: &FaultOrigin, origin: OriginConfig) -> TestServer {
    let mut config = Config::default();
    config.cache.max_object_size = MIB;
    config.limits.max_source_bytes = MIB;
    config.validate().unwrap();
    let origin = Origin::from_spec_with(&format!("{}/", f.url()), &OriginCredentials::default(), &origin).unwrap();
    start_app(config, origin).await
}

fn origin_config() -> OriginConfig {
    // The shipped default object cap (4 GiB), so only the buffer limit can stop a body.
    OriginConfig { max_attempts: 1, max_object_bytes: 4 << 30, ..OriginConfig::default() }
}

/// Waits (bounded) until the origin stops writing, and returns what it got out.
async fn settled(sent: &AtomicU64) -> u64 {
    let mut last = sent.load(Ordering::SeqCst);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = sent.load(Ordering::SeqCst);
        if now == last {
            return now;
        }
        last = now;
    }
    last
}

#[tokio::test]
async fn a_chunked_source_over_the_limit_is_refused_without_reading_it() {
    let sent = Arc::new(AtomicU64::new(0));
    let f = FaultOrigin::start(&b""[..], vec![Fault::Chunked { total: ENDLESS, sent: Arc::clone(&sent) }]).await;
    let s = proxy(&f, origin_config()).await;
    let r = s.get("/big.jpg?x-oss-process=image/resize,w_10").await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.text());
    let sent = settled(&sent).await;
    assert!(sent < ALLOWED, "the origin sent {sent} bytes for a 1 MiB source limit");
}

#[tokio::test]
async fn a_chunked_object_over_the_cache_limit_streams_through_uncached() {
    let sent = Arc::new(AtomicU64::new(0));
    let f = FaultOrigin::start(&b""[..], vec![Fault::Chunked { total: ENDLESS, sent: Arc::clone(&sent) }]).await;
    let s = proxy(&f, origin_config()).await;
    let mut conn = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    conn.write_all(b"GET /big.bin HTTP/1.1\r\nHost: example.com\r\n\r\n").await.unwrap();
    // The head, then a few MiB of body: the object is passed on as it arrives.
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = Instant::now() + Duration::from_secs(60);
    let head_end = loop {
        assert!(Instant::now() < deadline, "no response head");
        let n = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "connection closed before the head");
        got.extend_from_slice(&buf[..n]);
        if let Some(i) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let sent_at_head = sent.load(Ordering::SeqCst);
    let head = String::from_utf8_lossy(&got[..head_end]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(!head.contains("content-length"), "the length is unknown: {head}");
    while (got.len() - head_end) < 2 * MIB as usize {
        let n = tokio::time::timeout(Duration::from_secs(60), conn.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0, "body ended after {} bytes", got.len() - head_end);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(sent_at_head < ALLOWED, "the head came only after {sent_at_head} origin bytes were read");
    drop(conn);
    let sent = settled(&sent).await;
    assert!(sent < ENDLESS, "the origin kept sending after the client left");
    assert_eq!(s.app.cache.entry_count(), 0, "nothing was cached");
}

#[tokio::test]
async fn bodies_read_whole_wait_for_the_bytes_in_flight_budget() {
    // 900 kB in five slow pieces holds the whole 1 MiB budget for about 6 s; a second
    // fetch meanwhile waits its read timeout (2 s) for the budget, then gets 503.
    let body = vec![7u8; 900_000];
    let slow = Fault::SlowBody { pause: Duration::from_millis(1200), chunks: 5 };
    let f = FaultOrigin::start(body.clone(), vec![slow, Fault::Ok, Fault::Ok]).await;
    let cfg = OriginConfig { read_timeout: Duration::from_secs(2), max_bytes_in_flight: MIB, ..origin_config() };
    let s = Arc::new(proxy(&f, cfg).await);
    let first = {
        let s = Arc::clone(&s);
        tokio::spawn(async move { s.get("/a.bin").await })
    };
    while f.requests() == 0 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let second = s.get("/b.bin").await;
    assert_eq!(second.status, StatusCode::SERVICE_UNAVAILABLE, "{}", second.text());
    assert_eq!(second.header("retry-after"), "1");
    let first = first.await.unwrap();
    assert_eq!(first.status, StatusCode::OK);
    assert_eq!(first.body.len(), body.len());
    // The budget came back.
    let third = s.get("/c.bin").await;
    assert_eq!(third.status, StatusCode::OK, "{}", third.text());
}
