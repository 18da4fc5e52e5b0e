//! Engine tests: chain parsing and canonical keys, and whole runs on real corpus images
//! (`../shared/corpus/`, see its MANIFEST.md). Per-op parameter tables live at the bottom
//! of each `ops/*.rs`. Images are kept small because dev builds are slow at pixel work.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use super::codec;
use super::ops;
use super::picture;
use super::*;

pub(crate) fn corpus(rel: &str) -> Vec<u8> {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus").join(rel);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

fn styles() -> Styles {
    let mut s = Styles::new();
    s.insert("thumb".into(), "image/resize,w_100/format,webp".into());
    s.insert("bad".into(), "video/snapshot".into());
    s
}

fn pp(v: &str) -> Result<Pipeline, ProcessError> {
    parse(v, &styles(), &Limits::default())
}

pub(crate) fn run_chain(src: &[u8], chain: &str) -> Result<Output, ProcessError> {
    let p = pp(chain)?;
    let limits = Limits::default();
    let fonts = super::fonts::tests::fonts();
    run(src, &p, &RunContext { fonts: Some(fonts), ..RunContext::new(&limits) })
}

pub(crate) fn decode_out(out: &Output) -> image::DynamicImage {
    image::load_from_memory(&out.bytes)
        .or_else(|_| {
            // JPEG output: the image crate is built without its JPEG decoder.
            let img = turbojpeg::decompress(&out.bytes, turbojpeg::PixelFormat::RGB).map_err(|e| e.to_string())?;
            image::RgbImage::from_raw(img.width as u32, img.height as u32, img.pixels)
                .map(image::DynamicImage::ImageRgb8)
                .ok_or_else(|| "size".to_string())
        })
        .unwrap()
}

fn dims(src: &[u8], chain: &str) -> (u32, u32) {
    let o = run_chain(src, chain).unwrap();
    let d = decode_out(&o);
    (d.width(), d.height())
}

/// PSNR between two RGB images of the same size.
pub(crate) fn psnr(a: &image::RgbImage, b: &image::RgbImage) -> f64 {
    assert_eq!(a.dimensions(), b.dimensions());
    let mse: f64 = a.as_raw().iter().zip(b.as_raw()).map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2)).sum::<f64>()
        / a.as_raw().len() as f64;
    if mse == 0.0 {
        99.0
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

// ------------------------------------------------------------------ parsing

#[test]
fn chain_errors() {
    let e = pp("image/").unwrap_err();
    assert_eq!((e.status(), e.ec()), (400, Some("0040-00000212")));
    let e = pp("image/slim,1").unwrap_err();
    assert_eq!((e.code(), e.ec()), ("InvalidArgument", Some("0040-00000213")));
    assert_eq!(pp("").unwrap_err().code(), "InvalidArgument");
    assert_eq!(pp("foo/resize,w_1").unwrap_err().status(), 400);
    assert_eq!(pp("video/snapshot").unwrap_err().status(), 400);
    assert_eq!(pp("image/info/resize,w_1").unwrap_err().status(), 400);
    assert_eq!(pp("image/Resize,w_1").unwrap_err().ec(), Some("0040-00000213"));
    // `|` (saveas) is not part of a GET chain
    assert!(pp("image/resize,w_1|sys/saveas,o_YQ").is_err());
    let many = format!("image{}", "/bright,1".repeat(33));
    assert!(pp(&many).is_err());
    assert!(pp(&format!("image{}", "/bright,1".repeat(32))).is_ok());
}

#[test]
fn styles_expand() {
    assert_eq!(pp("style/thumb").unwrap(), pp("image/resize,w_100/format,webp").unwrap());
    assert_eq!(pp("style/thumb").unwrap().canonical(), "image/resize,m_lfit,w_100,limit_1/format,webp");
    let e = pp("style/nope").unwrap_err();
    assert_eq!((e.status(), e.code()), (404, "NoSuchStyle"));
    assert_eq!(pp("style/a b").unwrap_err().status(), 400);
    assert_eq!(pp("style/thumb/resize,w_1").unwrap_err().status(), 400);
    assert_eq!(pp("style/bad").unwrap_err().status(), 400);
}

#[test]
fn canonical_forms() {
    let c = |v: &str| pp(v).unwrap().canonical();
    assert_eq!(c("image/resize,w_100/"), c("image/resize,w_100"));
    assert_eq!(c("image/resize,h_50,w_100,,"), c("image/resize,w_100,h_50,m_lfit,limit_1"));
    assert_eq!(c("image/format,png/resize,w_1"), c("image/resize,w_1/format,png"));
    assert_eq!(c("image/auto-orient,1/resize,w_1"), c("image/resize,w_1"));
    assert_eq!(c("image/resize,w_1/auto-orient,0"), "image/auto-orient,0/resize,m_lfit,w_1,limit_1");
    assert_eq!(c("image/quality,q_80/quality,Q_70"), "image/quality,Q_70");
    assert_eq!(c("image/rotate,360"), c("image/rotate,0"));
    assert_eq!(c("image/crop,w_100,h_100,x_100,y_100,r_1"), "image/crop,w_100,h_100,x_100,y_100,g_nw");
    assert_eq!(c("image/info"), "image/info");
    assert_ne!(c("image/resize,w_1/rotate,90"), c("image/rotate,90/resize,w_1"));
    let p = pp("image/average-hue").unwrap();
    assert!(p.is_json());
    assert_eq!(p.output_content_type_hint(), Some("application/json"));
    assert_eq!(pp("image/format,webp").unwrap().output_content_type_hint(), Some("image/webp"));
}

// ------------------------------------------------------------------ operations on photos

const PHOTO: &str = "photos/giunchedi_srgb_icc.jpg"; // 800x533

#[test]
fn resize_modes_on_photo() {
    let src = corpus(PHOTO);
    assert_eq!(dims(&src, "image/resize,w_200"), (200, 133));
    assert_eq!(dims(&src, "image/resize,m_lfit,w_100,h_100"), (100, 67));
    assert_eq!(dims(&src, "image/resize,m_mfit,w_100,h_100"), (150, 100));
    assert_eq!(dims(&src, "image/resize,m_fill,w_100,h_100"), (100, 100));
    assert_eq!(dims(&src, "image/resize,m_pad,w_100,h_100,color_FF0000"), (100, 100));
    assert_eq!(dims(&src, "image/resize,m_fixed,w_100,h_30"), (100, 30));
    assert_eq!(dims(&src, "image/resize,l_120"), (120, 80));
    assert_eq!(dims(&src, "image/resize,s_100"), (150, 100));
    assert_eq!(dims(&src, "image/resize,p_10"), (80, 53));
    assert_eq!(dims(&src, "image/resize,w_1000"), (800, 533));
    // pad colour shows in the bars
    let out =
        decode_out(&run_chain(&src, "image/resize,m_pad,w_100,h_100,color_FF0000/format,png").unwrap()).into_rgb8();
    assert_eq!(out.get_pixel(50, 1).0, [255, 0, 0]);
    let e = run_chain(&src, "image/resize,m_fixed,w_5000,h_5000,limit_0").unwrap_err();
    assert_eq!(e.ec(), Some("0040-00000007"));
}

/// m_fill where one side needs no scaling and the scale factor is not exact in binary
/// (31/30): the visible region must not end a rounding error past the image (it was a
/// 500 "crop box out of the image boundaries", found by the fuzzer).
#[test]
fn fill_region_never_leaves_the_image() {
    for (sw, sh, w, h) in [(48, 31, 40, 30), (31, 48, 30, 40), (97, 61, 60, 60), (1001, 667, 500, 333)] {
        let mut src = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::new(sw, sh))
            .write_to(&mut std::io::Cursor::new(&mut src), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(dims(&src, &format!("image/resize,m_fill,w_{w},h_{h}/format,png")), (w, h), "{sw}x{sh}");
    }
}

#[test]
fn crop_rotate_and_friends_on_photo() {
    let src = corpus(PHOTO);
    assert_eq!(dims(&src, "image/resize,w_400/crop,x_100,y_50"), (300, 217));
    assert_eq!(dims(&src, "image/resize,w_400/crop,w_200,h_200,g_se"), (200, 200));
    let e = run_chain(&src, "image/crop,x_800").unwrap_err();
    assert_eq!((e.code(), e.message().as_str()), ("BadRequest", "Advance cut's position is out of image."));
    assert_eq!(dims(&src, "image/resize,w_400/indexcrop,x_100,i_3"), (100, 267));
    assert_eq!(dims(&src, "image/resize,w_400/indexcrop,y_100,i_10"), (400, 267));
    assert_eq!(dims(&src, "image/resize,w_400/rotate,90"), (267, 400));
    assert_eq!(dims(&src, "image/resize,w_200/rotate,45"), (236, 236));
    assert_eq!(dims(&src, "image/resize,w_400/circle,r_1000"), (267, 267));
    assert_eq!(dims(&src, "image/resize,w_200/rounded-corners,r_10/format,png"), (200, 133));
    for op in ["blur,r_3,s_2", "bright,50", "contrast,-50", "sharpen,100"] {
        assert_eq!(dims(&src, &format!("image/resize,w_100/{op}")), (100, 67), "{op}");
    }
    // circle: white outside on JPG, transparent on PNG
    let jpg = decode_out(&run_chain(&src, "image/resize,w_100/circle,r_30").unwrap()).into_rgb8();
    assert!(jpg.get_pixel(0, 0).0.iter().all(|&c| c > 245));
    let png = decode_out(&run_chain(&src, "image/resize,w_100/circle,r_30/format,png").unwrap()).into_rgba8();
    assert_eq!(png.get_pixel(0, 0).0[3], 0);
    assert_eq!(png.get_pixel(30, 30).0[3], 255);
}

#[test]
fn auto_orient_all_exif_values() {
    let reference =
        decode_out(&run_chain(&corpus("orientation/Landscape_1.jpg"), "image/resize,w_180/format,png").unwrap())
            .into_rgb8();
    assert_eq!(reference.dimensions(), (180, 120));
    for n in 0..=8 {
        let src = corpus(&format!("orientation/Landscape_{n}.jpg"));
        let out = decode_out(&run_chain(&src, "image/resize,w_180/format,png").unwrap()).into_rgb8();
        assert_eq!(out.dimensions(), (180, 120), "orientation {n}");
        let q = psnr(&out, &reference);
        assert!(q > 25.0, "orientation {n}: PSNR {q}");
    }
    // spec example: auto-orient applies before the first op wherever it is written
    let src = corpus("orientation/Landscape_7.jpg");
    assert_eq!(dims(&src, "image/resize,w_100/auto-orient,1"), (100, 67));
    assert_eq!(dims(&src, "image/resize,w_100/auto-orient,0"), (100, 150));
    // CMYK + orientation 6 (stored 800x533)
    assert_eq!(dims(&corpus("orientation/giunchedi_cmyk_orientation_6.jpg"), "image/resize,w_100"), (100, 150));
}

#[test]
fn colour_models() {
    // CMYK (Adobe YCCK, inverted) must look like the sRGB version of the same photo.
    let rgb = decode_out(&run_chain(&corpus(PHOTO), "image/resize,w_160/format,png").unwrap()).into_rgb8();
    let cmyk =
        decode_out(&run_chain(&corpus("photos/giunchedi_cmyk_adobe.jpg"), "image/resize,w_160/format,png").unwrap())
            .into_rgb8();
    let q = psnr(&rgb, &cmyk);
    assert!(q > 15.0, "CMYK vs sRGB PSNR {q}");
    // Inverted decoding would give a photographic negative (PSNR ~5 dB).
    let mean = |i: &image::RgbImage| i.as_raw().iter().map(|&v| f64::from(v)).sum::<f64>() / i.as_raw().len() as f64;
    assert!((mean(&rgb) - mean(&cmyk)).abs() < 25.0);
    // Greyscale JPEG → 3 equal channels.
    let g = decode_out(
        &run_chain(&corpus("photos/concert_grayscale_gray_icc.jpg"), "image/resize,w_100/format,png").unwrap(),
    )
    .into_rgb8();
    assert!(g.pixels().all(|p| p.0[0] == p.0[1] && p.0[1] == p.0[2]));
    // 16-bit and palette PNGs decode to 8-bit output.
    for f in [
        "alpha/libvips_sample_rgb_16bit.png",
        "alpha/libvips_indexed_palette.png",
        "alpha/pngsuite_basn6a16_rgba_16bit.png",
        "alpha/dice_palette_trns.png",
        "alpha/pngsuite_bgbn4a08_gray_alpha.png",
    ] {
        let o = run_chain(&corpus(f), "image/resize,w_32/format,png").unwrap();
        assert_eq!(o.content_type, "image/png");
        assert_eq!(decode_out(&o).width(), 32, "{f}");
    }
}

#[test]
fn alpha_handling() {
    let src = corpus("alpha/libvips_rgba.png"); // 128x128, 43.7% transparent
    let png = decode_out(&run_chain(&src, "image/format,png").unwrap());
    assert!(png.color().has_alpha());
    assert!(png.to_rgba8().pixels().any(|p| p.0[3] == 0));
    let webp = decode_out(&run_chain(&src, "image/format,webp").unwrap());
    assert!(webp.to_rgba8().pixels().any(|p| p.0[3] == 0));
    // JPG: transparent areas become white.
    let rgba = png.to_rgba8();
    let (x, y, _) = rgba.enumerate_pixels().find(|(_, _, p)| p.0[3] == 0).map(|(x, y, p)| (x, y, *p)).unwrap();
    let jpg = decode_out(&run_chain(&src, "image/format,jpg").unwrap()).into_rgb8();
    assert!(jpg.get_pixel(x, y).0.iter().all(|&c| c > 240));
}

#[test]
fn formats_and_content_types() {
    let src = corpus(PHOTO);
    for (f, ct) in [
        ("jpg", "image/jpeg"),
        ("png", "image/png"),
        ("webp", "image/webp"),
        ("bmp", "image/bmp"),
        ("tiff", "image/tiff"),
    ] {
        let o = run_chain(&src, &format!("image/resize,w_64/format,{f}")).unwrap();
        assert_eq!(o.content_type, ct);
        assert_eq!(codec::sniff(&o.bytes).map(|x| x.mime()), Some(ct));
        assert_eq!(decode_out(&o).width(), 64);
    }
    // format,gif only applies to GIF sources
    assert_eq!(run_chain(&src, "image/resize,w_64/format,gif").unwrap().content_type, "image/jpeg");
    let gif = corpus("animated/goldener_schnitt_finite_loop.gif");
    assert_eq!(run_chain(&gif, "image/resize,w_64").unwrap().content_type, "image/gif");
    // no format: source format kept
    assert_eq!(
        run_chain(&corpus("photos/rockybeach_lossy.webp"), "image/resize,w_64").unwrap().content_type,
        "image/webp"
    );
    // interlace: progressive JPEG (SOF2)
    let o = run_chain(&src, "image/resize,w_64/interlace,1").unwrap();
    assert!(o.bytes.windows(2).any(|w| w == [0xFF, 0xC2]));
}

#[test]
fn icc_profiles_converted_or_carried() {
    // Adobe RGB source: converted to sRGB (checked against littleCMS in the Pillow
    // reference test), so no profile is needed in the output.
    let src = corpus("photos/libvips_sample_adobe_rgb_icc.jpg");
    let jpg = run_chain(&src, "image/resize,w_64").unwrap();
    assert!(!jpg.bytes.windows(12).any(|w| w == b"ICC_PROFILE\0"));
    let icc = codec::probe(&src, &Limits::default()).unwrap().meta.icc.unwrap();
    assert!(codec::is_rgb_icc(&icc));
    // Fallback path: the encoders embed a profile they are given.
    let pic = picture::Picture::still(decode_out(&jpg));
    let opts = codec::EncodeOptions { quality: 80, icc: Some(icc), ..Default::default() };
    let j = codec::encode(&pic, ops::format::Format::Jpg, &opts).unwrap();
    assert!(j.windows(12).any(|w| w == b"ICC_PROFILE\0"));
    assert_eq!(codec::probe(&j, &Limits::default()).unwrap().meta.icc, opts.icc);
    let w = codec::encode(&pic, ops::format::Format::Webp, &opts).unwrap();
    assert!(w.windows(4).any(|x| x == b"ICCP"));
    assert_eq!(codec::probe(&w, &Limits::default()).unwrap().meta.icc, opts.icc);
    let p = codec::encode(&pic, ops::format::Format::Png, &opts).unwrap();
    assert_eq!(codec::probe(&p, &Limits::default()).unwrap().meta.icc, opts.icc);
}

#[test]
fn quality_settings() {
    let src = corpus(PHOTO);
    let q = |chain: &str| {
        let o = run_chain(&src, chain).unwrap();
        codec::probe(&o.bytes, &Limits::default()).unwrap().meta.jpeg_quality.unwrap()
    };
    let srcq = codec::probe(&src, &Limits::default()).unwrap().meta.jpeg_quality.unwrap();
    assert!(q("image/resize,w_64").abs_diff(srcq) <= 1);
    assert!(q("image/resize,w_64/quality,Q_50").abs_diff(50) <= 1);
    assert!(q("image/resize,w_64/quality,q_50").abs_diff((u32::from(srcq) * 50 / 100) as u8) <= 1);
    let small = run_chain(&src, "image/resize,w_200/format,webp/quality,q_10").unwrap().bytes.len();
    let big = run_chain(&src, "image/resize,w_200/format,webp/quality,q_95").unwrap().bytes.len();
    assert!(small < big);
}

/// `limits.webp_method` reaches libwebp: the default stays method 2 (issue 20: every higher
/// method costs more encode time than the speed goal leaves), a higher one gives fewer
/// bytes for the same request, and pictures with transparency stop at method 3.
#[test]
fn webp_method_is_a_limit_with_a_measured_default() {
    assert_eq!(Limits::default().webp_method, 2);
    assert_eq!(codec::EncodeOptions::default().webp_method, 2);
    let src = corpus(PHOTO);
    let p = pp("image/resize,w_200/format,webp/quality,q_80").unwrap();
    let at = |m: u8| {
        let limits = Limits { webp_method: m, ..Limits::default() };
        run(&src, &p, &RunContext::new(&limits)).unwrap().bytes
    };
    let (m2, m6) = (at(2), at(6));
    assert_eq!(run_chain(&src, "image/resize,w_200/format,webp/quality,q_80").unwrap().bytes, m2);
    assert!(m6.len() < m2.len(), "method 6 {} vs 2 {}", m6.len(), m2.len());
    // Transparency caps the method (lossless alpha search); opaque pictures take it as set.
    let rgba = image::DynamicImage::ImageRgba8(image::RgbaImage::from_fn(64, 48, |x, y| {
        image::Rgba([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8, if x < 32 { 255 } else { (y * 5) as u8 }])
    }));
    let enc = |m: u8| {
        codec::encode_webp(&rgba, &codec::EncodeOptions { quality: 80, webp_method: m, ..Default::default() }).unwrap()
    };
    let (a6, a3, a2) = (enc(6), enc(3), enc(2));
    assert!(a6 == a3, "transparent: method 6 must encode as 3 ({} vs {} bytes)", a6.len(), a3.len());
    assert!(a3 != a2, "transparent: method 3 still applies ({} bytes both)", a3.len());
}

#[test]
fn animated_sources() {
    let gif = corpus("animated/rotating_earth_44_frames.gif");
    let o = run_chain(&gif, "image/resize,w_50").unwrap();
    assert_eq!(o.content_type, "image/gif");
    assert_eq!(codec::gif_frame_count(&o.bytes), 44);
    let o = run_chain(&gif, "image/resize,w_50/crop,w_20,h_20").unwrap();
    assert_eq!(codec::gif_frame_count(&o.bytes), 44);
    // rotate makes it static; other formats take the first frame
    assert_eq!(codec::gif_frame_count(&run_chain(&gif, "image/resize,w_50/rotate,90").unwrap().bytes), 1);
    assert_eq!(run_chain(&gif, "image/resize,w_50/format,png").unwrap().content_type, "image/png");
    // GIF → WebP: a still of the first frame, as OSS does (spec §2.4)
    let o = run_chain(&gif, "image/resize,w_50/format,webp").unwrap();
    assert_eq!(codec::webp_frame_count(&o.bytes), 1);
    // animated WebP in and out
    let w = corpus("animated/goldener_schnitt_loop_3.webp");
    let n = codec::webp_frame_count(&w);
    assert!(n > 1);
    let o = run_chain(&w, "image/resize,w_50").unwrap();
    assert_eq!(codec::webp_frame_count(&o.bytes), n);
    // info counts frames
    let info: serde_json::Value = serde_json::from_slice(&run_chain(&gif, "image/info").unwrap().bytes).unwrap();
    assert_eq!(info["FrameCount"]["value"], "44");
}

#[test]
fn info_json() {
    let src = corpus("orientation/Landscape_6.jpg");
    let o = run_chain(&src, "image/info").unwrap();
    assert_eq!(o.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&o.bytes).unwrap();
    assert_eq!(v["ImageWidth"]["value"], "1200");
    assert_eq!(v["ImageHeight"]["value"], "1800");
    assert_eq!(v["Orientation"]["value"], "6");
    assert_eq!(v["Format"]["value"], "jpg");
    assert_eq!(v["FileSize"]["value"], src.len().to_string());
    assert_eq!(v["FrameCount"]["value"], "1");
    // EXIF fields of a camera photo, including the IFD pointer
    let g: serde_json::Value = serde_json::from_slice(&run_chain(&corpus(PHOTO), "image/info").unwrap().bytes).unwrap();
    assert_eq!(g["Make"]["value"], "Canon");
    assert_eq!(g["DateTime"]["value"], "2015:02:05 23:56:51");
    assert_eq!(g["ExposureTime"]["value"], "1/800");
    assert!(g["ExifTag"]["value"].as_str().unwrap().parse::<u32>().is_ok());
    // keys sorted in the serialized text
    let text = String::from_utf8(o.bytes).unwrap();
    let keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    let pos: Vec<usize> = keys.iter().map(|k| text.find(&format!("\"{k}\"")).unwrap()).collect();
    assert!(pos.windows(2).all(|w| w[0] < w[1]));
    // after ops: describes the processed result
    let v: serde_json::Value =
        serde_json::from_slice(&run_chain(&src, "image/resize,w_100/format,png/info").unwrap().bytes).unwrap();
    assert_eq!(v["ImageWidth"]["value"], "100");
    assert_eq!(v["Format"]["value"], "png");
}

#[test]
fn average_hue_json() {
    let o = run_chain(&corpus(PHOTO), "image/average-hue").unwrap();
    assert_eq!(o.content_type, "application/json");
    let v: serde_json::Value = serde_json::from_slice(&o.bytes).unwrap();
    let s = v["RGB"].as_str().unwrap();
    assert!(
        s.starts_with("0x") && s.len() == 8 && s[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
}

#[test]
fn watermark_runs_and_deadline() {
    let src = corpus(PHOTO);
    assert!(run_chain(&src, "image/watermark,text_SGVsbG8").is_ok());
    // Without start-up fonts a text watermark is an internal error, not a panic.
    let p = pp("image/watermark,text_SGVsbG8").unwrap();
    assert_eq!(run(&src, &p, &RunContext::new(&Limits::default())).unwrap_err().status(), 500);
    let p = pp("image/resize,w_10").unwrap();
    let limits = Limits::default();
    let past = std::time::Instant::now() - std::time::Duration::from_secs(1);
    let e = run(&src, &p, &RunContext { deadline: Some(past), ..RunContext::new(&limits) }).unwrap_err();
    assert_eq!(e.status(), 504);
}

#[test]
fn cancel_flag_stops_a_run_and_blur_has_a_cost_limit() {
    let src = corpus(PHOTO);
    let limits = Limits::default();
    let gone = std::sync::atomic::AtomicBool::new(true);
    let p = pp("image/resize,w_10").unwrap();
    let e = run(&src, &p, &RunContext { cancel: Some(&gone), ..RunContext::new(&limits) }).unwrap_err();
    assert!(e.is_cancelled(), "{e}");
    // Inside a long op: the blur checks the flag every 64 rows.
    let img = image::DynamicImage::ImageRgb8(image::RgbImage::new(64, 200));
    let blur = ops::blur::Blur { r: 3, s: 2 };
    let ctx = RunContext { cancel: Some(&gone), ..RunContext::new(&limits) };
    assert!(blur.apply(&img, &ctx).unwrap_err().is_cancelled());
    // pixels x (2r+1) over the budget is a 400 before decoding.
    let tight = Limits { max_filter_cost: 1000, ..Limits::default() };
    let e = run(&src, &pp("image/blur,r_50,s_50").unwrap(), &RunContext::new(&tight)).unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "ImageTooLarge"));
}

#[test]
fn limits_before_decoding() {
    let src = corpus(PHOTO);
    let p = pp("image/resize,w_10").unwrap();
    let lim = Limits { max_source_bytes: 1000, ..Limits::default() };
    assert_eq!(run(&src, &p, &RunContext::new(&lim)).unwrap_err().code(), "ImageTooLarge");
    let lim = Limits { max_source_pixels: 1000, ..Limits::default() };
    let e = run(&src, &p, &RunContext::new(&lim)).unwrap_err();
    assert_eq!((e.code(), e.ec()), ("ImageTooLarge", Some("0040-00000012")));
    let gif = corpus("animated/rotating_earth_44_frames.gif");
    let lim = Limits { max_frames: 10, ..Limits::default() };
    assert_eq!(run(&gif, &p, &RunContext::new(&lim)).unwrap_err().code(), "ImageTooLarge");
    let lim = Limits { max_output_pixels: 100, ..Limits::default() };
    assert_eq!(
        run(&src, &pp("image/resize,w_100").unwrap(), &RunContext::new(&lim)).unwrap_err().code(),
        "ImageTooLarge"
    );
}

#[test]
fn malformed_corpus_gives_clean_4xx() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/malformed");
    let mut names: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert!(names.len() >= 19);
    for name in names {
        let src = std::fs::read(dir.join(&name)).unwrap();
        for chain in
            ["image/resize,w_100", "image/info", "image/format,png", "image/rotate,90/format,webp", "image/average-hue"]
        {
            let t = std::time::Instant::now();
            match run_chain(&src, chain) {
                Ok(o) => assert!(!o.bytes.is_empty(), "{name} {chain}"),
                Err(e) => assert!((400..500).contains(&e.status()), "{name} {chain}: {e}"),
            }
            assert!(t.elapsed().as_secs() < 20, "{name} {chain} too slow");
        }
    }
    // The real bombs and broken files are rejected, not processed.
    for name in [
        "GENERATED_bomb_1000000x1000000_rgba.png",
        "GENERATED_bomb_65500x65500.jpg",
        "GENERATED_bomb_65535x65535.gif",
        "huge_65536x65536_1bit.png",
        "huge_16384x16384_1bit.png",
        "huge_20000x14000_gray.jpg",
        "GENERATED_zero_bytes.jpg",
        "GENERATED_html_error_page.jpg",
        "one_byte.jpg",
        "truncated_10000_bytes.jpg",
        "truncated_10000_bytes.png",
        "truncated.gif",
        "corrupt_header_exif_only.jpg",
        "fuzz_oss-fuzz-36829.jpg",
    ] {
        let e = run_chain(&std::fs::read(dir.join(name)).unwrap(), "image/resize,w_100").unwrap_err();
        assert!(matches!(e.code(), "BadRequest" | "ImageTooLarge"), "{name}: {e}");
    }
}

