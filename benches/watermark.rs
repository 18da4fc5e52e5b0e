//! Criterion benchmark of a text watermark on a 1000 px image (issue 4): the whole run
//! (decode JPEG → resize to 1000 px → watermark → encode JPEG) against the same chain
//! without the watermark, plus one uncached rasterisation (what the block cache saves).
//!
//! Run with `cargo bench --bench watermark`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use imgedge::process::{self, stages, Fonts, Limits, RunContext, Styles};

fn source_jpeg() -> Vec<u8> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/giunchedi_srgb_icc.jpg");
    std::fs::read(p).expect("fixture")
}

fn bench(c: &mut Criterion) {
    let fonts = Fonts::embedded().expect("fonts");
    let limits = Limits::default();
    let styles = Styles::new();
    // 800×533 fixture upscaled to 1000 px wide, then watermarked; encoded as JPEG.
    let src = source_jpeg();
    let text = "aW1nZWRnZSDlm77niYfmsLTljbA"; // "imgedge 图片水印"
    let base = process::parse("image/resize,w_1000", &styles, &limits).expect("chain");
    let wm = process::parse(
        &format!("image/resize,w_1000/watermark,text_{text},size_40,color_FFFFFF,shadow_50,g_se"),
        &styles,
        &limits,
    )
    .expect("chain");
    let fill =
        process::parse(&format!("image/resize,w_1000/watermark,text_{text},size_24,fill_1,t_40"), &styles, &limits)
            .expect("chain");
    let ctx = RunContext { fonts: Some(&fonts), ..RunContext::new(&limits) };
    let mut g = c.benchmark_group("watermark");
    g.sample_size(20);
    g.bench_function("baseline_resize_w1000_jpeg", |b| b.iter(|| process::run(&src, &base, &ctx).expect("run")));
    g.bench_function("text_se_w1000_jpeg", |b| b.iter(|| process::run(&src, &wm, &ctx).expect("run")));
    g.bench_function("text_fill_w1000_jpeg", |b| b.iter(|| process::run(&src, &fill, &ctx).expect("run")));
    // The watermark step alone on a decoded 1000 px frame (block cached after the first).
    let decoded = stages::decode_for_width(&src, 800).expect("decode");
    let frame = stages::resize_to_width(&decoded, 1000).expect("resize");
    for (name, chain) in [
        ("draw_text_se_1000px", format!("image/watermark,text_{text},size_40,color_FFFFFF,shadow_50,g_se")),
        ("draw_text_fill_1000px", format!("image/watermark,text_{text},size_24,fill_1,t_40")),
    ] {
        g.bench_function(name, |b| {
            b.iter_batched(
                || stages::resize_to_width(&frame, 1000).expect("copy"),
                |mut img| stages::draw_watermarks(&mut img, &chain, &fonts).expect("draw"),
                criterion::BatchSize::LargeInput,
            )
        });
    }
    // What the cache saves per request: rasterising the same text block uncached.
    g.bench_function("rasterise_uncached_40px", |b| {
        b.iter(|| stages::rasterise_text(&fonts, "imgedge 图片水印", 40).expect("render"))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
