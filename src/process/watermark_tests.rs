//! Watermark golden-image tests (issue 4): whole runs through [`run`] on a small synthetic
//! base image, compared by decoded pixels with a tolerance against PNGs in
//! `fixtures/golden/watermark/`. `IMGEDGE_UPDATE_GOLDEN=1` rewrites them; every run also
//! writes `target/watermark-contact-sheet.png` (all cases tiled, labelled) for a person to
//! look at. Plus per-format and animation checks that need the engine, not the server.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use image::{DynamicImage, Rgba, RgbaImage};

use super::fonts::tests::fonts;
use super::fonts::TextKey;
use super::tests::decode_out;
use super::*;

/// base64url without padding.
fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

/// A 200×130 gradient (RGB, or RGBA with a transparent left half), encoded as PNG.
fn base_png(alpha: bool) -> Vec<u8> {
    let img = RgbaImage::from_fn(200, 130, |x, y| {
        let a = if alpha && x < 100 { 0 } else { 255 };
        Rgba([(60 + x / 2) as u8, (90 + y) as u8, 200u8.saturating_sub((x / 3) as u8), a])
    });
    let img = if alpha {
        DynamicImage::ImageRgba8(img)
    } else {
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(img).into_rgb8())
    };
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

/// A 60×40 watermark object: orange with a transparent border and a dark stripe.
fn logo_png() -> Vec<u8> {
    let img = RgbaImage::from_fn(60, 40, |x, y| {
        if x < 4 || y < 4 || x >= 56 || y >= 36 {
            Rgba([0, 0, 0, 0])
        } else if (x + y) % 12 < 4 {
            Rgba([40, 20, 10, 255])
        } else {
            Rgba([250, 140, 20, 255])
        }
    });
    let mut out = Vec::new();
    DynamicImage::ImageRgba8(img).write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn overlays() -> Overlays {
    let mut m = Overlays::new();
    m.insert("logo.png".into(), bytes::Bytes::from(logo_png()));
    m
}

fn run_wm(src: &[u8], chain: &str) -> Result<Output, ProcessError> {
    let p = parse(chain, &Styles::new(), &Limits::default())?;
    let limits = Limits::default();
    let ov = overlays();
    run(src, &p, &RunContext { fonts: Some(fonts()), overlays: Some(&ov), ..RunContext::new(&limits) })
}

/// (name, alpha base, chain)
fn cases() -> Vec<(&'static str, bool, String)> {
    let t = |s: &str| b64(s);
    let logo = b64("logo.png");
    let gravities = ["nw", "north", "ne", "west", "center", "east", "sw", "south", "se"]
        .iter()
        .map(|g| format!("watermark,text_{},size_14,color_FFFFFF,g_{g},x_4,y_4", t(g)))
        .collect::<Vec<_>>()
        .join("/");
    vec![
        ("gravity_all", false, format!("image/{gravities}/format,png")),
        ("voffset", false, format!("image/watermark,text_{},size_16,g_east,voffset_-30,x_0/format,png", t("up30"))),
        ("rotate", false, format!("image/watermark,text_{},size_20,rotate_45,g_center,color_FF0000/format,png", t("Rotate"))),
        ("fill", false, format!("image/watermark,text_{},size_12,fill_1,t_60,color_000000/format,png", t("tile"))),
        ("shadow", false, format!("image/watermark,text_{},size_28,shadow_90,color_FFFFFF,g_center/format,png", t("Shadow"))),
        ("cjk", false, format!("image/watermark,text_{},size_22,g_center,color_000080/format,png", t("图片水印 日本語 Abc"))),
        ("opacity", false, format!("image/watermark,text_{},size_30,t_40,g_sw/format,png", t("t40"))),
        ("image_p30", false, format!("image/watermark,image_{},g_se/format,png", b64("logo.png?x-oss-process=image/resize,P_30"))),
        ("image_pre", false, format!(
            "image/watermark,image_{},g_nw,x_0,y_0/format,png",
            b64("logo.png?x-oss-process=image/crop,w_40,h_30/rounded-corners,r_8/rotate,90")
        )),
        ("mixed", false, format!(
            "image/watermark,image_{logo},text_{},size_18,order_1,align_1,interval_6,g_center,color_FFFFFF/format,png",
            t("mixed")
        )),
        ("fonts", false, format!(
            "image/watermark,text_{},size_18,g_nw,color_FFFFFF/watermark,text_{},size_18,g_west,type_{},color_FFFFFF/watermark,text_{},size_18,g_sw,type_{},color_FFFFFF/format,png",
            t("Hei 黑体"), t("HeiTi 黑体"), t("fangzhengheiti"), t("Song 宋体"), t("fangzhengshusong")
        )),
        ("alpha_out", true, format!("image/watermark,text_{},size_24,g_west,t_70,color_FF00FF/format,png", t("alpha"))),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/golden/watermark")
}

/// Mean absolute difference per channel value (0–255), and the share of pixels that
/// differ by more than 48 in some channel.
fn diff(a: &RgbaImage, b: &RgbaImage) -> (f64, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let mut sum = 0u64;
    let mut bad = 0u64;
    for (p, q) in a.pixels().zip(b.pixels()) {
        let mut worst = 0;
        for k in 0..4 {
            let d = (i32::from(p[k]) - i32::from(q[k])).unsigned_abs();
            sum += u64::from(d);
            worst = worst.max(d);
        }
        if worst > 48 {
            bad += 1;
        }
    }
    let px = u64::from(a.width()) * u64::from(a.height());
    (sum as f64 / (px * 4) as f64, bad as f64 / px as f64)
}

#[test]
fn goldens_match_and_contact_sheet() {
    let update = std::env::var("IMGEDGE_UPDATE_GOLDEN").is_ok_and(|v| v == "1");
    let dir = golden_dir();
    if update {
        std::fs::create_dir_all(&dir).unwrap();
    }
    let mut rendered = Vec::new();
    let mut failures = Vec::new();
    for (name, alpha, chain) in cases() {
        let out = run_wm(&base_png(alpha), &chain).unwrap_or_else(|e| panic!("{name}: {chain}: {e}"));
        let img = decode_out(&out).into_rgba8();
        let path = dir.join(format!("{name}.png"));
        if update {
            img.save(&path).unwrap();
        } else {
            let golden = image::open(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (run with IMGEDGE_UPDATE_GOLDEN=1)", path.display()))
                .into_rgba8();
            let (mean, bad) = diff(&img, &golden);
            if mean > 1.0 || bad > 0.002 {
                failures.push(format!("{name}: mean abs diff {mean:.3}, {:.2}% pixels off", bad * 100.0));
            }
        }
        rendered.push((name, img));
    }
    write_contact_sheet(&rendered);
    assert!(failures.is_empty(), "golden mismatches: {failures:#?}");
}

/// Tiles every rendered case with its name under it into target/watermark-contact-sheet.png.
fn write_contact_sheet(items: &[(&str, RgbaImage)]) {
    let cols = 4u32;
    let (cw, ch) = (210u32, 160u32);
    let rows = (items.len() as u32).div_ceil(cols);
    let mut sheet = RgbaImage::from_pixel(cols * cw, rows * ch, Rgba([255, 255, 255, 255]));
    for (i, (name, img)) in items.iter().enumerate() {
        let (cx, cy) = ((i as u32 % cols) * cw + 5, (i as u32 / cols) * ch + 4);
        // A checkerboard shows transparency.
        let mut cell = RgbaImage::from_fn(img.width(), img.height(), |x, y| {
            if (x / 8 + y / 8) % 2 == 0 {
                Rgba([200, 200, 200, 255])
            } else {
                Rgba([255, 255, 255, 255])
            }
        });
        image::imageops::overlay(&mut cell, img, 0, 0);
        image::imageops::replace(&mut sheet, &cell, i64::from(cx), i64::from(cy));
        let key =
            TextKey { font: "wqy-zenhei", size: 16, text: (*name).to_owned(), color: [0, 0, 0], shadow: 0, rotate: 0 };
        let label = fonts().text_block(&key).unwrap();
        image::imageops::overlay(&mut sheet, &*label, i64::from(cx), i64::from(cy + img.height() + 2));
    }
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/watermark-contact-sheet.png");
    let _ = std::fs::create_dir_all(path.parent().unwrap());
    sheet.save(&path).unwrap();
}

/// Pixels of `a` and `b` that differ inside the rectangle.
fn changed_in(a: &DynamicImage, b: &DynamicImage, (x0, y0, x1, y1): (u32, u32, u32, u32)) -> usize {
    let (a, b) = (a.to_rgba8(), b.to_rgba8());
    let mut n = 0;
    for y in y0..y1.min(a.height()) {
        for x in x0..x1.min(a.width()) {
            let (p, q) = (a.get_pixel(x, y), b.get_pixel(x, y));
            if p.0.iter().zip(q.0.iter()).any(|(u, v)| u.abs_diff(*v) > 24) {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn every_output_format_gets_the_watermark() {
    let src = base_png(true);
    let text = b64("XX");
    for fmt in ["png", "jpg", "webp", "bmp", "tiff", "gif"] {
        let plain = decode_out(&run_wm(&src, &format!("image/format,{fmt}")).unwrap());
        let out = run_wm(&src, &format!("image/watermark,text_{text},size_40,g_se,color_FF0000/format,{fmt}")).unwrap();
        let img = decode_out(&out);
        assert_eq!((img.width(), img.height()), (200, 130), "{fmt}");
        assert!(changed_in(&plain, &img, (130, 70, 200, 130)) > 150, "{fmt}: text drawn bottom right");
        assert!(changed_in(&plain, &img, (0, 0, 100, 60)) < 5, "{fmt}: nothing top left");
    }
}

#[test]
fn animated_gif_and_webp_watermark_every_frame() {
    let gif = super::tests::corpus("animated/goldener_schnitt_finite_loop.gif");
    let chain = format!("image/resize,w_120/watermark,text_{},size_30,g_nw,x_0,y_0,color_FF0000", b64("AB"));
    let out = run_wm(&gif, &chain).unwrap();
    assert_eq!(out.content_type, "image/gif");
    let dec = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(&out.bytes[..])).unwrap();
    let frames = image::AnimationDecoder::into_frames(dec).collect_frames().unwrap();
    assert!(frames.len() > 1);
    for (i, f) in frames.iter().enumerate() {
        let red = (0..30)
            .flat_map(|y| (0..40).map(move |x| (x, y)))
            .filter(|&(x, y)| {
                let p = f.buffer().get_pixel(x, y);
                p[0] > 180 && p[1] < 80 && p[2] < 80
            })
            .count();
        assert!(red > 40, "frame {i}: {red} red pixels");
    }
    // Animated WebP → WebP keeps every frame too.
    let webp = super::codec::encode(
        &super::picture::Picture {
            frames: (0..3)
                .map(|i| super::picture::Frame {
                    img: DynamicImage::ImageRgba8(RgbaImage::from_pixel(80, 60, Rgba([0, 80 * i as u8, 200, 255]))),
                    delay_ms: 100,
                })
                .collect(),
            loop_count: Some(0),
        },
        super::ops::format::Format::Webp,
        &super::codec::EncodeOptions { quality: 90, ..Default::default() },
    )
    .unwrap();
    let out = run_wm(&webp, &chain.replace("resize,w_120/", "")).unwrap();
    let probe = super::codec::probe(&out.bytes, &Limits::default()).unwrap();
    assert_eq!(probe.meta.frames, 3);
}

#[test]
fn image_watermark_errors() {
    let src = base_png(false);
    let missing = run_wm(&src, &format!("image/watermark,image_{}", b64("nope.png"))).unwrap_err();
    assert_eq!((missing.status(), missing.code()), (400, "WatermarkError"));
    let nested = parse(
        &format!("image/watermark,image_{}", b64("logo.png?x-oss-process=image/watermark,text_YQ")),
        &Styles::new(),
        &Limits::default(),
    )
    .unwrap_err();
    assert_eq!(nested.ec(), Some("0040-00000373"));
    let circle = format!("image/watermark,image_{}", b64("logo.png?x-oss-process=image/circle,r_10"));
    assert_eq!(parse(&circle, &Styles::new(), &Limits::default()).unwrap_err().status(), 400);
    let escape = format!("image/watermark,image_{}", b64("../secret.png"));
    assert_eq!(parse(&escape, &Styles::new(), &Limits::default()).unwrap_err().code(), "WatermarkError");
    let four = (0..4).map(|_| format!("watermark,image_{}", b64("logo.png"))).collect::<Vec<_>>().join("/");
    assert!(parse(&format!("image/{four}"), &Styles::new(), &Limits::default()).is_err());
    let three = (0..3).map(|_| format!("watermark,image_{}", b64("logo.png"))).collect::<Vec<_>>().join("/");
    let p = parse(&format!("image/{three}"), &Styles::new(), &Limits::default()).unwrap();
    assert_eq!(p.watermark_objects(), vec!["logo.png".to_string()]);
}

#[test]
fn p_is_a_percentage_of_the_main_image() {
    // 200×130 main, P_10 → box 20×13.
    let src = base_png(false);
    let chain =
        format!("image/watermark,image_{},g_nw,x_0,y_0/format,png", b64("logo.png?x-oss-process=image/resize,P_10"));
    let img = decode_out(&run_wm(&src, &chain).unwrap()).into_rgba8();
    let plain = decode_out(&run_wm(&src, "image/format,png").unwrap()).into_rgba8();
    let changed: Vec<(u32, u32)> =
        img.enumerate_pixels().filter(|(x, y, p)| p.0 != plain.get_pixel(*x, *y).0).map(|(x, y, _)| (x, y)).collect();
    let maxx = changed.iter().map(|c| c.0).max().unwrap();
    let maxy = changed.iter().map(|c| c.1).max().unwrap();
    // Fit of 60×40 in 20×13: height-bound → 20×13 (round(60·13/40) = 20).
    assert!(maxx < 20 && maxy < 13, "watermark within 20×13, got {maxx}×{maxy}");
    assert!(maxx >= 15 && maxy >= 9);
}
