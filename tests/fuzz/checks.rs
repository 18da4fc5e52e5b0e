//! The properties the fuzz targets check, shared with the replay test in
//! `tests/fuzz_replay.rs` (module of tests/main.rs), so every seed and every saved crash input is also a
//! regression test in the ordinary suite.
#![allow(dead_code)] // each fuzz target uses one of these

use std::sync::OnceLock;

use imgedge::origin::Origin;
use imgedge::process::{self, Fonts, Limits, Pipeline, RunContext, Styles};
use imgedge::{purge, App, Config};

/// The HTTP status of a processing error, through the one error map.
fn status_of(e: &process::ProcessError) -> u16 {
    imgedge::Error::from(e.clone()).status().as_u16()
}

/// `x-oss-process` parser: any string parses or gives a 4xx, and a parsed chain's
/// canonical form (the cache key's) parses again to itself.
pub fn oss_process_parser(data: &[u8]) {
    let Ok(value) = std::str::from_utf8(data) else { return };
    let mut styles = Styles::new();
    styles.insert("thumb".into(), "image/resize,w_100/format,webp".into());
    let limits = Limits::default();
    match process::parse(value, &styles, &limits) {
        Ok(pipeline) => {
            let canonical = pipeline.canonical();
            let again = process::parse(&canonical, &styles, &limits)
                .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {}", e.message()));
            assert_eq!(again.canonical(), canonical, "canonical form is not a fixed point");
        }
        Err(e) => {
            let status = status_of(&e);
            assert!((400..500).contains(&status), "parse error must be 4xx, got {status}");
        }
    }
}

fn purge_app() -> &'static App {
    static APP: OnceLock<App> = OnceLock::new();
    APP.get_or_init(|| {
        let origin = Origin::from_spec(env!("CARGO_MANIFEST_DIR")).expect("crate folder as origin");
        App::new(Config::default(), origin)
    })
}

/// Purge and prefetch parsers. Input: a content-type selector byte, the body, and
/// after an optional 0xFF byte the query string. Anything parses or gives a 4xx.
pub fn purge_request(data: &[u8]) {
    let Some((&selector, rest)) = data.split_first() else { return };
    let content_type = match selector % 3 {
        0 => "application/json",
        1 => "application/x-www-form-urlencoded",
        _ => "text/plain",
    };
    let (body, query) = match rest.iter().position(|&b| b == 0xFF) {
        Some(i) => (&rest[..i], std::str::from_utf8(&rest[i + 1..]).ok()),
        None => (rest, None),
    };
    let app = purge_app();
    for result in [
        purge::parse_purge(app, content_type, body, query).map(|_| ()),
        purge::parse_prefetch(content_type, body, query).map(|_| ()),
    ] {
        if let Err(e) = result {
            assert!(e.status().is_client_error(), "purge parse error must be 4xx, got {}", e.status());
        }
    }
}

const CHAINS: &[&str] = &[
    "image/resize,w_64",
    "image/resize,m_fill,w_40,h_30/format,webp/quality,q_80",
    "image/resize,m_lfit,w_50,h_50/format,jpg/quality,Q_70",
    "image/resize,m_pad,w_48,h_48,color_FF0000/format,png",
    "image/crop,x_3,y_2,w_20,h_20,g_se/rotate,90/format,gif",
    "image/auto-orient,1/circle,r_20/format,png",
    "image/indexcrop,x_10,i_1/rounded-corners,r_8/format,webp",
    "image/blur,r_3,s_2/bright,20/contrast,-10/sharpen,100",
    "image/watermark,text_aW1nZWRnZQ,size_12,g_se/format,jpg",
    "image/info",
    "image/average-hue",
    "image/resize,m_mfit,w_30,h_30/format,bmp",
    "image/rotate,45/format,tiff",
];

struct Engine {
    limits: Limits,
    fonts: Fonts,
    chains: Vec<Pipeline>,
}

fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        // Small limits keep each run fast; hitting them is part of what is checked.
        let limits = Limits {
            max_source_bytes: 1 << 20,
            max_source_pixels: 2_000_000,
            max_output_pixels: 1_000_000,
            max_frames: 16,
            max_ops: 32,
            max_filter_cost: 100_000_000,
            webp_method: imgedge::process::DEFAULT_WEBP_METHOD,
        };
        let fonts = Fonts::embedded().expect("embedded fonts");
        let chains =
            CHAINS.iter().map(|c| process::parse(c, &Styles::new(), &limits).expect("fuzz chain parses")).collect();
        Engine { limits, fonts, chains }
    })
}

/// Decode + process: arbitrary bytes as a source image, through a chain picked by the
/// first byte. Every outcome is an image or a 4xx. No deadline: comparing clock readings
/// would feed libFuzzer's compare-tracing values that differ on every run (run.sh's
/// fixed-seed step must explore the same way each time); hangs are libFuzzer's -timeout.
pub fn decode_process(data: &[u8]) {
    let Some((&selector, src)) = data.split_first() else { return };
    let engine = engine();
    let pipeline = &engine.chains[usize::from(selector) % engine.chains.len()];
    let mut ctx = RunContext::new(&engine.limits);
    ctx.fonts = Some(&engine.fonts);
    if let Err(e) = process::run(src, pipeline, &ctx) {
        let status = status_of(&e);
        assert!(status < 500, "bad source gave {status}: {e}");
    }
}
