//! Issue 15 (item 12): connections that send nothing (plain TCP, half an HTTP/2
//! preface) are closed after the header timeout, they do not block service, and the
//! number of open public connections is capped.

use crate::common::server::{fixtures, start_with};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads until EOF or `limit`; true when the server closed the socket.
async fn closed_by_server(conn: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 256];
    let until = Instant::now() + limit;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, conn.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// One plain HTTP/1.1 GET on a fresh connection; the status line's code.
async fn raw_get(addr: std::net::SocketAddr, path: &str) -> u16 {
    let mut c = TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    c.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = c.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_connections_are_closed_and_do_not_block_service() {
    let s = start_with(fixtures(), |c| c.http.header_read_timeout_ms = 1_000).await;
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(s.addr).await.unwrap());
    }
    for _ in 0..20 {
        let mut c = TcpStream::connect(s.addr).await.unwrap();
        // Half of the 24-byte HTTP/2 client preface.
        c.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
        silent.push(c);
    }
    let served = tokio::time::timeout(Duration::from_secs(10), raw_get(s.addr, "/hello.txt")).await;
    assert_eq!(served.expect("a normal request is served beside 320 silent sockets"), 200);
    // Every silent socket is closed by the server (generous bound: 1 s timeout).
    for (i, c) in silent.iter_mut().enumerate() {
        assert!(closed_by_server(c, Duration::from_secs(15)).await, "silent connection {i} still open");
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn open_connections_are_capped() {
    let s = start_with(fixtures(), |c| {
        c.http.max_connections = 20;
        c.http.header_read_timeout_ms = 60_000;
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..20 {
        held.push(TcpStream::connect(s.addr).await.unwrap());
    }
    // A 21st connection waits in the listen backlog: not served while all 20 are open.
    let pending = tokio::spawn(raw_get(s.addr, "/hello.txt"));
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert!(!pending.is_finished(), "served beyond the connection cap");
    held.clear();
    let status = tokio::time::timeout(Duration::from_secs(10), pending).await.expect("served once slots free");
    assert_eq!(status.unwrap(), 200);
    s.stop().await;
}