fn frame_delays(bytes: &[u8]) -> Vec<u32> {
    use image::AnimationDecoder;
    let cur = std::io::Cursor::new(bytes);
    let frames: Vec<image::Frame> = match codec::sniff(bytes) {
        Some(ops::format::Format::Gif) => {
            image::codecs::gif::GifDecoder::new(cur).unwrap().into_frames().collect_frames().unwrap()
        }
        _ => image::codecs::webp::WebPDecoder::new(cur).unwrap().into_frames().collect_frames().unwrap(),
    };
    frames
        .iter()
        .map(|f| {
            let (n, d) = f.delay().numer_denom_ms();
            n / d
        })
        .collect()
}

#[test]
fn animation_delays_kept() {
    for (f, chain) in [
        ("animated/libvips_dispose_background.gif", "image/resize,w_40"),
        ("animated/goldener_schnitt_finite_loop.gif", "image/resize,w_40"),
        ("animated/goldener_schnitt_loop_3.webp", "image/resize,w_40"),
        ("animated/rotating_earth_44_frames.gif", "image/crop,w_40,h_40,g_center"),
    ] {
        let src = corpus(f);
        let out = run_chain(&src, chain).unwrap();
        assert_eq!(frame_delays(&out.bytes), frame_delays(&src), "{f} {chain}");
    }
}

