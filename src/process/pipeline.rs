//! [`Pipeline`]: the parsed chain (pixel ops in URL order plus the encoder settings), its
//! canonical spelling, and the execution loop behind [`crate::process::run`].
//!
//! Execution (spec §1.3): probe + limits → choose the JPEG shrink-on-load factor from the
//! first `resize` → decode → EXIF orientation (before the first op, unless
//! `auto-orient,0`) → ops left to right, checking the deadline between steps → encode in
//! the final format (or JSON for `info` / `average-hue`).

use std::time::Instant;

use image::metadata::Orientation;

use super::codec::{self, EncodeOptions, LoadScale};
use super::decoded::{Decoded, DecodedKey};
use super::ops::format::Format;
use super::ops::quality::{self, Quality};
use super::ops::resize::Plan;
use super::ops::{self, Op};
use super::picture::Picture;
use super::{Output, ProcessError, RunContext};

/// An operation that answers with JSON instead of an image; always last in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Terminal {
    /// `info`
    Info,
    /// `average-hue`
    AverageHue,
}

/// A parsed processing chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    /// Pixel operations in URL order.
    pub(crate) ops: Vec<Op>,
    /// Apply EXIF orientation before the first op (default on, spec §2.3).
    pub(crate) auto_orient: bool,
    /// `format`: last one wins.
    pub(crate) format: Option<Format>,
    /// `quality`: last one wins.
    pub(crate) quality: Option<Quality>,
    /// `interlace`: last one wins.
    pub(crate) interlace: Option<bool>,
    /// `info` / `average-hue`.
    pub(crate) terminal: Option<Terminal>,
    /// Format negotiated from the client's Accept when the chain names none
    /// (auto-format); GIF sources keep GIF so animations survive.
    pub(crate) auto_format: Option<Format>,
}

impl Default for Pipeline {
    fn default() -> Self {
        Pipeline {
            ops: Vec::new(),
            auto_orient: true,
            format: None,
            quality: None,
            interlace: None,
            terminal: None,
            auto_format: None,
        }
    }
}

impl Pipeline {
    /// Canonical spelling, used in the cache key: `image/` + (`auto-orient,0` when
    /// disabled) + the pixel ops in order, each with a fixed key order and explicit
    /// defaults + `format` + `quality` + `interlace` (they apply wherever they appear) +
    /// `info`/`average-hue`. Styles are expanded, so a style and its chain share a key.
    pub fn canonical(&self) -> String {
        let mut parts = vec!["image".to_string()];
        if !self.auto_orient {
            parts.push("auto-orient,0".into());
        }
        parts.extend(self.ops.iter().map(|o| o.to_string()));
        if let Some(f) = self.format {
            parts.push(format!("format,{}", f.as_str()));
        }
        if let Some(q) = self.quality {
            parts.push(q.to_string());
        }
        if let Some(i) = self.interlace {
            parts.push(format!("interlace,{}", u8::from(i)));
        }
        match self.terminal {
            Some(Terminal::Info) => parts.push("info".into()),
            Some(Terminal::AverageHue) => parts.push("average-hue".into()),
            None => {}
        }
        if parts.len() == 1 {
            // A chain that changes nothing (`image/auto-orient,1`) still needs an
            // operation to be a valid chain; found by the parser fuzzer.
            parts.push("auto-orient,1".into());
        }
        parts.join("/")
    }

    /// True when the result is JSON (`info`, `average-hue`).
    pub fn is_json(&self) -> bool {
        self.terminal.is_some()
    }

