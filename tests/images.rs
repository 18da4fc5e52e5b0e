//! Issue 3 through the server: processed responses have the right Content-Type and
//! size, an ETag of the processed bytes, are cached under the full URL (second
//! request a HIT with identical bytes), and bad chains get OSS XML errors.

use crate::common::server::start;
use http::StatusCode;

fn dims(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory(bytes).expect("decodable output");
    (img.width(), img.height())
}

#[tokio::test]
async fn every_output_format_has_its_content_type() {
    let s = start().await;
    for (fmt, ct) in [
        ("jpg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
        ("bmp", "image/bmp"),
        // Spec 4.12: format,gif gives GIF only for GIF sources; others keep their format.
        ("gif", "image/jpeg"),
        ("tiff", "image/tiff"),
    ] {
        let r = s.get(&format!("/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_100/format,{fmt}")).await;
        assert_eq!(r.status, StatusCode::OK, "{fmt}: {}", r.text());
        assert_eq!(r.header("content-type"), ct, "{fmt}");
        if fmt != "webp" {
            assert_eq!(dims(&r.body).0, 100, "{fmt}");
        }
    }
    let r = s.get("/goldener_schnitt_finite_loop.gif?x-oss-process=image/resize,w_100/format,gif").await;
    assert_eq!(r.header("content-type"), "image/gif");
    for op in ["info", "average-hue"] {
        let r = s.get(&format!("/giunchedi_srgb_icc.jpg?x-oss-process=image/{op}")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.header("content-type"), "application/json", "{op}");
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        assert!(v.is_object());
    }
}

#[tokio::test]
async fn processed_results_are_cached_with_a_content_etag() {
    let s = start().await;
    let url = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,m_fill,w_200,h_200/format,webp/quality,q_80";
    let first = s.get(url).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert_eq!(first.x_cache(), "MISS TCP_MISS");
    assert_eq!(first.header("content-type"), "image/webp");
    let etag = first.header("etag").to_owned();
    assert!(etag.len() > 10);
    let second = s.get(url).await;
    assert_eq!(second.x_cache(), "HIT TCP_MEM_HIT");
    assert_eq!(second.body, first.body);
    assert_eq!(second.header("etag"), etag);
    // The same chain spelled differently (params reordered, percent-encoded) shares the entry.
    let r = s.get("/giunchedi_srgb_icc.jpg?x-oss-process=image%2Fresize%2Ch_200%2Cw_200%2Cm_fill%2Fformat%2Cwebp%2Fquality%2Cq_80").await;
    assert_eq!(r.x_cache(), "HIT TCP_MEM_HIT");
    // The original is a different entry, filled by the rendition's miss (issue 17 item 5).
    assert_eq!(s.get("/giunchedi_srgb_icc.jpg").await.x_cache(), "HIT TCP_MEM_HIT");
    // 304 on the processed ETag.
    let r = s.get_with(url, &[("if-none-match", &etag)]).await;
    assert_eq!(r.status, StatusCode::NOT_MODIFIED);
    // Purge all renditions of the original.
    let r = s
        .admin_json("/purge", serde_json::json!({"type": "ignore_params", "paths": ["/giunchedi_srgb_icc.jpg"]}), None)
        .await;
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["affected"], 2);
    assert_eq!(s.get(url).await.x_cache(), "MISS TCP_MISS");
}

#[tokio::test]
async fn orientation_alpha_and_animation_through_the_server() {
    let s = start().await;
    let r = s.get("/libvips_rotation_6_progressive_icc.jpg?x-oss-process=image/resize,w_100").await;
    assert_eq!(dims(&r.body), (100, 133), "auto-orient before resize");
    let r = s.get("/dice_palette_trns.png?x-oss-process=image/resize,w_150/format,png").await;
    let img = image::load_from_memory(&r.body).unwrap();
    assert!(img.color().has_alpha(), "alpha kept for png");
    let r = s.get("/dice_palette_trns.png?x-oss-process=image/resize,w_150/format,jpg").await;
    assert_eq!(r.header("content-type"), "image/jpeg");
    let r = s.get("/goldener_schnitt_finite_loop.gif?x-oss-process=image/resize,w_100").await;
    assert_eq!(r.header("content-type"), "image/gif");
    let frames = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&r.body[..])).unwrap();
    let frames = image::AnimationDecoder::into_frames(frames).collect_frames().unwrap();
    assert_eq!(frames.len(), 10);
    assert_eq!(frames[0].buffer().width(), 100);
}

#[tokio::test]
async fn bad_chains_get_oss_errors_before_touching_the_origin() {
    let s = start().await;
    for (q, code, ec) in [
        ("image/resize,w_0", "InvalidArgument", "0040-00000312"),
        ("image/slim,1", "InvalidArgument", "0040-00000213"),
        ("image/", "InvalidArgument", "0040-00000212"),
        ("image/rotate,400", "InvalidArgument", "0040-00000217"),
        ("style/nope", "NoSuchStyle", ""),
    ] {
        let r = s.get(&format!("/giunchedi_srgb_icc.jpg?x-oss-process={q}")).await;
        assert!(r.status.is_client_error(), "{q}: {}", r.status);
        let body = r.text();
        assert!(body.contains(&format!("<Code>{code}</Code>")), "{q}: {body}");
        if !ec.is_empty() {
            assert!(body.contains(ec), "{q}: {body}");
        }
    }
    assert_eq!(s.app.stats.origin_fetches(), 0, "parse errors never reach the origin");
    // An object that is not an image: a clean 4xx.
    let r = s.get("/hello.txt?x-oss-process=image/resize,w_10").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.text());
}
