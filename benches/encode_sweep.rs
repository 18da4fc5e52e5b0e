//! Encoder-settings sweep for issue 20 (benches/peers/sweep.py drives it): encodes one PNG
//! (a lossless imgedge resize) with a named JPEG or WebP setting at each quality of a
//! ladder, writes `OUT/<setting>_q<Q>.<ext>` and prints `setting q bytes encode_ms` lines
//! (median of 5 encodes). Not part of the server.
//!
//! Usage: encode_sweep IN.png OUT_DIR SETTING[,SETTING...] Q[,Q...]
//! Settings: jpeg, jpeg-opt (libjpeg-turbo, the server's encoder before issue 20), jpeg-trellis[-dr][-noac][-nodc][-l<scale1>] (built with
//! `--features sweep-mozjpeg`), jpeg-jpegli (adaptive quantisation on), jpeg-jpegli-noaq
//! (the server's JPEG encoder since issue 20)[-444][-std0], avif-s<speed>,
//! webp-m<M>[-sns<S>][-f<F>][-seg<N>][-sharpness<N>][-sharp][-af][-pass<N>][-pre<N>].

// A measuring tool run by hand: failing loudly on bad input is what it should do.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::time::Instant;

fn webp(rgb: &image::RgbImage, q: u8, spec: &str) -> Vec<u8> {
    let mut cfg = webp::WebPConfig::new().expect("config");
    cfg.quality = f32::from(q);
    for part in spec.split('-').skip(1) {
        let num = |p: &str| part[p.len()..].parse::<i32>().expect("number");
        if let Some(_m) = part.strip_prefix('m').filter(|r| r.chars().all(|c| c.is_ascii_digit())) {
            cfg.method = num("m");
        } else if part.starts_with("sns") {
            cfg.sns_strength = num("sns");
        } else if part.starts_with("seg") {
            cfg.segments = num("seg");
        } else if part.starts_with("sharpness") {
            cfg.filter_sharpness = num("sharpness");
        } else if part.starts_with('f') {
            cfg.filter_strength = num("f");
        } else if part == "sharp" {
            cfg.use_sharp_yuv = 1;
        } else if part == "af" {
            cfg.autofilter = 1;
        } else if part.starts_with("pass") {
            cfg.pass = num("pass");
        } else if part.starts_with("pre") {
            cfg.preprocessing = num("pre");
        } else {
            panic!("unknown part {part}");
        }
    }
    let enc = webp::Encoder::from_rgb(rgb.as_raw(), rgb.width(), rgb.height());
    enc.encode_advanced(&cfg).expect("webp").to_vec()
}

fn jpeg(rgb: &image::RgbImage, q: u8, optimize: bool) -> Vec<u8> {
    let mut c = turbojpeg::Compressor::new().expect("tj");
    c.set_quality(i32::from(q)).expect("q");
    c.set_subsamp(turbojpeg::Subsamp::Sub2x2).expect("ss");
    c.set_optimize(optimize).expect("opt");
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    c.compress_to_vec(turbojpeg::Image {
        pixels: rgb.as_raw().as_slice(),
        width: w,
        pitch: w * 3,
        height: h,
        format: turbojpeg::PixelFormat::RGB,
    })
    .expect("jpeg")
}