    /// The Content-Type known before seeing the source: JSON results, or an explicit
    /// `format` other than `gif` (which depends on the source, spec §4.12).
    pub fn output_content_type_hint(&self) -> Option<&'static str> {
        if self.is_json() {
            return Some("application/json");
        }
        match self.format {
            Some(Format::Gif) | None => None,
            Some(f) => Some(f.mime()),
        }
    }

    /// True when auto-format may choose the output: an image result with no `format`.
    pub fn allows_auto_format(&self) -> bool {
        self.format.is_none() && self.terminal.is_none()
    }

    /// The same chain with WebP negotiated as output (for non-GIF sources).
    /// The cache key must carry the negotiated class separately (`canonical` does not).
    pub fn with_auto_webp(&self) -> Pipeline {
        Pipeline { auto_format: Some(Format::Webp), ..self.clone() }
    }

    /// The same chain with AVIF negotiated as output (for non-GIF sources).
    pub fn with_auto_avif(&self) -> Pipeline {
        Pipeline { auto_format: Some(Format::Avif), ..self.clone() }
    }

    /// The watermark object keys the chain needs (normalised, no leading `/`, each once,
    /// in chain order). The caller fetches them from the same origin and passes them in
    /// [`RunContext::overlays`](super::RunContext::overlays).
    pub fn watermark_objects(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for op in &self.ops {
            if let Op::Watermark(w) = op {
                if let Some(k) = w.object_key() {
                    if !keys.iter().any(|x| x == k) {
                        keys.push(k.to_owned());
                    }
                }
            }
        }
        keys
    }

    /// Number of pixel operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// True when there is no pixel operation.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }
}

/// Between steps: the deadline, and whether any client still waits.
fn check_deadline(ctx: &RunContext<'_>) -> Result<(), ProcessError> {
    ctx.check()
}

/// Output format: `format` if given, except that `format,gif` only applies to GIF
/// sources (spec §4.12); otherwise the source format.
pub(crate) fn output_format(p: &Pipeline, src: Format) -> Format {
    match p.format {
        Some(Format::Gif) if src != Format::Gif => src,
        Some(f) => f,
        None => match p.auto_format {
            Some(f) if src != Format::Gif => f,
            _ => src,
        },
    }
}

/// [decision] OSS turns an animated GIF converted to WebP into a still image (spec §2.4);
/// we do the same for compatibility. The animated WebP encoder is used for WebP → WebP.
const GIF_TO_WEBP_ANIMATED: bool = false;

/// Time since `started`, for the trace. Zero under the fuzzer: the branches inside
/// `Duration` arithmetic depend on the clock's nanoseconds, they count as coverage, and they
/// made fixed-seed fuzz runs of the same tree explore differently (tests/fuzz/run.sh).
fn since(started: Instant) -> std::time::Duration {
    if cfg!(fuzzing) {
        std::time::Duration::ZERO
    } else {
        started.elapsed()
    }
}

/// Runs a pipeline (see the module docs for the order of work). Reads like the OSS
/// chain: probe → plan → decode → each op → check the output → colour → encode; each step
/// is one function below, and the deadline is checked between steps.
pub(crate) fn run(src: &[u8], p: &Pipeline, ctx: &RunContext<'_>) -> Result<Output, ProcessError> {
    check_deadline(ctx)?;
    let started = Instant::now();
    let mut trace = super::Trace::default();
    let probe = codec::probe(src, ctx.limits)?;

    // Standalone `info` describes the stored object without decoding pixels.
    if p.terminal == Some(Terminal::Info) && p.ops.is_empty() && p.format.is_none() {
        return Ok(json(ops::info::describe(src, &probe)));
    }

    let plan = plan(p, &probe, ctx.limits)?;
    let (mut pic, first_op) = decode(src, p, &probe, &plan, ctx, &mut trace)?;
    trace.decode = since(started);
    check_deadline(ctx)?;

    for (i, op) in p.ops.iter().enumerate().skip(first_op) {
        check_deadline(ctx)?;
        apply_op(&mut pic, op, i, &plan, ctx)?;
    }
    check_deadline(ctx)?;
    trace.ops = since(started).saturating_sub(trace.decode);
    check_output_pixels(pic.dims(), ctx.limits)?;

    if p.terminal == Some(Terminal::AverageHue) {
        let img = pic.first().ok_or_else(|| ProcessError::internal("empty picture"))?;
        return Ok(json(ops::average_hue::compute(img)?));
    }

    let bytes = encode(&mut pic, p, &probe, plan.out_fmt, ctx.limits.webp_method)?;
    if p.terminal == Some(Terminal::Info) {
        // `info` after other ops describes the processed result (spec §1.3).
        let out_probe = codec::probe(&bytes, &super::Limits { max_source_bytes: u64::MAX, ..ctx.limits.clone() })?;
        return Ok(json(ops::info::describe(&bytes, &out_probe)));
    }
    trace.encode = since(started).saturating_sub(trace.decode + trace.ops);
    Ok(Output { bytes, content_type: plan.out_fmt.mime(), trace })
}