#[test]
fn animation_loop_count_kept() {
    let gif = corpus("animated/goldener_schnitt_finite_loop.gif");
    let n = codec::gif_loop_count(&gif);
    assert!(matches!(n, Some(k) if k > 0), "{n:?}");
    let out = run_chain(&gif, "image/resize,w_40").unwrap();
    assert_eq!(codec::gif_loop_count(&out.bytes), n);
    let w = corpus("animated/goldener_schnitt_loop_3.webp");
    let out = run_chain(&w, "image/resize,w_40").unwrap();
    assert_eq!(codec::webp_loop_count(&out.bytes), Some(3));
}

#[test]
fn jpeg_warnings_tolerated_but_truncation_rejected() {
    // One stray byte before the DQT marker: libjpeg warns "extraneous bytes", browsers
    // show the image, so do we.
    let mut src = corpus(PHOTO);
    let p = src.windows(2).position(|w| w == [0xFF, 0xDB]).unwrap();
    src.insert(p, 0x00);
    assert_eq!(dims(&src, "image/resize,w_100"), (100, 67));
    // A truncated file stays a 400.
    let src = corpus(PHOTO);
    let e = run_chain(&src[..src.len() / 2], "image/resize,w_100").unwrap_err();
    assert_eq!(e.code(), "BadRequest");
}

