//! Issue 7 (item 7): nothing a client or origin sends makes imgedge fetch another
//! host: not tricky keys, not redirects, not Host headers.

use crate::common::mock_origin::{Fault, FaultOrigin};
use crate::common::server::start_app;
use http::StatusCode;
use imgedge::origin::{Origin, OriginConfig, OriginCredentials};
use imgedge::Config;

async fn proxy_to(origin: &FaultOrigin) -> crate::common::server::TestServer {
    let cfg = OriginConfig { max_attempts: 1, ..OriginConfig::default() };
    let o = Origin::from_spec_with(&format!("{}/prefix/", origin.url()), &OriginCredentials::default(), &cfg).unwrap();
    start_app(Config::default(), o).await
}

#[tokio::test]
async fn tricky_keys_and_host_headers_stay_on_the_origin() {
    let evil = FaultOrigin::start(&b"evil"[..], vec![]).await;
    let good = FaultOrigin::start(&b"good"[..], vec![]).await;
    let s = proxy_to(&good).await;
    let evil_host = evil.addr.to_string();
    let paths = [
        format!("//{evil_host}/x"),
        format!("/@{evil_host}/x"),
        format!("/http://{evil_host}/x"),
        format!("/..%2f..%2f{evil_host}"),
        format!("/%2F%2F{evil_host}/x"),
        format!("/a?x-oss-process=image/info&url=http://{evil_host}/"),
    ];
    for p in &paths {
        let _ = s.raw_status(p).await;
        let _ = s.get_with(p, &[("host", &evil_host)]).await;
    }
    let r = s.get_with("/ok.jpg", &[("host", &evil_host), ("x-forwarded-host", &evil_host)]).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], b"good");
    assert_eq!(evil.requests(), 0, "no request may reach another host");
    assert!(good.requests() >= 1);
}

#[tokio::test]
async fn origin_redirects_are_not_followed() {
    let evil = FaultOrigin::start(&b"evil"[..], vec![]).await;
    let redirect = format!(
        "HTTP/1.1 302 Found\r\nlocation: http://{}/secret\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
        evil.addr
    );
    let origin = FaultOrigin::start(&b"good"[..], vec![Fault::Raw(redirect)]).await;
    let s = proxy_to(&origin).await;
    let r = s.get("/moved.jpg").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY);
    assert!(!r.text().contains(&evil.addr.to_string()), "Location not leaked: {}", r.text());
    assert_eq!(r.header("location"), "");
    assert_eq!(evil.requests(), 0);
}
