//! What one run will cost in memory, known from the headers before any pixel exists.
//!
//! The caller charges this figure against the process-wide decode budget
//! (`limits.decode_memory`) before the job enters the worker queue, so a tiny file that
//! declares a huge canvas (a 62-byte GIF at 15 800², a 16-bit PNG that inflates to 1.5 GB)
//! is refused or waits instead of allocating. The plan below repeats the decisions of
//! [`super::pipeline::run`] that size the decode (shrink-on-load from the first resize,
//! whether animation frames are kept); it is an upper estimate, not an exact count.

use super::codec::{self, LoadScale};
use super::ops::format::Format;
use super::ops::Op;
use super::pipeline::{self, Pipeline, Terminal};
use super::{Limits, Overlays, ProcessError};

/// Peak working memory of `run(src, p, ..)`, in bytes: the decode (all frames kept), one
/// more frame for the op in progress, the encoder's buffers, and the decodes of the
/// watermark objects.
///
/// # Errors
/// The errors `run` would give from the header alone (unknown format, source or output
/// limits), so a bomb is refused before it is queued.
pub(crate) fn run_bytes(
    src: &[u8],
    p: &Pipeline,
    overlays: Option<&Overlays>,
    limits: &Limits,
) -> Result<u64, ProcessError> {
    let probe = codec::probe(src, limits)?;
    // Standalone `info` reads the header only.
    if p.terminal == Some(Terminal::Info) && p.ops.is_empty() && p.format.is_none() {
        return Ok(0);
    }
    let orientation = if p.auto_orient { probe.meta.orientation } else { 1 };
    let (sw, sh) = (probe.meta.width, probe.meta.height);
    let oriented = if orientation >= 5 { (sh, sw) } else { (sw, sh) };
    let out_fmt = pipeline::output_format(p, probe.format);
    let never_enlarge = probe.format == Format::Gif;
    let keep_frames = probe.meta.frames > 1
        && p.terminal != Some(Terminal::AverageHue)
        && matches!(out_fmt, Format::Gif | Format::Webp)
        && p.ops.iter().all(Op::keeps_animation);
    let mut scale = LoadScale::FULL;
    if let Some(Op::Resize(r)) = p.ops.first() {
        if probe.meta.frames <= 1 && probe.format != Format::Gif {
            let plan = r.plan(oriented, never_enlarge, limits)?;
            scale = LoadScale::for_target(&probe, oriented, plan.scaled_dims(oriented));
        }
    }
    let (fw, fh) = pipeline::predict_dims(p, oriented, never_enlarge, limits)?;
    let decode = codec::decode_bytes(&probe, scale.shrink, keep_frames);

    let kept = if keep_frames { u64::from(probe.meta.frames.max(1)) } else { 1 };
    let d = u64::from(scale.shrink.max(1));
    let decoded_px = u64::from(sw).div_ceil(d) * u64::from(sh).div_ceil(d);
    let final_px = u64::from(fw) * u64::from(fh);
    // An op builds its output beside its input; intermediates are bounded by the
    // output limit, the final size by `predict_dims`.
    let op_frame = final_px.max(decoded_px.min(limits.max_output_pixels)).saturating_mul(4);
    let ops = if p.ops.is_empty() { 0 } else { op_frame.saturating_mul(kept) };
    // Encoders convert to their own layout and grow an output buffer.
    let encode = final_px.saturating_mul(4).saturating_mul(kept);
    let marks: u64 = overlays
        .into_iter()
        .flat_map(|o| o.values())
        .filter_map(|bytes| codec::probe(bytes, limits).ok())
        .map(|probe| codec::decode_bytes(&probe, 1, false))
        .fold(0, u64::saturating_add);
    Ok(decode.saturating_add(ops).saturating_add(encode).saturating_add(marks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::Styles;

    const MB: u64 = 1 << 20;

    fn chain(s: &str) -> Pipeline {
        super::super::parse(s, &Styles::new(), &Limits::default()).unwrap()
    }

    fn png(w: u32, h: u32, colour: u8, depth: u8) -> Vec<u8> {
        // Header only: the cost is known from IHDR, before any IDAT is read.
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[depth, colour, 0, 0, 0]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(&b"IHDR"[..], &ihdr[..]), (b"IDAT", &[0x78, 0x9c, 3, 0, 0, 0, 0, 1]), (b"IEND", &[])] {
            out.extend_from_slice(&(data.len() as u32).to_be_bytes());
            let mut crc_input = kind.to_vec();
            crc_input.extend_from_slice(data);
            out.extend_from_slice(&crc_input);
            out.extend_from_slice(&crc32(&crc_input).to_be_bytes());
        }
        out
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for &b in data {
            crc ^= u32::from(b);
            for _ in 0..8 {
                crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
            }
        }
        !crc
    }

    #[test]
    fn a_16_bit_png_bomb_costs_its_full_depth_decode() {
        // 15 800² RGB16: 1.5 GB at 6 bytes a pixel, plus its 8-bit copy.
        let src = png(15_800, 15_800, 2, 16);
        let cost = run_bytes(&src, &chain("image/resize,w_100"), None, &Limits::default()).unwrap();
        assert!(cost > 2_000 * MB, "{cost}");
    }

    #[test]
    fn a_small_still_costs_little_and_info_costs_nothing() {
        let src = png(640, 480, 6, 8);
        let cost = run_bytes(&src, &chain("image/resize,w_100"), None, &Limits::default()).unwrap();
        assert!(cost < 4 * MB, "{cost}");
        assert_eq!(run_bytes(&src, &chain("image/info"), None, &Limits::default()).unwrap(), 0);
    }

    #[test]
    fn a_one_frame_animated_webp_costs_its_whole_canvas() {
        // The image decoder composes onto the full canvas: no shrink-on-load applies.
        let probe = |animated| codec::Probe {
            format: Format::Webp,
            meta: codec::Meta { width: 15_800, height: 15_800, frames: 1, animated, ..codec::Meta::default() },
        };
        assert!(codec::decode_bytes(&probe(true), 8, false) > 3_000 * MB);
        assert!(codec::decode_bytes(&probe(false), 8, false) < 20 * MB, "a lossy still scales in libwebp");
        let mut lossless = probe(false);
        lossless.meta.lossless = true;
        assert!(codec::decode_bytes(&lossless, 8, false) > 900 * MB, "VP8L decodes at full size");
    }

    #[test]
    fn an_animation_costs_every_kept_frame() {
        let gif = |frames: usize| {
            let mut g = b"GIF89a\x64\x00\x64\x00\x00\x00\x00".to_vec(); // 100x100, no palette
            for _ in 0..frames {
                g.extend_from_slice(b"\x2c\x00\x00\x00\x00\x64\x00\x64\x00\x00\x02\x02\x44\x01\x00");
            }
            g.push(0x3b);
            g
        };
        let one = run_bytes(&gif(1), &chain("image/resize,w_50"), None, &Limits::default()).unwrap();
        let many = run_bytes(&gif(50), &chain("image/resize,w_50"), None, &Limits::default()).unwrap();
        assert!(many >= one + 49 * 100 * 100 * 4, "{one} {many}");
    }
}
