//! Issue 15, items 15, 16 and 16b: errors that must be a clear 4xx and say nothing
//! internal, the folder origin's odd files, validators from the future, and the admin
//! token on every admin route.

use crate::common::server::{fixtures, start_with};
use http::{Method, StatusCode};
use std::time::Duration;

/// A folder origin in a temp dir holding `fixtures/<name>` files, for odd files.
fn temp_origin(copy: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in copy {
        std::fs::copy(std::path::Path::new(&fixtures()).join(name), dir.path().join(name)).unwrap();
    }
    dir
}

#[tokio::test]
async fn a_path_segment_over_255_bytes_is_404_not_502() {
    let s = start_with(fixtures(), |_| {}).await;
    let long = "a".repeat(300);
    let r = s.get(&format!("/{long}.jpg")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
    let r = s.get(&format!("/docs/{long}/x.jpg?x-oss-process=image/resize,w_10")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.text());
}

#[tokio::test]
async fn a_fifo_in_the_folder_origin_is_refused_without_blocking() {
    let dir = temp_origin(&["hello.txt"]);
    let fifo = dir.path().join("pipe.jpg");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let s = start_with(dir.path(), |_| {}).await;
    for pq in ["/pipe.jpg", "/pipe.jpg?x-oss-process=image/resize,w_10"] {
        // Without O_NONBLOCK the open waits for a writer forever (a blocked thread).
        let r = tokio::time::timeout(Duration::from_secs(10), s.get(pq)).await.expect("FIFO open blocked");
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{pq}: {}", r.text());
    }
    // A unix socket is no object either (its open fails with ENXIO, once a 502).
    let _socket = std::os::unix::net::UnixListener::bind(dir.path().join("sock.jpg")).unwrap();
    assert_eq!(s.get("/sock.jpg").await.status, StatusCode::NOT_FOUND);
    // /dev/null through a symlink stays outside the root: also refused.
    std::os::unix::fs::symlink("/dev/null", dir.path().join("null.jpg")).unwrap();
    assert_eq!(s.get("/null.jpg").await.status, StatusCode::NOT_FOUND);
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::OK);
}

#[tokio::test]
async fn if_modified_since_in_the_future_is_ignored() {
    let s = start_with(fixtures(), |_| {}).await;
    let future = [("if-modified-since", "Fri, 01 Jan 2100 00:00:00 GMT")];
    // Miss (origin validators) and hit (cache validators) both ignore it.
    for _ in 0..2 {
        let r = s.get_with("/hello.txt", &future).await;
        assert_eq!(r.status, StatusCode::OK, "{:?}", r.headers);
        assert!(!r.body.is_empty());
    }
    // A past date after Last-Modified still gives 304.
    let lm = s.get("/hello.txt").await.header("last-modified").to_owned();
    assert_eq!(s.get_with("/hello.txt", &[("if-modified-since", &lm)]).await.status, StatusCode::NOT_MODIFIED);
}

#[tokio::test]
async fn metrics_need_the_admin_token_and_bearer_is_case_insensitive() {
    let s = start_with(fixtures(), |c| c.purge_token = Some("t0k".into())).await;
    let get = |auth: Option<&'static str>| {
        let headers: Vec<(&str, &str)> = auth.map(|a| vec![("authorization", a)]).unwrap_or_default();
        let url = s.admin_url("/metrics");
        let s = &s;
        async move { s.send(Method::GET, &url, &headers, bytes::Bytes::new()).await }
    };
    let r = get(None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.header("www-authenticate"), "Bearer");
    assert_eq!(get(Some("Bearer wrong")).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(get(Some("t0k")).await.status, StatusCode::UNAUTHORIZED);
    for auth in ["Bearer t0k", "bearer t0k", "BEARER t0k"] {
        let r = get(Some(auth)).await;
        assert_eq!(r.status, StatusCode::OK, "{auth}");
        assert!(r.text().contains("imgedge_"), "{auth}");
    }
    // The same parser guards purge.
    let purge = s
        .send(
            Method::POST,
            &s.admin_url("/purge"),
            &[("content-type", "application/json"), ("authorization", "bEaReR t0k")],
            r#"{"paths": ["/hello.txt"]}"#,
        )
        .await;
    assert_eq!(purge.status, StatusCode::OK, "{}", purge.text());
    // Without a token configured, /metrics stays open.
    let open = start_with(fixtures(), |_| {}).await;
    let r = open.send(Method::GET, &open.admin_url("/metrics"), &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_405_names_the_allowed_methods() {
    let s = start_with(fixtures(), |_| {}).await;
    let r = s.send(Method::DELETE, &s.url("/hello.txt"), &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "GET, HEAD, OPTIONS");
    let r = s.send(Method::GET, &s.admin_url("/purge"), &[], bytes::Bytes::new()).await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(r.header("allow"), "POST");
}

/// 16b: the PNG whose 25-byte PLTE made png 0.18.1 panic is a 400 that says the source
/// cannot be decoded, not a 500, and the body carries nothing of the panic.
#[tokio::test]
async fn a_png_that_panics_the_decoder_is_a_400() {
    let dir = temp_origin(&["bad_plte25.png", "hello.txt"]);
    let s = start_with(dir.path(), |_| {}).await;
    // (image/info reads the header only and answers 200, as OSS does.)
    for chain in ["image/resize,w_10", "image/format,jpg"] {
        let r = s.get(&format!("/bad_plte25.png?x-oss-process={chain}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{chain}: {}", r.text());
        let body = r.text();
        assert!(body.contains("<Code>BadRequest</Code>"), "{body}");
        assert!(body.contains("cannot be decoded"), "{body}");
        assert!(!body.to_lowercase().contains("panic") && !body.contains("PLTE"), "{body}");
    }
    // The worker survived: the next request is served.
    assert_eq!(s.get("/hello.txt").await.status, StatusCode::OK);
}