#[test]
fn every_corpus_image_processes() {
    // Smoke test over the whole non-malformed corpus: small outputs in every family.
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus");
    for dir in ["photos", "orientation", "alpha", "animated"] {
        let mut names: Vec<_> =
            std::fs::read_dir(root.join(dir)).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        names.sort();
        for name in names {
            let src = std::fs::read(root.join(dir).join(&name)).unwrap();
            for chain in [
                "image/resize,w_32",
                "image/resize,m_fill,w_24,h_24/format,png",
                "image/resize,w_32/format,webp",
                "image/info",
            ] {
                let out = run_chain(&src, chain).unwrap_or_else(|e| panic!("{dir}/{name} {chain}: {e}"));
                if !chain.ends_with("info") {
                    let img = decode_out(&out);
                    assert!(img.width() == 32 || img.width() == 24, "{dir}/{name} {chain}: {}", img.width());
                }
            }
        }
    }
}

#[test]
fn bmp_and_tiff_keep_alpha() {
    let src = corpus("alpha/libvips_rgba.png");
    for f in ["bmp", "tiff"] {
        let img = decode_out(&run_chain(&src, &format!("image/format,{f}")).unwrap());
        assert!(img.to_rgba8().pixels().any(|p| p.0[3] == 0), "{f}");
    }
}

