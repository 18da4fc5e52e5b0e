//! Pixel checks against an independent implementation: Pillow (`tests/reference.py`),
//! run with `.venv/bin/python` from the crate root (`python3 -m venv .venv &&
//! .venv/bin/pip install pillow numpy`). Our decoded output must be within 30 dB PSNR of
//! Pillow's for resize (fit and fill), rotate 90, EXIF auto-orient and ICC → sRGB.
//!
//! A missing venv is a failure, never a silent pass (with or without `CI=true`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;

use super::tests::{corpus, decode_out, psnr, run_chain};

fn python() -> PathBuf {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let py = root.join(".venv/bin/python");
    if !py.exists() {
        let ci = std::env::var("CI").map(|v| v == "true").unwrap_or(false);
        panic!(
            "Pillow reference venv missing at {} (CI={ci}). Create it with: \
             python3 -m venv .venv && .venv/bin/pip install pillow numpy",
            py.display()
        );
    }
    py
}

fn pillow(op: &str, input: &str, args: &[u32]) -> image::RgbImage {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("../shared/corpus").join(input);
    let dst =
        std::env::temp_dir().join(format!("imgedge-ref-{}-{op}-{}.png", std::process::id(), input.replace('/', "_")));
    let status = Command::new(python())
        .arg(root.join("tests/reference.py"))
        .arg(op)
        .arg(&src)
        .arg(&dst)
        .args(args.iter().map(|a| a.to_string()))
        .status()
        .expect("run python");
    assert!(status.success(), "reference.py {op} {input} failed");
    let img = image::open(&dst).expect("read reference output").into_rgb8();
    let _ = std::fs::remove_file(&dst);
    img
}

fn ours(input: &str, chain: &str) -> image::RgbImage {
    decode_out(&run_chain(&corpus(input), chain).unwrap()).into_rgb8()
}

fn check(input: &str, chain: &str, op: &str, args: &[u32], min_db: f64) {
    let a = ours(input, chain);
    let b = pillow(op, input, args);
    assert_eq!(a.dimensions(), b.dimensions(), "{input} {chain}");
    let q = psnr(&a, &b);
    eprintln!("{input} {chain}: PSNR {q:.1} dB vs Pillow");
    assert!(q >= min_db, "{input} {chain}: PSNR {q:.1} dB < {min_db}");
}

#[test]
fn resize_fit_matches_pillow() {
    check("photos/giunchedi_srgb_icc.jpg", "image/resize,w_200/format,png", "fit", &[200], 30.0);
    check("photos/powerpano_3660x1080_panorama.jpg", "image/resize,w_400/format,png", "fit", &[400], 30.0);
    check("photos/rockybeach_lossy.webp", "image/resize,w_320/format,png", "fit", &[320], 30.0);
}

#[test]
fn resize_fill_matches_pillow() {
    check("photos/giunchedi_srgb_icc.jpg", "image/resize,m_fill,w_120,h_120/format,png", "fill", &[120, 120], 30.0);
    check(
        "photos/libvips_sample_adobe_rgb_icc.jpg",
        "image/resize,m_fill,w_100,h_60/format,png",
        "fill",
        &[100, 60],
        30.0,
    );
}

#[test]
fn rotate_90_matches_pillow() {
    check("photos/libvips_sample_adobe_rgb_icc.jpg", "image/rotate,90/format,png", "rotate90", &[], 30.0);
}

/// ICC conversion (moxcms) against littleCMS: Adobe RGB and grey-gamma-2.2 profiles.
/// Skipping the conversion gives about 37.5 dB on these files, so the bar is 45 dB.
#[test]
fn icc_to_srgb_matches_littlecms() {
    check("photos/libvips_sample_adobe_rgb_icc.jpg", "image/resize,w_200/format,png", "fit", &[200], 45.0);
    check("photos/concert_grayscale_gray_icc.jpg", "image/resize,w_200/format,png", "fit", &[200], 45.0);
}

#[test]
fn auto_orient_matches_pillow() {
    for n in [3, 6, 8] {
        let f = format!("orientation/Landscape_{n}.jpg");
        check(&f, "image/resize,w_300/format,png", "fit", &[300], 30.0);
    }
    check("orientation/libvips_rotation_6_progressive_icc.jpg", "image/resize,w_100/format,png", "fit", &[100], 30.0);
}
