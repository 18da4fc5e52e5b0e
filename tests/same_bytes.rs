//! Issue 20 item 7: same URL, same bytes. A rendition must not depend on what the
//! decoded-source cache happened to hold: two servers that see the same URLs in different
//! orders answer each URL with identical bytes and ETag.

use crate::common::server::start;

const URLS: [&str; 4] = [
    "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_300,h_300/format,webp",
    "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_lfit,w_100,h_100/format,webp",
    "/libvips_rotation_6_progressive_icc.jpg?x-oss-process=image/resize,m_lfit,w_400,h_400/format,jpg",
    "/libvips_rotation_6_progressive_icc.jpg?x-oss-process=image/resize,m_lfit,w_90,h_90/format,jpg",
];

async fn fetch_all(order: &[usize]) -> Vec<(Vec<u8>, String)> {
    let s = start().await;
    let mut out = vec![(Vec::new(), String::new()); URLS.len()];
    for &i in order {
        let r = s.get(URLS[i]).await;
        assert_eq!(r.status, 200, "{}", URLS[i]);
        out[i] = (r.body.to_vec(), r.header("etag").to_owned());
    }
    s.stop().await;
    out
}

#[tokio::test]
async fn a_rendition_is_byte_identical_across_request_orders() {
    // Large sizes first: a cache serving any finer decode would resize the small ones
    // from the large ones' pixels. Small first: each decodes at its own scale.
    let big_first = fetch_all(&[0, 1, 2, 3]).await;
    let small_first = fetch_all(&[1, 0, 3, 2]).await;
    for (i, url) in URLS.iter().enumerate() {
        assert!(big_first[i].0 == small_first[i].0, "{url}: bytes differ between request orders");
        assert_eq!(big_first[i].1, small_first[i].1, "{url}: ETag differs");
        assert!(!big_first[i].1.is_empty(), "{url}: has an ETag");
    }
}