/// Runs a chain with a decoded-source cache.
fn run_cached(src: &[u8], chain: &str, cache: &DecodedCache) -> Output {
    let limits = Limits::default();
    run(src, &pp(chain).unwrap(), &RunContext { decoded: Some(cache), ..RunContext::new(&limits) }).unwrap()
}

#[test]
fn decoded_cache_serves_other_variants_of_one_original_byte_identically() {
    let src = corpus("photos/giunchedi_srgb_icc.jpg"); // 800×533: 400 px decodes at 1/1, 100 px at 1/4
    let cache = DecodedCache::new(64 << 20).unwrap();
    let large = run_cached(&src, "image/resize,m_lfit,w_400,h_400/format,webp", &cache);
    assert!(!large.trace.decoded_cache_hit);
    // Another format of the same size shares the decode...
    let png = run_cached(&src, "image/resize,m_lfit,w_400,h_400/format,png", &cache);
    assert!(png.trace.decoded_cache_hit, "same scale: the decode is reused");
    // ...but a smaller size decodes at its own, coarser scale rather than resizing from
    // the finer cached pixels, so its bytes do not depend on what the cache held.
    let small = run_cached(&src, "image/resize,m_lfit,w_100,h_100/format,webp", &cache);
    assert!(small.trace.shrink > large.trace.shrink, "{} vs {}", small.trace.shrink, large.trace.shrink);
    assert!(!small.trace.decoded_cache_hit);
    for (out, chain) in
        [(&png, "image/resize,m_lfit,w_400,h_400/format,png"), (&small, "image/resize,m_lfit,w_100,h_100/format,webp")]
    {
        assert!(out.bytes == run_chain(&src, chain).unwrap().bytes, "{chain}: same bytes as without the cache");
    }
    // Other ops after the resize still see their own copy: the cached decode is untouched.
    let rotated = run_cached(&src, "image/resize,m_lfit,w_100,h_100/rotate,90/format,png", &cache);
    assert!(rotated.trace.decoded_cache_hit);
    let d = decode_out(&rotated);
    let s = decode_out(&small);
    assert_eq!((d.width(), d.height()), (s.height(), s.width()));
    // An animation never goes through it.
    let gif = corpus("animated/goldener_schnitt_finite_loop.gif");
    let out = run_cached(&gif, "image/resize,w_50", &cache);
    let again = run_cached(&gif, "image/resize,w_50", &cache);
    assert!(!out.trace.decoded_cache_hit && !again.trace.decoded_cache_hit);
}

