//! Engine benchmarks: a ≥ 12 MP progressive JPEG (the corpus' 5312×2988 "seeding" photo)
//! to 400 px wide WebP q80 and JPEG q80, per stage and end to end, plus chain parsing.
//! Run with `cargo bench --bench engine`; figures are recorded in `benches/RESULTS-engine.md`.

#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use imgedge::process::{self, stages, Limits, RunContext, Styles};

const BIG: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../shared/corpus/photos/seeding_by_Clements_Engelhardt_16mp_progressive.jpg"
);

fn bench(c: &mut Criterion) {
    let src = std::fs::read(BIG).expect("corpus photo (../shared/corpus)");
    let limits = Limits::default();
    let styles = Styles::new();

    let mut g = c.benchmark_group("parse");
    g.bench_function("resize+format+quality", |b| {
        b.iter(|| process::parse(black_box("image/resize,m_fill,w_400,h_300/format,webp/quality,Q_80"), &styles, &limits).unwrap())
    });
    g.finish();

    let mut g = c.benchmark_group("stages_16mp_to_400w");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    g.bench_function("decode_full_no_shrink", |b| b.iter(|| stages::decode_for_width(black_box(&src), 5312).unwrap()));
    g.bench_function("decode_shrink_on_load", |b| b.iter(|| stages::decode_for_width(black_box(&src), 400).unwrap()));
    let decoded = stages::decode_for_width(&src, 400).unwrap();
    eprintln!("shrunk decode size: {:?}", decoded.dims());
    g.bench_function("resize_lanczos3", |b| b.iter(|| stages::resize_to_width(black_box(&decoded), 400).unwrap()));
    let small = stages::resize_to_width(&decoded, 400).unwrap();
    g.bench_function("encode_webp_q80", |b| b.iter(|| stages::encode_webp(black_box(&small), 80).unwrap()));
    g.bench_function("encode_jpeg_q80", |b| b.iter(|| stages::encode_jpeg(black_box(&small), 80).unwrap()));
    g.finish();

    let mut g = c.benchmark_group("end_to_end_16mp_to_400w");
    g.sample_size(10).measurement_time(Duration::from_secs(8)).warm_up_time(Duration::from_secs(1));
    for (name, chain) in [
        ("webp_q80", "image/resize,w_400/format,webp/quality,Q_80"),
        ("jpeg_q80", "image/resize,w_400/format,jpg/quality,Q_80"),
    ] {
        let p = process::parse(chain, &styles, &limits).unwrap();
        let ctx = RunContext::new(&limits);
        let out = process::run(&src, &p, &ctx).unwrap();
        eprintln!("{name}: {} bytes", out.bytes.len());
        g.bench_function(name, |b| b.iter(|| process::run(black_box(&src), &p, &ctx).unwrap()));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