/// What the header decides before any pixel is decoded.
struct RunPlan {
    /// EXIF orientation to apply (1 when `auto-orient,0`).
    orientation: u8,
    /// Source size after orientation.
    oriented: (u32, u32),
    out_fmt: Format,
    /// GIF sources are never enlarged.
    never_enlarge: bool,
    /// Animation survives the chain.
    keep_frames: bool,
    /// The first op's resize plan, computed on the stored (oriented) size.
    first_plan: Option<Plan>,
    /// Shrink-on-load factor.
    scale: LoadScale,
}

/// Output format, animation, shrink-on-load, and every size the chain will produce
/// checked against the limits (crops outside the image too), from the header only.
fn plan(p: &Pipeline, probe: &codec::Probe, limits: &super::Limits) -> Result<RunPlan, ProcessError> {
    let orientation = if p.auto_orient { probe.meta.orientation } else { 1 };
    let (sw, sh) = (probe.meta.width, probe.meta.height);
    let oriented = if orientation >= 5 { (sh, sw) } else { (sw, sh) };
    let out_fmt = output_format(p, probe.format);
    let never_enlarge = probe.format == Format::Gif;
    // Spec §2.4: animation survives resize/crop into the *same* format (GIF → GIF, animated
    // WebP → WebP); converting an animated GIF to another format gives its first frame,
    // as OSS does. Flip GIF_TO_WEBP_ANIMATED to keep GIF → WebP animated instead.
    let same_family =
        out_fmt == probe.format || (GIF_TO_WEBP_ANIMATED && probe.format == Format::Gif && out_fmt == Format::Webp);
    let keep_frames = probe.meta.frames > 1
        && p.terminal != Some(Terminal::AverageHue)
        && matches!(out_fmt, Format::Gif | Format::Webp)
        && same_family
        && p.ops.iter().all(Op::keeps_animation);

    // Shrink-on-load: the first resize decides how much resolution is needed.
    let mut first_plan: Option<Plan> = None;
    let mut scale = LoadScale::FULL;
    if let Some(Op::Resize(r)) = p.ops.first() {
        let plan = r.plan(oriented, never_enlarge, limits)?;
        // JPEG scales in the DCT, a still WebP in libwebp's rescaler, PNG, BMP and TIFF
        // by a box average straight after decoding (see `codec::decode`).
        let scales_on_load = probe.meta.frames <= 1 && probe.format != Format::Gif;
        if scales_on_load {
            scale = LoadScale::for_target(probe, oriented, plan.scaled_dims(oriented));
        }
        first_plan = Some(plan);
    }

    // Every size the chain will produce is known from the header: reject over-limit
    // outputs (and crops outside the image) before decoding a single pixel.
    predict_dims(p, oriented, never_enlarge, limits)?;
    Ok(RunPlan { orientation, oriented, out_fmt, never_enlarge, keep_frames, first_plan, scale })
}

/// Decodes (through the decoded-source cache for still sources) and applies the EXIF
/// orientation. Returns the picture and the index of the first op still to apply: a
/// cached decode runs the first resize straight from the shared pixels (no copy).
fn decode(
    src: &[u8],
    p: &Pipeline,
    probe: &codec::Probe,
    plan: &RunPlan,
    ctx: &RunContext<'_>,
    trace: &mut super::Trace,
) -> Result<(Picture, usize), ProcessError> {
    let decode_oriented = || -> Result<Picture, ProcessError> {
        let decoded = codec::decode(src, probe, plan.scale, plan.keep_frames, ctx.limits);
        crate::memory::note_decode();
        let mut pic = decoded?;
        if plan.orientation != 1 {
            if let Some(o) = Orientation::from_exif(plan.orientation) {
                for f in &mut pic.frames {
                    f.img.apply_orientation(o);
                }
            }
        }
        Ok(pic)
    };
    let Some(cache) = ctx.decoded.filter(|_| !plan.keep_frames && probe.meta.frames <= 1) else {
        trace.shrink = plan.scale.shrink;
        trace.coarse_ac = plan.scale.coarse_ac;
        return Ok((decode_oriented()?, 0));
    };
    let key = DecodedKey::new(src, plan.orientation, plan.scale);
    let shared = match cache.get(&key) {
        Some(hit) => {
            trace.decoded_cache_hit = true;
            hit
        }
        None => {
            cache.make_room(codec::working_bytes(probe, plan.scale.shrink));
            cache.insert(key, Decoded { scale: plan.scale, pic: decode_oriented()? })
        }
    };
    trace.shrink = shared.scale.shrink;
    trace.coarse_ac = shared.scale.coarse_ac;
    Ok(match (p.ops.first(), plan.first_plan, shared.pic.first()) {
        (Some(Op::Resize(r)), Some(first), Some(img)) => (Picture::still(r.apply_plan(img, first, plan.oriented)?), 1),
        _ => (shared.pic.clone(), 0),
    })
}

