//! Issue 7 (item 3): overload. CPU work goes through a bounded queue; when it is
//! full new misses get 503 + Retry-After at once while cache hits keep flowing;
//! nothing hangs past the deadline; the server recovers; queued work whose client
//! left is dropped.

use crate::common::server::start_with;
use http::StatusCode;
use std::sync::Arc;
use std::time::Duration;

fn corpus_photos() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus/photos").to_owned()
}

const BIG: &str = "/seeding_by_Clements_Engelhardt_16mp_progressive.jpg";

/// A miss that keeps the one worker busy for a few hundred ms on any machine: the
/// output is too large for shrink-on-load or the progressive scan skip, so the 16 MP
/// source is decoded in full and a ~3000 px JPEG encoded. (Small outputs now decode
/// in ~60 ms, too fast for a burst of three to outlast a round of hits on a busy CI box.)
fn slow_miss(i: usize) -> String {
    format!("{BIG}?x-oss-process=image/resize,w_{}", 3000 + i)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn full_queue_sheds_misses_and_keeps_serving_hits() {
    let s = Arc::new(
        start_with(corpus_photos(), |c| {
            c.workers.threads = 1;
            c.workers.queue = 2;
            c.request_timeout_ms = 60_000;
        })
        .await,
    );
    let hot = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_64";
    assert_eq!(s.get(hot).await.status, StatusCode::OK);
    assert_eq!(s.get(hot).await.x_cache(), "HIT TCP_MEM_HIT");

    // A burst of distinct misses, far more than one worker and two queue slots hold.
    let burst: Vec<_> = (0..24)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move {
                let r = s.get(&slow_miss(i)).await;
                (r.status, r.header("retry-after").to_owned())
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Hits are answered while the misses are still being worked on.
    for _ in 0..20 {
        let r = s.get(hot).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.x_cache(), "HIT TCP_MEM_HIT");
    }
    assert!(burst.iter().any(|t| !t.is_finished()), "hits did not wait for the burst");
    let (mut ok, mut shed) = (0, 0);
    for t in burst {
        let (status, retry_after) = tokio::time::timeout(Duration::from_secs(60), t).await.expect("no hang").unwrap();
        match status {
            StatusCode::OK => ok += 1,
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(retry_after, "1");
                shed += 1;
            }
            other => panic!("unexpected status {other}"),
        }
    }
    assert!(ok >= 1 && shed >= 1, "ok {ok}, shed {shed}");
    assert!(s.app.workers.rejected() >= shed as u64);
    // Recovered: a new miss is processed.
    let r = s.get(&format!("{BIG}?x-oss-process=image/resize,w_123")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(s.app.workers.queue_depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn queued_work_is_dropped_when_its_client_leaves() {
    use tokio::io::AsyncWriteExt;
    let s = start_with(corpus_photos(), |c| {
        c.workers.threads = 1;
        c.workers.queue = 16;
    })
    .await;
    let mut conns = Vec::new();
    for i in 0..6 {
        let mut c = tokio::net::TcpStream::connect(s.addr).await.unwrap();
        let req = format!("GET {} HTTP/1.1\r\nHost: t\r\n\r\n", slow_miss(i));
        c.write_all(req.as_bytes()).await.unwrap();
        conns.push(c);
    }
    // Wait until jobs are queued behind the single worker.
    for _ in 0..100 {
        if s.app.workers.queue_depth() >= 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(s.app.workers.queue_depth() >= 3, "jobs should be queued");
    drop(conns);
    // Every queued job belonged to a client that left: the queue empties without running them.
    for _ in 0..100 {
        if s.app.workers.queue_depth() == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(s.app.workers.queue_depth(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn requests_end_at_the_deadline() {
    let s = start_with(corpus_photos(), |c| {
        c.workers.threads = 1;
        c.workers.queue = 64;
        c.request_timeout_ms = 300;
    })
    .await;
    let s = Arc::new(s);
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.get(&format!("{BIG}?x-oss-process=image/resize,w_{}", 100 + i)).await.status })
        })
        .collect();
    for t in tasks {
        let status = tokio::time::timeout(Duration::from_secs(30), t).await.expect("no hang").unwrap();
        assert!(status == StatusCode::OK || status == StatusCode::GATEWAY_TIMEOUT, "{status}");
    }
}