#[test]
fn webp_side_limit_is_a_400_not_an_encoder_failure() {
    // 16×16396 after a crop: within the pixel limit, beyond VP8's 16383 px side.
    let tall = image::DynamicImage::new_rgb8(16, 16_396);
    let mut src = Vec::new();
    tall.write_to(&mut std::io::Cursor::new(&mut src), image::ImageFormat::Png).unwrap();
    let e = run_chain(&src, "image/format,webp").unwrap_err();
    assert_eq!((e.status(), e.code()), (400, "ImageTooLarge"), "{}", e.message());
    assert!(run_chain(&src, "image/format,png").is_ok());
}

/// Reference for shrink-on-load checks: the image crate's own decoder, resampled once.
fn reference_resize(src: &[u8], w: u32, h: u32) -> image::RgbImage {
    let full = picture::normalize(image::load_from_memory(src).unwrap());
    picture::flatten_white(picture::resample(&full, w, h, None).unwrap())
}

#[test]
fn still_webp_decodes_through_libwebp_scaled_on_load() {
    let src = corpus("photos/rockybeach_lossy.webp"); // 1280×720
    let out = run_chain(&src, "image/resize,w_300/format,png").unwrap();
    assert_eq!(out.trace.shrink, 2, "1280 → 300 keeps a 2× margin at 640");
    let got = picture::flatten_white(decode_out(&out));
    let want = reference_resize(&src, got.width(), got.height());
    let q = psnr(&got, &want);
    assert!(q > 35.0, "PSNR {q:.1} dB against a full pure-Rust decode");
    // Lossless WebP with alpha keeps its transparency through libwebp.
    let alpha = run_chain(&corpus("alpha/webp_logo_lossless_alpha.webp"), "image/resize,w_100/format,png").unwrap();
    assert!(decode_out(&alpha).to_rgba8().pixels().any(|p| p.0[3] == 0));
}