/// mozjpeg-rs with the server's tables (standard Annex K scaled by quality, 8-bit, 4:2:0):
/// `jpeg-trellis` (AC+DC trellis, optimised Huffman, no deringing), `-dr` adds overshoot
/// deringing, `-noac` turns trellis off (Huffman only: matches `jpeg-opt`'s pixels).
#[cfg(feature = "sweep-mozjpeg")]
fn jpeg_moz(rgb: &image::RgbImage, q: u8, spec: &str) -> Vec<u8> {
    let mut trellis = mozjpeg_rs::TrellisConfig::default();
    if spec.contains("-noac") {
        trellis = mozjpeg_rs::TrellisConfig::disabled();
    }
    if spec.contains("-nodc") {
        trellis.dc_enabled = false;
    }
    // `-l<x>`: lambda_log_scale1 (default 14.75; higher = gentler trellis).
    if let Some(l) = spec.split('-').find_map(|p| p.strip_prefix('l').and_then(|v| v.parse::<f32>().ok())) {
        trellis.lambda_log_scale1 = l;
    }
    mozjpeg_rs::Encoder::baseline_optimized()
        .quality(q)
        .quant_tables(mozjpeg_rs::QuantTableIdx::JpegAnnexK)
        .force_baseline(true)
        .subsampling(mozjpeg_rs::Subsampling::S420)
        .optimize_huffman(true)
        .overshoot_deringing(spec.contains("-dr"))
        .trellis(trellis)
        .encode_rgb(rgb.as_raw(), rgb.width(), rgb.height())
        .expect("mozjpeg-rs")
}

/// jpegli through the server's own wrapper (`imgedge::process::jpegli`), from
/// [`Settings::server`](imgedge::process::jpegli::Settings::server): `-aq` turns adaptive
/// quantisation on, `-444` keeps full chroma, `-std0` uses jpegli's own tables (changes what
/// Q_n means; for reference only). `jpeg-jpegli-noaq` is the server's setting (the name
/// kept from the measurement that chose it).
fn jpeg_jpegli(rgb: &image::RgbImage, q: u8, spec: &str) -> Vec<u8> {
    use imgedge::process::jpegli::{encode_rgb, Settings};
    let mut s = Settings::server(q, false);
    s.adaptive_quantization = spec.contains("-aq") || spec == "jpeg-jpegli";
    s.chroma_420 = !spec.contains("-444");
    s.standard_tables = !spec.contains("-std0");
    encode_rgb(rgb.as_raw(), rgb.width(), rgb.height(), &s).expect("jpegli")
}

fn avif(rgb: &image::RgbImage, q: u8, spec: &str) -> Vec<u8> {
    let speed = spec.strip_prefix("avif-s").and_then(|s| s.parse().ok()).unwrap_or(10);
    let px: Vec<ravif::RGB8> = rgb.pixels().map(|p| ravif::RGB8::new(p[0], p[1], p[2])).collect();
    let enc = ravif::Encoder::new().with_quality(f32::from(q)).with_speed(speed).with_num_threads(Some(1));
    enc.encode_rgb(ravif::Img::new(&px[..], rgb.width() as usize, rgb.height() as usize)).expect("avif").avif_file
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let rgb = image::open(&a[1]).expect("open").to_rgb8();
    let out = std::path::Path::new(&a[2]);
    std::fs::create_dir_all(out).expect("out dir");
    for spec in a[3].split(',') {
        for q in a[4].split(',').map(|q| q.parse::<u8>().expect("q")) {
            let enc = || match spec {
                "jpeg" => jpeg(&rgb, q, false),
                "jpeg-opt" => jpeg(&rgb, q, true),
                #[cfg(feature = "sweep-mozjpeg")]
                s if s.starts_with("jpeg-trellis") => jpeg_moz(&rgb, q, s),
                s if s.starts_with("jpeg-jpegli") => jpeg_jpegli(&rgb, q, s),
                s if s.starts_with("webp") => webp(&rgb, q, s),
                s if s.starts_with("avif") => avif(&rgb, q, s),
                s => panic!("unknown setting {s}"),
            };
            let mut times = Vec::new();
            let mut bytes = Vec::new();
            for _ in 0..5 {
                let t = Instant::now();
                bytes = enc();
                times.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            let ext = &spec[..4].replace("jpeg", "jpg");
            std::fs::write(out.join(format!("{spec}_q{q}.{ext}")), &bytes).expect("write");
            println!("{spec} {q} {} {:.3}", bytes.len(), times[2]);
        }
    }
}
