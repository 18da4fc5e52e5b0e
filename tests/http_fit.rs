//! Issue 8 (item 4): CORS, HTTP/2, and gzip/br for JSON/XML bodies only.

use crate::common::server::{fixtures, start, start_with};
use bytes::Bytes;
use http::{Method, StatusCode};
use std::io::Read;

#[tokio::test]
async fn cors_headers_and_preflight() {
    let s = start_with(fixtures(), |c| c.cors.allowed_origins = vec!["https://*.example.com".into()]).await;
    let r = s.get_with("/hello.txt", &[("origin", "https://www.example.com")]).await;
    assert_eq!(r.header("access-control-allow-origin"), "https://www.example.com");
    assert!(r.header("access-control-expose-headers").contains("X-Cache"));
    let r = s.get_with("/hello.txt", &[("origin", "https://evil.net")]).await;
    assert_eq!(r.header("access-control-allow-origin"), "");
    // Errors carry CORS headers too, so scripts can read the XML.
    let r = s.get_with("/missing", &[("origin", "https://www.example.com")]).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("access-control-allow-origin"), "https://www.example.com");

    let pre = [
        ("origin", "https://a.example.com"),
        ("access-control-request-method", "GET"),
        ("access-control-request-headers", "range"),
    ];
    let r = s.send(Method::OPTIONS, &s.url("/hello.txt"), &pre, Bytes::new()).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("access-control-allow-methods"), "GET, HEAD");
    assert_eq!(r.header("access-control-max-age"), "600");
    let r = s
        .send(
            Method::OPTIONS,
            &s.url("/hello.txt"),
            &[("origin", "https://evil.net"), ("access-control-request-method", "GET")],
            Bytes::new(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
}

/// A client that speaks HTTP/2 with prior knowledge (no upgrade, no Host header).
fn h2_client(
) -> hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Full<Bytes>>
{
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).http2_only(true).build_http()
}

#[tokio::test]
async fn http2_prior_knowledge_is_served() {
    let s = start().await;
    let client = h2_client();
    let resp = client.get(s.url("/hello.txt").parse().unwrap()).await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.version(), http::Version::HTTP_2);
}

#[tokio::test]
async fn http2_requests_key_the_cache_by_their_authority_like_http1() {
    let s = start().await;
    let client = h2_client();
    // HTTP/2 carries the host as :authority, with no Host header.
    let resp = client.get(s.url("/hello.txt").parse().unwrap()).await.unwrap();
    assert_eq!(resp.headers()["x-cache"], "MISS TCP_MISS");
    assert_eq!(s.get("/hello.txt").await.x_cache(), "HIT TCP_MEM_HIT", "HTTP/1.1 with the same host shares the entry");
}

#[tokio::test]
async fn xml_errors_are_compressed_images_are_not() {
    let s = start().await;
    let r = s
        .get_with(
            "/a-rather-long-missing-key/with/several/segments/to/make/the/body/longer.jpg",
            &[("accept-encoding", "gzip")],
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("content-encoding"), "gzip");
    let mut xml = String::new();
    flate2::read::GzDecoder::new(&r.body[..]).read_to_string(&mut xml).unwrap();
    assert!(xml.contains("<Code>NoSuchKey</Code>"));
    let r = s
        .get_with(
            "/a-rather-long-missing-key/with/several/segments/to/make/the/body/longer.jpg",
            &[("accept-encoding", "br, gzip")],
        )
        .await;
    assert_eq!(r.header("content-encoding"), "br");
    let r = s.get_with("/giunchedi_srgb_icc.jpg", &[("accept-encoding", "br, gzip")]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.header("content-encoding"), "");
}
