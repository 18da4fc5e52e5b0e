//! Engine benchmarks (criterion): the chain parser, each stage (decode with and without
//! shrink-on-load, resize, every encoder), each main pixel operation, and the
//! decoded-source cache on a srcset. Sources are real photos from ../shared/corpus.
//! Run with `cargo bench --bench engine`; figures are recorded in `benches/RESULTS-engine.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use imgedge::process::{self, stages, DecodedCache, Limits, RunContext, Styles};

fn corpus(rel: &str) -> Vec<u8> {
    let path = format!("{}/../shared/corpus/{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The 16 MP progressive JPEG (5312×2988).
const BIG: &str = "photos/seeding_by_Clements_Engelhardt_16mp_progressive.jpg";

fn slow(g: &mut BenchmarkGroup<'_, WallTime>) {
    g.sample_size(10).measurement_time(Duration::from_secs(6)).warm_up_time(Duration::from_secs(1));
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let styles = Styles::new();
    let mut g = c.benchmark_group("parse");
    for (name, chain) in [
        ("resize", "image/resize,w_400"),
        ("fill+format+quality", "image/resize,m_fill,w_400,h_300/format,webp/quality,Q_80"),
        (
            "watermark_text+image+crop+rotate",
            "image/resize,m_lfit,w_800,h_800/crop,x_10,y_10,w_600,h_400,g_center/rotate,90\
             /watermark,text_SGVsbG8g5L2g5aW9,size_40,color_FF0000,g_se,x_10,y_10,shadow_50\
             /watermark,image_bG9nby5wbmc_eC1vc3MtcHJvY2Vzcz1pbWFnZS9yZXNpemUsUF8zMA,g_nw/format,jpg/quality,q_85",
        ),
    ] {
        g.bench_function(name, |b| b.iter(|| process::parse(black_box(chain), &styles, &limits).unwrap()));
    }
    g.finish();
}

fn stages_16mp(c: &mut Criterion) {
    let src = corpus(BIG);
    let mut g = c.benchmark_group("stages_16mp_to_400w");
    slow(&mut g);
    g.bench_function("decode_full_no_shrink", |b| b.iter(|| stages::decode_for_width(black_box(&src), 5312).unwrap()));
    g.bench_function("decode_shrink_on_load", |b| b.iter(|| stages::decode_for_width(black_box(&src), 400).unwrap()));
    let decoded = stages::decode_for_width(&src, 400).unwrap();
    eprintln!("shrunk decode size: {:?}", decoded.dims());
    g.bench_function("resize_lanczos3", |b| b.iter(|| stages::resize_to_width(black_box(&decoded), 400).unwrap()));
    let small = stages::resize_to_width(&decoded, 400).unwrap();
    g.bench_function("encode_jpeg_q80", |b| b.iter(|| stages::encode_jpeg(black_box(&small), 80).unwrap()));
    g.bench_function("encode_webp_q80", |b| b.iter(|| stages::encode_webp(black_box(&small), 80).unwrap()));
    g.bench_function("encode_avif_q80", |b| b.iter(|| stages::encode(black_box(&small), "avif", 80).unwrap()));
    g.bench_function("encode_gif", |b| b.iter(|| stages::encode(black_box(&small), "gif", 80).unwrap()));
    // PNG: the engine's setting against zlib-style levels, for time against bytes.
    for level in [0u8, 1, 3, 6] {
        let bytes = stages::encode_png_level(&small, level).unwrap().len();
        eprintln!("png level {level} (0 = engine setting): {bytes} bytes");
        g.bench_function(format!("encode_png_level_{level}"), |b| {
            b.iter(|| stages::encode_png_level(black_box(&small), level).unwrap())
        });
    }
    g.finish();
}

fn decoders(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode_other_formats");
    slow(&mut g);
    for (name, rel) in [
        ("png_rgba_2048x1536", "alpha/blackbug_rgba_mostly_transparent.png"),
        ("webp_lossy_1280x720", "photos/rockybeach_lossy.webp"),
        ("jpeg_cmyk_800x533", "photos/giunchedi_cmyk_adobe.jpg"),
        ("jpeg_srgb_icc_800x533", "photos/giunchedi_srgb_icc.jpg"),
    ] {
        let src = corpus(rel);
        g.bench_function(name, |b| b.iter(|| stages::decode(black_box(&src)).unwrap()));
    }
    g.finish();
}

/// Each main op on an 800×533 photo. The source is stored as BMP and the output
/// written as BMP so decode and encode are near-free; `format_bmp_only` is that floor.
fn ops(c: &mut Criterion) {
    let photo = stages::decode(&corpus("photos/giunchedi_srgb_icc.jpg")).unwrap();
    let src = stages::encode(&photo, "bmp", 100).unwrap();
    let limits = Limits::default();
    let fonts = process::Fonts::embedded().unwrap();
    let ctx = RunContext { fonts: Some(&fonts), ..RunContext::new(&limits) };
    let mut g = c.benchmark_group("ops_800x533");
    g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    for (name, chain) in [
        ("format_bmp_only", "image/format,bmp"),
        ("resize_fill_200", "image/resize,m_fill,w_200,h_200/format,bmp"),
        ("resize_pad_300", "image/resize,m_pad,w_300,h_300,color_FFFFFF/format,bmp"),
        ("crop_400x300", "image/crop,x_100,y_100,w_400,h_300/format,bmp"),
        ("rotate_90", "image/rotate,90/format,bmp"),
        ("rotate_45", "image/rotate,45/format,bmp"),
        ("blur_r5_s5", "image/blur,r_5,s_5/format,bmp"),
        ("sharpen_100", "image/sharpen,100/format,bmp"),
        ("bright_30", "image/bright,30/format,bmp"),
        ("contrast_30", "image/contrast,30/format,bmp"),
        ("circle_200", "image/circle,r_200/format,bmp"),
        ("rounded_corners_50", "image/rounded-corners,r_50/format,bmp"),
        ("indexcrop_4", "image/indexcrop,x_200,i_1/format,bmp"),
        ("watermark_text", "image/watermark,text_aW1nZWRnZSDmsLTljbA,size_40,g_se,shadow_50/format,bmp"),
        ("info_json", "image/info"),
        ("average_hue", "image/average-hue"),
    ] {
        let p = process::parse(chain, &Styles::new(), &limits).unwrap();
        g.bench_function(name, |b| b.iter(|| process::run(black_box(&src), &p, &ctx).unwrap()));
    }
    g.finish();
}

fn end_to_end(c: &mut Criterion) {
    let src = corpus(BIG);
    let limits = Limits::default();
    let styles = Styles::new();
    let mut g = c.benchmark_group("end_to_end_16mp_to_400w");
    slow(&mut g);
    for (name, chain) in [
        ("webp_q80", "image/resize,w_400/format,webp/quality,Q_80"),
        ("jpeg_q80", "image/resize,w_400/format,jpg/quality,Q_80"),
        ("png", "image/resize,w_400/format,png"),
    ] {
        let p = process::parse(chain, &styles, &limits).unwrap();
        let ctx = RunContext::new(&limits);
        let out = process::run(&src, &p, &ctx).unwrap();
        eprintln!("{name}: {} bytes", out.bytes.len());
        g.bench_function(name, |b| b.iter(|| process::run(black_box(&src), &p, &ctx).unwrap()));
    }
    g.finish();
}

/// A srcset of one 16 MP original (4 widths × JPEG/WebP), with and without the
/// decoded-source cache; the cache is emptied before each srcset.
fn srcset(c: &mut Criterion) {
    let src = corpus(BIG);
    let limits = Limits::default();
    let chains: Vec<_> = [160, 320, 480, 640]
        .iter()
        .flat_map(|w| ["jpg", "webp"].map(|f| format!("image/resize,m_lfit,w_{w},h_{w}/format,{f}/quality,Q_80")))
        .map(|chain| process::parse(&chain, &Styles::new(), &limits).unwrap())
        .collect();
    let mut g = c.benchmark_group("srcset_16mp_8_variants");
    slow(&mut g);
    g.bench_function("decoded_cache_off", |b| {
        let ctx = RunContext::new(&limits);
        b.iter(|| chains.iter().map(|p| process::run(&src, p, &ctx).unwrap().bytes.len()).sum::<usize>())
    });
    g.bench_function("decoded_cache_on", |b| {
        b.iter(|| {
            let cache = DecodedCache::new(64 << 20).unwrap();
            let ctx = RunContext { decoded: Some(&cache), ..RunContext::new(&limits) };
            chains.iter().map(|p| process::run(&src, p, &ctx).unwrap().bytes.len()).sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(benches, parse, stages_16mp, decoders, ops, end_to_end, srcset);
criterion_main!(benches);