#[test]
fn png_shrinks_on_load_by_a_box_average_close_to_a_direct_resize() {
    let src = corpus("alpha/blackbug_rgba_mostly_transparent.png"); // 2048×1536
    let out = run_chain(&src, "image/resize,w_400/format,png").unwrap();
    assert_eq!(out.trace.shrink, 2);
    let got = decode_out(&out);
    assert_eq!((got.width(), got.height()), (400, 300));
    let want = reference_resize(&src, 400, 300);
    let q = psnr(&picture::flatten_white(got), &want);
    assert!(q > 35.0, "PSNR {q:.1} dB against a direct Lanczos resize");
}

#[test]
fn box_shrink_premultiplies_so_transparent_colour_does_not_bleed() {
    // One opaque blue pixel among three fully transparent red ones: the average is blue
    // at a quarter opacity. Without premultiplying it would come out purple.
    let mut img = image::RgbaImage::from_pixel(2, 2, image::Rgba([255, 0, 0, 0]));
    img.put_pixel(0, 0, image::Rgba([0, 0, 255, 255]));
    let out = picture::box_shrink(image::DynamicImage::ImageRgba8(img), 2).unwrap().to_rgba8();
    let p = out.get_pixel(0, 0).0;
    assert!(p[0] <= 2 && p[2] >= 250 && (60..=68).contains(&p[3]), "{p:?}");
}

