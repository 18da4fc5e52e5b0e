//! Issue 4 through the server: text and image watermarks drawn where the spec places
//! them, watermark objects fetched from the same origin, and the 4xx answers for a
//! missing object or a key that tries to leave the origin (with no fetch made for it).

use crate::common::mock_origin::{MockObject, MockOss};
use crate::common::server::{start, start_app, start_with};
use http::StatusCode;
use image::DynamicImage;
use imgedge::origin::{Origin, OriginCredentials};
use imgedge::Config;

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

fn decode(bytes: &[u8]) -> DynamicImage {
    image::load_from_memory(bytes).expect("decodable output")
}

/// Pixels that differ (any channel by more than 24) inside `[x0,x1)×[y0,y1)`.
fn changed(a: &DynamicImage, b: &DynamicImage, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    let mut n = 0;
    for y in y0..y1.min(a.height()) {
        for x in x0..x1.min(a.width()) {
            if a.get_pixel(x, y).0.iter().zip(b.get_pixel(x, y).0.iter()).any(|(p, q)| p.abs_diff(*q) > 24) {
                n += 1;
            }
        }
    }
    n
}

#[tokio::test]
async fn text_watermark_changes_pixels_where_gravity_puts_it() {
    let s = start().await;
    let base = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_200/format,png";
    let plain = decode(&s.get(base).await.body);
    let (w, h) = (plain.width(), plain.height());
    let text = b64("Hello 图片");
    for (g, region) in [("nw", (0, 0, w / 2, h / 2)), ("se", (w / 2, h / 2, w, h))] {
        let r = s
            .get(&format!(
                "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_200/watermark,text_{text},size_14,color_FF0000,g_{g}/format,png"
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.text());
        let img = decode(&r.body);
        assert_eq!((img.width(), img.height()), (w, h));
        let inside = changed(&plain, &img, region);
        let total = changed(&plain, &img, (0, 0, w, h));
        assert!(inside > 100, "{g}: {inside} pixels changed in its quadrant");
        assert_eq!(inside, total, "{g}: nothing drawn outside its quadrant");
    }
    // Padded and unpadded base64 are one variant: the second spelling is a cache HIT.
    let padded = s.get("/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_50/watermark,text_SGVsbG8=").await;
    assert_eq!(padded.status, StatusCode::OK);
    let unpadded = s.get("/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_50/watermark,text_SGVsbG8").await;
    assert!(unpadded.x_cache().starts_with("HIT"), "{}", unpadded.x_cache());
    assert_eq!(padded.body, unpadded.body);
    s.stop().await;
}

#[tokio::test]
async fn text_errors_are_oss_xml() {
    let s = start().await;
    for (q, ec) in [
        ("watermark,text_***", "0040-00000257"),
        (&format!("watermark,text_{}", b64(&"a".repeat(65))) as &str, "0040-00000259"),
        ("watermark,text_YQ,type_***", "0040-00000250"),
        (&format!("watermark,text_YQ,type_{}", b64("comic-sans")) as &str, "0040-00000251"),
    ] {
        let r = s.get(&format!("/giunchedi_srgb_icc.jpg?x-oss-process=image/{q}")).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{q}");
        assert!(r.text().contains(&format!("<EC>{ec}</EC>")), "{q}: {}", r.text());
    }
    // Every OSS font name is accepted.
    for font in [
        "wqy-zenhei",
        "wqy-microhei",
        "fangzhengshusong",
        "fangzhengkaiti",
        "fangzhengheiti",
        "fangzhengfangsong",
        "droidsansfallback",
    ] {
        let r = s
            .get(&format!(
                "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_64/watermark,text_{},type_{}",
                b64("字A"),
                b64(font)
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{font}: {}", r.text());
    }
    s.stop().await;
}

#[tokio::test]
async fn image_watermark_comes_from_the_same_origin() {
    let s = start().await;
    let base = "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_200/format,png";
    let plain = decode(&s.get(base).await.body);
    let (w, h) = (plain.width(), plain.height());
    let logo = b64("dice_palette_trns.png?x-oss-process=image/resize,P_25");
    let r = s
        .get(&format!(
            "/giunchedi_srgb_icc.jpg?x-oss-process=image/resize,w_200/watermark,image_{logo},g_nw,x_0,y_0/format,png"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let img = decode(&r.body);
    // P_25 of 200×133 → inside 50×33 at the top left.
    assert!(changed(&plain, &img, (0, 0, 50, 34)) > 100);
    assert_eq!(changed(&plain, &img, (0, 0, w, h)), changed(&plain, &img, (0, 0, 50, 34)));
    // Missing watermark object: 400 WatermarkError, OSS XML.
    let r = s
        .get(&format!("/giunchedi_srgb_icc.jpg?x-oss-process=image/watermark,image_{}", b64("no-such-logo.png")))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text().contains("<Code>WatermarkError</Code>"), "{}", r.text());
    assert_eq!(r.header("content-type"), "application/xml");
    s.stop().await;
}

#[tokio::test]
async fn escaping_keys_are_rejected_without_any_fetch() {
    // A folder origin with a secret next to (outside) it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg"), root.join("p.jpg")).unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dice_palette_trns.png"),
        dir.path().join("secret.png"),
    )
    .unwrap();
    let s = start_with(&root, |_| {}).await;
    for key in ["../secret.png", "a/../../secret.png", "/secret.png", "./secret.png"] {
        let r = s.get(&format!("/p.jpg?x-oss-process=image/watermark,image_{}", b64(key))).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{key}");
        assert!(r.text().contains("<Code>WatermarkError</Code>"), "{key}: {}", r.text());
    }
    s.stop().await;

    // Through an OSS origin: the bucket sees no request at all for such a chain, and the
    // watermark object of a good chain is fetched from the same bucket.
    let m = MockOss::start_with("media", "cn-hangzhou", vec![], true).await;
    let jpg = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg")).unwrap();
    let png = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/dice_palette_trns.png")).unwrap();
    m.put("p.jpg", MockObject::new(jpg, "image/jpeg"));
    m.put("logos/dice.png", MockObject::new(png, "image/png"));
    let mut config = Config::default();
    config.origin = format!("oss://media?endpoint={}&region=cn-hangzhou", m.endpoint());
    config.validate().unwrap();
    let origin =
        Origin::from_spec_with(&config.origin, &OriginCredentials::default(), &config.origin_client.to_origin_config())
            .unwrap();
    let s = start_app(config, origin).await;
    let r = s.get(&format!("/p.jpg?x-oss-process=image/watermark,image_{}", b64("../other-bucket/x.png"))).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(m.requests(), 0, "nothing fetched for an escaping key");
    let r = s.get(&format!("/p.jpg?x-oss-process=image/resize,w_100/watermark,image_{}", b64("logos/dice.png"))).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    let uris: Vec<String> = m.seen().into_iter().map(|r| r.uri).collect();
    assert!(uris.iter().any(|u| u.contains("/logos/dice.png")), "{uris:?}");
    s.stop().await;
}

#[tokio::test]
async fn animated_gif_keeps_every_frame_watermarked() {
    let s = start().await;
    let r = s
        .get(&format!(
            "/goldener_schnitt_finite_loop.gif?x-oss-process=image/resize,w_100/watermark,text_{},size_24,g_nw,x_0,y_0,color_FF0000",
            b64("GIF")
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text());
    assert_eq!(r.header("content-type"), "image/gif");
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&r.body[..])).unwrap();
    let frames = image::AnimationDecoder::into_frames(dec).collect_frames().unwrap();
    assert_eq!(frames.len(), 10);
    for (i, f) in frames.iter().enumerate() {
        let red = f
            .buffer()
            .enumerate_pixels()
            .filter(|(x, y, p)| *x < 50 && *y < 30 && p[0] > 180 && p[1] < 80 && p[2] < 80)
            .count();
        assert!(red > 30, "frame {i}: {red}");
    }
    s.stop().await;
}

#[test]
fn missing_fonts_stop_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("imgedge.toml");
    std::fs::write(&cfg, "fonts_dir = \"/definitely/not/fonts\"\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_imgedge"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["--config", cfg.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("fonts_dir") && err.contains("DejaVuSans.ttf"), "{err}");
}