/// Applies op number `i` of the chain to every frame.
fn apply_op(pic: &mut Picture, op: &Op, i: usize, plan: &RunPlan, ctx: &RunContext<'_>) -> Result<(), ProcessError> {
    let limits = ctx.limits;
    if !op.keeps_animation() {
        pic.make_static();
    }
    let dims = pic.dims();
    if let Op::Watermark(w) = op {
        // One block per op (all frames have the same size), drawn on every frame.
        let block = w.prepare(dims, ctx)?;
        for f in &mut pic.frames {
            w.draw(&mut f.img, &block);
        }
        return Ok(());
    }
    // The first resize uses the plan computed on the stored (oriented) size, which
    // may differ from `dims` after shrink-on-load.
    let (resize, logical) = match (op, i, plan.first_plan) {
        (Op::Resize(_), 0, Some(first)) => (Some(first), plan.oriented),
        (Op::Resize(r), _, _) => (Some(r.plan(dims, plan.never_enlarge, limits)?), dims),
        _ => (None, dims),
    };
    for f in &mut pic.frames {
        // Take the frame out so in-place ops can reuse its buffer (the placeholder is
        // an empty 0×0 image, no allocation).
        let owned = std::mem::replace(&mut f.img, image::DynamicImage::new_rgb8(0, 0));
        let img = &owned;
        f.img = match op {
            Op::Resize(r) => match resize {
                Some(resize) => r.apply_plan(img, resize, logical)?,
                None => return Err(ProcessError::internal("resize without a plan")),
            },
            Op::Crop(c) => c.apply(img)?,
            Op::IndexCrop(c) => c.apply(img)?,
            Op::Circle(c) => c.apply(img)?,
            Op::RoundedCorners(c) => c.apply(img)?,
            Op::Rotate(r) => r.apply(img, limits)?,
            Op::Blur(b) => b.apply(img, ctx)?,
            Op::Bright(b) => b.apply(owned),
            Op::Contrast(c) => c.apply(owned),
            Op::Sharpen(s) => s.apply(img, ctx)?,
            Op::Watermark(_) => return Err(ProcessError::internal("watermark drawn above")),
        };
        // Between frames too: an animated source multiplies every op's cost.
        ctx.check()?;
    }
    Ok(())
}

/// `max_output_pixels` bounds the final image.
fn check_output_pixels((ow, oh): (u32, u32), limits: &super::Limits) -> Result<(), ProcessError> {
    if u64::from(ow) * u64::from(oh) > limits.max_output_pixels {
        return Err(ProcessError::too_large(
            format!("The result image {ow}x{oh} exceeds the output limit."),
            Some("0040-00000007"),
        ));
    }
    Ok(())
}