#[test]
fn png_level_is_smaller_than_fdeflate_fast_on_a_photo() {
    // Over the six benchmark PNGs level 3 is 8 % smaller; on this one 11 %.
    let src = corpus("photos/rockybeach_lossy.webp");
    let img = decode_out(&run_chain(&src, "image/resize,w_400/format,png").unwrap());
    let encode = |c| {
        let mut out = Vec::new();
        image::codecs::png::PngEncoder::new_with_quality(&mut out, c, image::codecs::png::FilterType::Adaptive)
            .write_image(img.as_bytes(), img.width(), img.height(), codec::ext_color(&img))
            .unwrap();
        out.len()
    };
    use image::ImageEncoder;
    let (ours, fast) = (encode(codec::PNG_COMPRESSION), encode(image::codecs::png::CompressionType::Fast));
    assert!(ours * 100 < fast * 97, "level 3 {ours} B against fdeflate {fast} B");
}

#[test]
fn working_memory_counts_the_progressive_coefficient_buffer() {
    let limits = Limits::default();
    let progressive =
        codec::probe(&corpus("photos/seeding_by_Clements_Engelhardt_16mp_progressive.jpg"), &limits).unwrap();
    let baseline = codec::probe(&corpus("photos/powerpano_3660x1080_panorama.jpg"), &limits).unwrap();
    assert!(progressive.meta.progressive && !baseline.meta.progressive);
    // 5312×2988 at 4:2:0: 47.6 MB of coefficients, plus the 1/4 output frame.
    let need = codec::working_bytes(&progressive, 4);
    assert!((47_000_000..52_000_000).contains(&need), "{need}");
    assert!(codec::working_bytes(&baseline, 4) < 5_000_000);
}

#[test]
fn far_smaller_outputs_skip_the_ac_refinement_scans_of_a_progressive_jpeg() {
    let src = corpus("photos/friends_by_Aitzol_Berasategi_portrait.jpg"); // 2056×3088
    let small = run_chain(&src, "image/resize,m_lfit,w_400,h_400/format,png").unwrap();
    assert!(small.trace.coarse_ac && small.trace.shrink == 2, "{:?}", small.trace);
    let near = run_chain(&src, "image/resize,m_lfit,w_640,h_640/format,png").unwrap();
    assert!(!near.trace.coarse_ac, "4.8× smaller is too close: {:?}", near.trace);
    let baseline = run_chain(&corpus("photos/powerpano_3660x1080_panorama.jpg"), "image/resize,w_100").unwrap();
    assert!(!baseline.trace.coarse_ac, "a baseline JPEG has no refinement scans");

    // The coarse decode against a full-precision one, both resized as the request does.
    let probe = codec::probe(&src, &Limits::default()).unwrap();
    let at_400 = |coarse_ac| {
        let pic =
            codec::decode(&src, &probe, codec::LoadScale { shrink: 2, coarse_ac }, false, &Limits::default()).unwrap();
        picture::resample(pic.first().unwrap(), 266, 400, None).unwrap().to_rgb8()
    };
    let (coarse, full) = (at_400(true), at_400(false));
    let db = psnr(&coarse, &full);
    assert!(db > 45.0 && db < 99.0, "PSNR {db:.1} dB");
    assert_eq!(decode_out(&small).to_rgb8().dimensions(), coarse.dimensions());
}

/// Issue 15 item 16b: png 0.18.1 panics expanding a 25-byte `PLTE` (valid CRCs). The
/// decode guard turns that into a 400 "cannot be decoded", with the panic as log detail.
#[test]
fn a_decoder_panic_is_a_4xx_with_log_detail() {
    // The palette that made png 0.18.1 panic is refused before the decoder sees it.
    let src = std::fs::read(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/bad_plte25.png")).unwrap();
    let e = run_chain(&src, "image/resize,w_10").unwrap_err();
    assert_eq!((e.status(), e.kind()), (400, ProcessErrorKind::Undecodable), "{e}");
    assert!(e.detail().is_some_and(|d| d.contains("PLTE")), "not the palette check: {e}");
    // Any other decoder panic is caught as the same 4xx, the panic text as log detail.
    let e = super::codec::guard_decoder(|| -> Result<(), _> { panic!("decoder bug") }).unwrap_err();
    assert_eq!((e.status(), e.kind()), (400, ProcessErrorKind::Undecodable), "{e}");
    assert!(e.detail().is_some_and(|d| d.starts_with(DECODER_PANIC) && d.contains("decoder bug")), "{e}");
    assert!(!e.message().contains("panic"), "{e}");
}