/// Colour (convert to sRGB where we can; otherwise carry an RGB profile, never drop it
/// silently, see colour.rs), then the encoder with the chain's quality and interlace.
fn encode(
    pic: &mut Picture,
    p: &Pipeline,
    probe: &codec::Probe,
    out_fmt: Format,
    webp_method: u8,
) -> Result<Vec<u8>, ProcessError> {
    let mut icc = None;
    if let Some(profile) = &probe.meta.icc {
        if super::colour::to_srgb(pic, profile)? == super::colour::Converted::Carry && codec::is_rgb_icc(profile) {
            icc = Some(profile.clone());
        }
    }
    let src_q = if probe.format == Format::Jpg { probe.meta.jpeg_quality } else { None };
    let opts = EncodeOptions {
        // AVIF, like WebP, starts from its own default rather than inheriting a JPEG
        // source's (often 90+) quality (issue 20 item 5); `codec::avif_quality` maps it.
        quality: quality::effective(p.quality, src_q, matches!(out_fmt, Format::Webp | Format::Avif)),
        progressive: p.interlace.unwrap_or(false),
        icc,
        webp_method,
    };
    check_format_dims(out_fmt, pic.dims())?;
    let mut bytes = codec::encode(pic, out_fmt, &opts)?;
    // Encoders grow their buffers by doubling; the cache weighs `len`, so hand back
    // exactly that much memory.
    bytes.shrink_to_fit();
    Ok(bytes)
}

/// Largest side each output format can store (WebP's VP8 limit is 16383 px; JPEG and
/// GIF store sizes in 16 bits). Found by fuzzing: a 16×16396 GIF canvas reached libwebp.
fn check_format_dims(fmt: Format, (w, h): (u32, u32)) -> Result<(), ProcessError> {
    let max = match fmt {
        Format::Webp => 16_383,
        Format::Jpg | Format::Gif => 65_535,
        _ => return Ok(()),
    };
    if w > max || h > max {
        return Err(ProcessError::too_large(
            format!("The result image {w}x{h} exceeds the {max} px side limit of {}.", fmt.as_str()),
            Some("0040-00000007"),
        ));
    }
    Ok(())
}

/// Walks the chain on sizes only (the same formulas the ops use) and checks the limits:
/// resize/rotate output limits, rotate's 4096 px source limit, crop start inside the
/// image, and `max_output_pixels` for the final size.
pub(crate) fn predict_dims(
    p: &Pipeline,
    oriented: (u32, u32),
    never_enlarge: bool,
    limits: &super::Limits,
) -> Result<(u32, u32), ProcessError> {
    let mut d = oriented;
    for op in &p.ops {
        d = match op {
            Op::Resize(r) => r.plan(d, never_enlarge, limits)?.out_dims(d),
            Op::Crop(c) => {
                let (_, _, w, h) = c.rect(d)?;
                (w, h)
            }
            Op::IndexCrop(c) => c.rect(d)?.map(|(_, _, w, h)| (w, h)).unwrap_or(d),
            Op::Circle(c) => {
                let (_, _, side, _) = c.geometry(d);
                (side, side)
            }
            Op::Blur(b) => {
                check_filter_cost(d, b.taps(), limits)?;
                d
            }
            Op::Rotate(r) if r.deg % 360 != 0 => {
                if d.0 > 4096 || d.1 > 4096 {
                    return Err(ProcessError::too_large(
                        "The image to rotate must not exceed 4096 pixels per side.",
                        Some("0040-00000006"),
                    ));
                }
                let (w, h) = ops::rotate::rotated_dims(d.0, d.1, r.deg);
                ops::check_output(w, h, limits)?;
                (w as u32, h as u32)
            }
            _ => d,
        };
    }
    if u64::from(d.0) * u64::from(d.1) > limits.max_output_pixels {
        return Err(ProcessError::too_large(
            format!("The result image {}x{} exceeds the output limit.", d.0, d.1),
            Some("0040-00000007"),
        ));
    }
    Ok(d)
}

/// The cost budget of a convolution (`limits.max_filter_cost`, pixels × taps), answered
/// like OSS answers its own size limits: 400 `ImageTooLarge`, before any pixel is decoded.
fn check_filter_cost((w, h): (u32, u32), taps: u64, limits: &super::Limits) -> Result<(), ProcessError> {
    let cost = u64::from(w).saturating_mul(u64::from(h)).saturating_mul(taps);
    if cost > limits.max_filter_cost {
        return Err(ProcessError::too_large(
            format!("The blur radius is too large for a {w}x{h} image; use a smaller radius or resize first."),
            None,
        ));
    }
    Ok(())
}

fn json(bytes: Vec<u8>) -> Output {
    Output { bytes, content_type: "application/json", trace: super::Trace::default() }
}
