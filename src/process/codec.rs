//! Sniffing, probing, decoding and encoding.
//!
//! Order of work for a source (spec §2): [`probe`] sniffs the format from magic bytes
//! (never from the key or Content-Type), reads only the header and metadata, and checks
//! every limit (bytes, per-side 30 000 px, pixels, frames) **before** a pixel buffer is
//! allocated. [`decode`] then produces a [`Picture`]:
//! - JPEG goes through libjpeg-turbo (`turbojpeg`) with DCT shrink-on-load (1/2, 1/4,
//!   1/8) chosen by the caller from the final target size; CMYK/YCCK (Adobe-inverted)
//!   JPEGs are decoded to CMYK and converted to RGB here, greyscale is expanded to RGB.
//! - PNG, GIF, WebP, BMP and TIFF use the `image` crate with its allocation limits set;
//!   16-bit, grey and palette images are normalised to 8-bit RGB/RGBA.
//! - Animated GIF and WebP keep all frames (composited, with delays) when asked to.
//!
//! Colour management: embedded profiles are read here and converted to sRGB in
//! `colour.rs`. When a profile cannot be converted, the encoders here carry an RGB
//! profile into JPEG (APP2), PNG (iCCP), WebP (ICCP) and TIFF outputs so colours keep
//! their meaning; BMP and GIF cannot carry a profile.

use std::io::Cursor;

use image::codecs::{bmp, gif, png, tiff, webp as iwebp};
use image::{AnimationDecoder, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder};

use super::ops::format::Format;
use super::picture::{self, Frame, Picture};
use super::{Limits, ProcessError};

/// OSS limit on either side of a source (spec §2.2).
pub(crate) const MAX_SOURCE_SIDE: u32 = 30_000;

/// Detects the format from magic bytes.
pub(crate) fn sniff(src: &[u8]) -> Option<Format> {
    match src {
        [0xFF, 0xD8, 0xFF, ..] => Some(Format::Jpg),
        [0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A, ..] => Some(Format::Png),
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => Some(Format::Gif),
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => Some(Format::Webp),
        [b'B', b'M', ..] if src.len() > 26 => Some(Format::Bmp),
        [b'I', b'I', 42, 0, ..] | [b'M', b'M', 0, 42, ..] => Some(Format::Tiff),
        _ => None,
    }
}

/// What the header and metadata say, before any pixel is decoded.
#[derive(Debug, Clone, Default)]
pub(crate) struct Meta {
    /// Stored width.
    pub width: u32,
    /// Stored height.
    pub height: u32,
    /// Number of frames (1 for stills).
    pub frames: u32,
    /// EXIF orientation 1–8 (1 when absent or invalid).
    pub orientation: u8,
    /// Embedded ICC profile.
    pub icc: Option<Vec<u8>>,
    /// EXIF as TIFF bytes (`II*\0…` / `MM\0*…`), without the `Exif\0\0` prefix.
    pub exif: Option<Vec<u8>>,
    /// JFIF density: (units, x, y).
    pub jfif_density: Option<(u8, u16, u16)>,
    /// Estimated JPEG quality (from the luminance quantisation table).
    pub jpeg_quality: Option<u8>,
    /// JPEG with an Adobe APP14 marker (CMYK values stored inverted).
    pub adobe: bool,
    /// Progressive JPEG (SOF2/6/10/14): libjpeg buffers every coefficient of the image.
    pub progressive: bool,
    /// Animation loop count (GIF NETSCAPE2.0 extension, WebP ANIM chunk), 0 = forever.
    pub loop_count: Option<u16>,
    /// Bytes per pixel of the decoder's own output, before normalising to 8-bit
    /// (6 for 16-bit RGB, 8 for 16-bit RGBA); 0 when unknown. Sizes the decode's
    /// working memory (`cost.rs`).
    pub bytes_per_pixel: u8,
    /// An animated WebP (VP8X animation flag), even with a single frame: it is decoded
    /// onto a full canvas by the `image` decoder, never scaled on load.
    pub animated: bool,
    /// A still lossless WebP (VP8L): libwebp decodes it into a full-size ARGB buffer
    /// even when scaling on load (lossless references may point anywhere above).
    pub lossless: bool,
}

/// A probed source: its format and metadata.
#[derive(Debug, Clone)]
pub(crate) struct Probe {
    /// Sniffed format.
    pub format: Format,
    /// Header facts.
    pub meta: Meta,
}

fn unsupported() -> ProcessError {
    ProcessError::bad_request("The source is not a supported image format.", Some("0040-00000005"))
}

fn corrupt(detail: impl std::fmt::Display) -> ProcessError {
    ProcessError::undecodable(detail.to_string())
}

/// Maps an `image` crate error: limit errors are 400 ImageTooLarge, the rest 400 BadRequest.
fn image_err(e: image::ImageError) -> ProcessError {
    match e {
        image::ImageError::Limits(_) => {
            ProcessError::too_large("The source image exceeds the pixel limit.", Some("0040-00000012"))
        }
        image::ImageError::Unsupported(_) => unsupported(),
        other => corrupt(other),
    }
}

/// Reads the header and checks the source limits (spec §2.2).
///
/// # Errors
/// 400 `ImageTooLarge` for limit violations, 400 `BadRequest` for unknown or broken data.
pub(crate) fn probe(src: &[u8], limits: &Limits) -> Result<Probe, ProcessError> {
    guard_decoder(|| probe_unguarded(src, limits))
}

/// A decoder that panics on hostile input (png 0.18.1 on a 25-byte `PLTE`, issue 15
/// item 16b) is a bug in the decoder, not in the request: the source cannot be decoded,
/// which is a 4xx. The worker pool would catch the panic too, but as a 500; catching it
/// here keeps the status honest and the panic text in the log detail only.
pub(crate) fn guard_decoder<T>(f: impl FnOnce() -> Result<T, ProcessError>) -> Result<T, ProcessError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        Err(ProcessError::undecodable(format!("{}: {why}", super::DECODER_PANIC)))
    })
}

fn probe_unguarded(src: &[u8], limits: &Limits) -> Result<Probe, ProcessError> {
    if src.len() as u64 > limits.max_source_bytes {
        return Err(ProcessError::too_large(
            format!("The source object exceeds {} bytes.", limits.max_source_bytes),
            None,
        ));
    }
    let format = sniff(src).ok_or_else(unsupported)?;
    if format == Format::Png {
        check_png_palette(src)?;
    }
    let mut meta = match format {
        Format::Jpg => probe_jpeg(src)?,
        _ => probe_other(src, format)?,
    };
    if meta.orientation == 0 || meta.orientation > 8 {
        meta.orientation = 1;
    }
    check_source(&meta, format, limits)?;
    Ok(Probe { format, meta })
}

/// Refuses a `PLTE` chunk that is not 1 to 256 RGB triples before any decoder sees it:
/// png 0.18.1 panics expanding such a palette (issue 15 item 16b). [`guard_decoder`]
/// catches that panic in the server, but a fuzzing build aborts on any panic, and a
/// refusal here is cheaper than an unwind. Walks chunk headers up to the first `IDAT`
/// (the palette must come before it); a truncated walk is left to the decoder.
fn check_png_palette(src: &[u8]) -> Result<(), ProcessError> {
    let mut at = 8; // the signature
    while let Some(header) = src.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        match &header[4..8] {
            b"PLTE" if len == 0 || len % 3 != 0 || len > 256 * 3 => {
                return Err(corrupt(format!("PLTE chunk of {len} bytes is not 1 to 256 RGB entries")))
            }
            b"IDAT" | b"IEND" => return Ok(()),
            _ => {}
        }
        at = at.saturating_add(12).saturating_add(len); // length, type, data, CRC
    }
    Ok(())
}

fn check_source(meta: &Meta, format: Format, limits: &Limits) -> Result<(), ProcessError> {
    if meta.width == 0 || meta.height == 0 {
        return Err(corrupt("zero-sized image"));
    }
    if meta.width > MAX_SOURCE_SIDE || meta.height > MAX_SOURCE_SIDE {
        let ec = if format == Format::Bmp { "0040-00000017" } else { "0040-00000009" };
        return Err(ProcessError::too_large(
            format!("The source image {}x{} exceeds 30000 pixels per side.", meta.width, meta.height),
            Some(ec),
        ));
    }
    if meta.frames > limits.max_frames {
        return Err(ProcessError::too_large(
            format!("The source image has more than {} frames.", limits.max_frames),
            Some("0040-00000012"),
        ));
    }
    let px = u64::from(meta.width) * u64::from(meta.height) * u64::from(meta.frames.max(1));
    if px > limits.max_source_pixels {
        return Err(ProcessError::too_large(
            format!("The source image exceeds {} pixels.", limits.max_source_pixels),
            Some("0040-00000012"),
        ));
    }
    Ok(())
}

// ---------------------------------------------------------------- JPEG metadata

/// libjpeg's standard luminance quantisation table (natural order; only its sum is used).
const STD_LUMA: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
    87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
];

/// Estimates the IJG quality that produced a luminance table, by comparing table sums with
/// the libjpeg scaling of the standard table (the ImageMagick approach, simplified).
pub(crate) fn estimate_quality(table_sum: u32) -> u8 {
    let mut best = (u32::MAX, 75u8);
    for q in 1..=100u32 {
        let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
        let sum: u32 = STD_LUMA.iter().map(|&v| ((v * scale + 50) / 100).clamp(1, 255)).sum();
        let d = sum.abs_diff(table_sum);
        if d <= best.0 {
            best = (d, q as u8);
        }
    }
    best.1
}

/// Walks JPEG marker segments up to the first scan, collecting metadata.
fn probe_jpeg(src: &[u8]) -> Result<Meta, ProcessError> {
    let header = tj::Decoder::new()?.header(src)?;
    let bytes_per_pixel = if header.cmyk { 4 } else { 3 };
    let mut meta = Meta { width: header.width, height: header.height, frames: 1, bytes_per_pixel, ..Meta::default() };
    let mut icc_chunks: Vec<(u8, Vec<u8>)> = Vec::new();
    let mut i = 2usize;
    while i + 4 <= src.len() {
        if src[i] != 0xFF {
            break;
        }
        let marker = src[i + 1];
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        if marker == 0xD8 || (0xD0..=0xD7).contains(&marker) || marker == 0x01 {
            i += 2;
            continue;
        }
        if marker == 0xDA || marker == 0xD9 {
            break;
        }
        let len = usize::from(u16::from_be_bytes([src[i + 2], src[i + 3]]));
        let end = i + 2 + len;
        if len < 2 || end > src.len() {
            break;
        }
        let payload = &src[i + 4..end];
        match marker {
            0xE0 if payload.starts_with(b"JFIF\0") && payload.len() >= 12 => {
                let d = &payload[5..];
                meta.jfif_density = Some((d[2], u16::from_be_bytes([d[3], d[4]]), u16::from_be_bytes([d[5], d[6]])));
            }
            0xE1 if payload.starts_with(b"Exif\0\0") && meta.exif.is_none() => {
                meta.exif = Some(payload[6..].to_vec());
            }
            0xE2 if payload.starts_with(b"ICC_PROFILE\0") && payload.len() > 14 => {
                icc_chunks.push((payload[12], payload[14..].to_vec()));
            }
            0xEE if payload.starts_with(b"Adobe") => meta.adobe = true,
            0xC2 | 0xC6 | 0xCA | 0xCE => meta.progressive = true,
            0xDB => {
                // One or more tables: Pq|Tq, then 64 entries of 1 or 2 bytes.
                let mut p = 0usize;
                while p < payload.len() {
                    let pq = payload[p] >> 4;
                    let tq = payload[p] & 0x0F;
                    let n = if pq == 0 { 64 } else { 128 };
                    let Some(t) = payload.get(p + 1..p + 1 + n) else { break };
                    if tq == 0 && meta.jpeg_quality.is_none() {
                        let sum: u32 = if pq == 0 {
                            t.iter().map(|&v| u32::from(v)).sum()
                        } else {
                            t.chunks_exact(2).map(|c| u32::from(u16::from_be_bytes([c[0], c[1]]))).sum()
                        };
                        meta.jpeg_quality = Some(estimate_quality(sum));
                    }
                    p += 1 + n;
                }
            }
            _ => {}
        }
        i = end;
    }
    if !icc_chunks.is_empty() {
        icc_chunks.sort_by_key(|c| c.0);
        meta.icc = Some(icc_chunks.into_iter().flat_map(|c| c.1).collect());
    }
    meta.orientation = orientation_from_exif(meta.exif.as_deref());
    Ok(meta)
}

fn orientation_from_exif(exif: Option<&[u8]>) -> u8 {
    exif.and_then(image::metadata::Orientation::from_exif_chunk).map(|o| o.to_exif()).unwrap_or(1)
}

// ---------------------------------------------------------------- other formats

fn image_limits(limits: &Limits) -> image::Limits {
    let mut l = image::Limits::default();
    l.max_image_width = Some(MAX_SOURCE_SIDE);
    l.max_image_height = Some(MAX_SOURCE_SIDE);
    // Room for a 16-bit RGBA decode of the largest allowed image, capped at 4 GiB.
    l.max_alloc = Some(limits.max_source_pixels.saturating_mul(8).min(4 << 30));
    l
}

/// Counts GIF frames by walking the block structure (no LZW decoding).
pub(crate) fn gif_frame_count(src: &[u8]) -> u32 {
    let mut i = 13usize;
    if src.len() < 13 {
        return 0;
    }
    if src[10] & 0x80 != 0 {
        i += 3 << ((src[10] & 7) + 1);
    }
    let skip_blocks = |mut i: usize| -> Option<usize> {
        loop {
            let n = usize::from(*src.get(i)?);
            i += 1;
            if n == 0 {
                return Some(i);
            }
            i += n;
        }
    };
    let mut count = 0;
    while let Some(&b) = src.get(i) {
        match b {
            0x2C => {
                count += 1;
                let Some(&packed) = src.get(i + 9) else { break };
                i += 10;
                if packed & 0x80 != 0 {
                    i += 3 << ((packed & 7) + 1);
                }
                i += 1; // LZW minimum code size
                match skip_blocks(i) {
                    Some(n) => i = n,
                    None => break,
                }
            }
            0x21 => match skip_blocks(i + 2) {
                Some(n) => i = n,
                None => break,
            },
            _ => break,
        }
    }
    count
}

/// Loop count of the NETSCAPE2.0 application extension, if any.
pub(crate) fn gif_loop_count(src: &[u8]) -> Option<u16> {
    let pos = src.windows(11).position(|w| w == b"NETSCAPE2.0")?;
    let b = src.get(pos + 11..pos + 15)?;
    (b[0] == 3 && b[1] == 1).then(|| u16::from_le_bytes([b[2], b[3]]))
}

/// Loop count of a WebP `ANIM` chunk, if any.
pub(crate) fn webp_loop_count(src: &[u8]) -> Option<u16> {
    let mut i = 12usize;
    while i + 8 <= src.len() {
        let len = u32::from_le_bytes([src[i + 4], src[i + 5], src[i + 6], src[i + 7]]) as usize;
        if &src[i..i + 4] == b"ANIM" {
            let b = src.get(i + 12..i + 14)?;
            return Some(u16::from_le_bytes([b[0], b[1]]));
        }
        i = i.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    None
}

/// The VP8X header's animation flag.
pub(crate) fn webp_is_animated(src: &[u8]) -> bool {
    src.get(12..16) == Some(&b"VP8X"[..]) && src.get(20).is_some_and(|flags| flags & 0x02 != 0)
}

/// A top-level chunk of a WebP file (not those inside animation frames).
pub(crate) fn webp_has_chunk(src: &[u8], id: &[u8; 4]) -> bool {
    let mut i = 12usize;
    while i + 8 <= src.len() {
        if &src[i..i + 4] == id {
            return true;
        }
        let len = u32::from_le_bytes([src[i + 4], src[i + 5], src[i + 6], src[i + 7]]) as usize;
        i = i.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    false
}

/// Counts `ANMF` chunks of an animated WebP (1 for stills).
pub(crate) fn webp_frame_count(src: &[u8]) -> u32 {
    let mut i = 12usize;
    let mut n = 0;
    while i + 8 <= src.len() {
        let id = &src[i..i + 4];
        let len = u32::from_le_bytes([src[i + 4], src[i + 5], src[i + 6], src[i + 7]]) as usize;
        if id == b"ANMF" {
            n += 1;
        }
        i = i.saturating_add(8).saturating_add(len).saturating_add(len & 1);
    }
    n.max(1)
}

fn probe_other(src: &[u8], format: Format) -> Result<Meta, ProcessError> {
    let mut meta = Meta { frames: 1, ..Meta::default() };
    let cur = Cursor::new(src);
    macro_rules! fill {
        ($dec:expr) => {{
            let mut d = $dec.map_err(image_err)?;
            let (w, h) = d.dimensions();
            meta.width = w;
            meta.height = h;
            meta.bytes_per_pixel = d.color_type().bytes_per_pixel();
            meta.icc = d.icc_profile().ok().flatten();
            meta.exif = d.exif_metadata().ok().flatten();
        }};
    }
    match format {
        Format::Png => fill!(png::PngDecoder::new(cur)),
        Format::Gif => {
            fill!(gif::GifDecoder::new(cur));
            meta.frames = gif_frame_count(src).max(1);
            meta.loop_count = gif_loop_count(src);
        }
        Format::Webp => {
            fill!(iwebp::WebPDecoder::new(cur));
            meta.frames = webp_frame_count(src);
            meta.loop_count = webp_loop_count(src);
            meta.animated = webp_is_animated(src);
            meta.lossless = webp_has_chunk(src, b"VP8L");
        }
        Format::Bmp => fill!(bmp::BmpDecoder::new(cur)),
        Format::Tiff => fill!(tiff::TiffDecoder::new(cur)),
        Format::Jpg | Format::Avif => return Err(unsupported()),
    }
    // WebP EXIF chunks may keep the "Exif\0\0" prefix.
    if let Some(e) = &meta.exif {
        if e.starts_with(b"Exif\0\0") {
            meta.exif = Some(e[6..].to_vec());
        }
    }
    if format == Format::Tiff && meta.exif.is_none() {
        // A TIFF file is its own EXIF-style IFD structure.
        meta.exif = Some(src.to_vec());
    }
    meta.orientation = orientation_from_exif(meta.exif.as_deref());
    Ok(meta)
}

// ---------------------------------------------------------------- decode

/// Estimated peak working memory of decoding a still `probe` at `shrink` (see
/// [`decode_bytes`]); the decoded-source cache makes room for this much, and the decode
/// budget charges the same figure.
pub(crate) fn working_bytes(probe: &Probe, shrink: u32) -> u64 {
    decode_bytes(probe, shrink, false)
}

/// Estimated peak working memory of [`decode`], from the header alone: what each decoder
/// allocates at once.
/// - JPEG: the output at the DCT scale (CMYK plus its RGB conversion), plus the
///   whole-image coefficient buffer of a progressive JPEG (2 bytes per coefficient;
///   1.5 planes at 4:2:0, 3 with 4 components taken as the worst case).
/// - PNG, BMP, TIFF: the full-size frame at the decoder's own depth (16-bit RGBA is 8
///   bytes a pixel), its 8-bit copy when it needs normalising, and the box-shrunk copy.
/// - Still WebP (libwebp): the RGBA output at its scale, plus a full-size ARGB buffer
///   for a lossless one.
/// - GIF and animated WebP: the `image` decoders keep an RGBA canvas and build each
///   frame at canvas size; every frame kept (`all_frames`) holds one more canvas.
///
/// Plus a rotated copy when the EXIF orientation swaps the axes.
pub(crate) fn decode_bytes(probe: &Probe, shrink: u32, all_frames: bool) -> u64 {
    let (w, h) = (u64::from(probe.meta.width), u64::from(probe.meta.height));
    let d = u64::from(shrink.max(1));
    let px = w.saturating_mul(h);
    let out_px = w.div_ceil(d).saturating_mul(h.div_ceil(d));
    let bpp = match probe.meta.bytes_per_pixel {
        0 => 8,
        n => u64::from(n),
    };
    let frames = u64::from(probe.meta.frames.max(1));
    let animated = probe.format == Format::Gif || (probe.format == Format::Webp && (frames > 1 || probe.meta.animated));
    let decode = match probe.format {
        Format::Jpg => {
            let cmyk = if bpp == 4 { out_px * 3 } else { 0 };
            let coefficients = if probe.meta.progressive { px.saturating_mul(3) } else { 0 };
            out_px.saturating_mul(bpp) + cmyk + coefficients
        }
        Format::Png | Format::Bmp | Format::Tiff => {
            let normalised = if matches!(bpp, 3 | 4) { 0 } else { px.saturating_mul(4) };
            let shrunk = if d > 1 { out_px.saturating_mul(4) } else { 0 };
            px.saturating_mul(bpp) + normalised + shrunk
        }
        Format::Webp if !animated => {
            let argb = if probe.meta.lossless { px.saturating_mul(4) } else { 0 };
            out_px.saturating_mul(4) + argb
        }
        _ => {
            let kept = if all_frames { frames } else { 1 };
            // canvas + frame under construction + its normalised copy + frames kept
            px.saturating_mul(4).saturating_mul(3 + kept)
        }
    };
    let rotated = if probe.meta.orientation >= 5 && !animated { out_px.saturating_mul(4) } else { 0 };
    decode.saturating_add(rotated)
}

/// Picks the shrink-on-load denominator (1, 2, 4, 8; see [`decode`] for how each format
/// applies it): the largest 1/2ⁿ that keeps the decoded image at least twice the target
/// on both axes (libvips' rule; ≥ 50 dB from a full decode in our measurements).
pub(crate) fn shrink_factor(src: (u32, u32), target: (u32, u32)) -> u32 {
    let mut best = 1;
    for d in [2u32, 4, 8] {
        let (w, h) = (src.0.div_ceil(d), src.1.div_ceil(d));
        if u64::from(w) >= 2 * u64::from(target.0) && u64::from(h) >= 2 * u64::from(target.1) {
            best = d;
        }
    }
    best
}

/// How far below the source an output must be, on both axes, before a progressive
/// JPEG's final AC refinement scans are skipped (see [`super::jpeg_scans`]). Measured on
/// the corpus' two progressive photos, lossless PNG output against a colour-managed
/// Lanczos reference: at 7.7× and 13× DSSIM moves by +0.00001..0.00002 and SSIMULACRA2
/// stays above 95; q80 JPEG output is unchanged within ±0.00002; at 4× SSIMULACRA2 would
/// drop 96.6 → 93.1, hence the threshold. The decode itself takes about 45 % less time.
pub(crate) const COARSE_AC_MIN_REDUCTION: u64 = 6;

/// How much of the source a decode must keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct LoadScale {
    /// Shrink-on-load denominator ([`shrink_factor`]).
    pub shrink: u32,
    /// A progressive JPEG may skip its AC least-significant-bit refinement scans.
    pub coarse_ac: bool,
}

impl LoadScale {
    /// Every pixel at full precision.
    pub(crate) const FULL: LoadScale = LoadScale { shrink: 1, coarse_ac: false };

    /// The cheapest decode of `probe` (stored size `oriented`) that still serves an
    /// output of `target`.
    pub(crate) fn for_target(probe: &Probe, oriented: (u32, u32), target: (u32, u32)) -> LoadScale {
        let far_below = |src: u32, out: u32| u64::from(src) >= COARSE_AC_MIN_REDUCTION * u64::from(out.max(1));
        LoadScale {
            shrink: shrink_factor(oriented, target),
            coarse_ac: probe.format == Format::Jpg
                && probe.meta.progressive
                && far_below(oriented.0, target.0)
                && far_below(oriented.1, target.1),
        }
    }
}

/// Decodes a probed source.
///
/// `scale.shrink` is the shrink-on-load denominator: DCT scaling for JPEG, libwebp's
/// rescaler for a still WebP, a box average after decoding for PNG, BMP and TIFF (ignored
/// for GIF and animations); `scale.coarse_ac` lets a progressive JPEG skip its AC
/// refinement scans. With
/// `all_frames` false only the first frame of an animation is decoded.
///
/// # Errors
/// 400 `BadRequest` for corrupt data, 400 `ImageTooLarge` for limits hit while decoding.
pub(crate) fn decode(
    src: &[u8],
    probe: &Probe,
    scale: LoadScale,
    all_frames: bool,
    limits: &Limits,
) -> Result<Picture, ProcessError> {
    guard_decoder(|| decode_unguarded(src, probe, scale, all_frames, limits))
}

fn decode_unguarded(
    src: &[u8],
    probe: &Probe,
    scale: LoadScale,
    all_frames: bool,
    limits: &Limits,
) -> Result<Picture, ProcessError> {
    let shrink = scale.shrink;
    let cur = Cursor::new(src);
    let lim = image_limits(limits);
    // Formats without native scaling shrink by a box average right after decoding.
    let still = |mut d: Box<dyn FnMut() -> Result<DynamicImage, ProcessError>>| -> Result<Picture, ProcessError> {
        Ok(Picture::still(picture::box_shrink(d()?, shrink)?))
    };
    match probe.format {
        // Never sniffed as a source (output only).
        Format::Avif => Err(unsupported()),
        Format::Jpg => Ok(Picture::still(decode_jpeg(src, &probe.meta, scale)?)),
        Format::Png => still(Box::new(move || {
            let mut d = png::PngDecoder::new(cur.clone()).map_err(image_err)?;
            d.set_limits(lim.clone()).map_err(image_err)?;
            DynamicImage::from_decoder(d).map_err(image_err)
        })),
        Format::Bmp => still(Box::new(move || {
            let mut d = bmp::BmpDecoder::new(cur.clone()).map_err(image_err)?;
            d.set_limits(lim.clone()).map_err(image_err)?;
            DynamicImage::from_decoder(d).map_err(image_err)
        })),
        Format::Tiff => still(Box::new(move || {
            let mut d = tiff::TiffDecoder::new(cur.clone()).map_err(image_err)?;
            d.set_limits(lim.clone()).map_err(image_err)?;
            DynamicImage::from_decoder(d).map_err(image_err)
        })),
        Format::Gif => {
            let mut d = gif::GifDecoder::new(cur).map_err(image_err)?;
            d.set_limits(lim).map_err(image_err)?;
            collect_frames(d.into_frames(), all_frames, probe, limits)
        }
        Format::Webp => match decode_webp_still(src, shrink)? {
            Some(img) => Ok(Picture::still(img)),
            None => {
                let mut d = iwebp::WebPDecoder::new(cur).map_err(image_err)?;
                d.set_limits(lim).map_err(image_err)?;
                collect_frames(d.into_frames(), all_frames, probe, limits)
            }
        },
    }
}

fn collect_frames(
    frames: image::Frames<'_>,
    all: bool,
    probe: &Probe,
    limits: &Limits,
) -> Result<Picture, ProcessError> {
    let mut out = Vec::new();
    let per_frame = u64::from(probe.meta.width) * u64::from(probe.meta.height);
    for f in frames {
        let f = f.map_err(image_err)?;
        let (num, den) = f.delay().numer_denom_ms();
        let delay_ms = num.checked_div(den).unwrap_or(0);
        let buf = f.into_buffer();
        let rgba = DynamicImage::ImageRgba8(buf);
        out.push(Frame { img: picture::normalize(rgba), delay_ms });
        if !all {
            break;
        }
        // The probe counted frames from the block structure; enforce again while decoding.
        if out.len() as u64 > u64::from(limits.max_frames)
            || per_frame.saturating_mul(out.len() as u64) > limits.max_source_pixels
        {
            return Err(ProcessError::too_large("The animation exceeds the frame limit.", Some("0040-00000012")));
        }
    }
    if out.is_empty() {
        return Err(corrupt("no frames"));
    }
    // All frames are RGBA after compositing; drop alpha only if every frame is opaque
    // is not worth a pass here: the encoder flattens when needed.
    Ok(Picture { frames: out, loop_count: probe.meta.loop_count })
}

fn decode_jpeg(src: &[u8], meta: &Meta, scale: LoadScale) -> Result<DynamicImage, ProcessError> {
    let coarse =
        (scale.coarse_ac && meta.progressive).then(|| super::jpeg_scans::without_ac_lsb_refinement(src)).flatten();
    let src = coarse.as_deref().unwrap_or(src);
    let mut d = tj::Decoder::new()?;
    let header = d.header(src)?;
    let (buf, w, h) = d.decompress(src, &header, scale.shrink)?;
    let buf = if header.cmyk { cmyk_to_rgb(&buf, meta.adobe) } else { buf };
    picture::from_raw(w, h, false, buf)
}

/// A still WebP through libwebp, about 4× faster than the pure-Rust decoder (the 1280×720
/// photo: 30 → 7 ms). `shrink` > 1 scales on load with libwebp's area-averaging
/// rescaler, as libvips' webpload does; the caller keeps the same 2× margin as for JPEG.
/// `None` for an animation, which goes through the frame compositor instead.
fn decode_webp_still(src: &[u8], shrink: u32) -> Result<Option<DynamicImage>, ProcessError> {
    use libwebp_sys as ws;
    use std::ffi::c_int;
    let mut cfg = ws::WebPDecoderConfig::new().map_err(|()| corrupt("libwebp version mismatch"))?;
    // SAFETY: `src` outlives the call; `cfg.input` is a valid, initialised struct.
    let status = unsafe { ws::WebPGetFeatures(src.as_ptr(), src.len(), &mut cfg.input) };
    if status != ws::VP8StatusCode::VP8_STATUS_OK {
        return Err(corrupt(format!("webp header: {status:?}")));
    }
    let (w, h) = (u32::try_from(cfg.input.width), u32::try_from(cfg.input.height));
    let (Ok(w), Ok(h)) = (w, h) else { return Err(corrupt("webp size")) };
    if cfg.input.has_animation != 0 {
        return Ok(None);
    }
    let alpha = cfg.input.has_alpha != 0;
    let shrink = shrink.max(1);
    let (ow, oh) = (w.div_ceil(shrink), h.div_ceil(shrink));
    if shrink > 1 {
        cfg.options.use_scaling = 1;
        cfg.options.scaled_width = c_int::try_from(ow).map_err(|_| corrupt("webp size"))?;
        cfg.options.scaled_height = c_int::try_from(oh).map_err(|_| corrupt("webp size"))?;
    }
    let channels = if alpha { 4 } else { 3 };
    let mut buf = picture::try_alloc(picture::buf_len(ow, oh, channels)?)?;
    let stride = c_int::try_from(ow as usize * channels).map_err(|_| corrupt("webp size"))?;
    cfg.output.colorspace = if alpha { ws::WEBP_CSP_MODE::MODE_RGBA } else { ws::WEBP_CSP_MODE::MODE_RGB };
    cfg.output.is_external_memory = 1;
    cfg.output.u.RGBA = ws::WebPRGBABuffer { rgba: buf.as_mut_ptr(), stride, size: buf.len() };
    // SAFETY: libwebp writes at most `size` bytes with the given stride into `buf`, which
    // lives until after the call; nothing else is allocated for external memory, and
    // WebPFreeDecBuffer releases whatever libwebp may have kept.
    let status = unsafe {
        let status = ws::WebPDecode(src.as_ptr(), src.len(), &mut cfg);
        ws::WebPFreeDecBuffer(&mut cfg.output);
        status
    };
    if status != ws::VP8StatusCode::VP8_STATUS_OK {
        return Err(corrupt(format!("webp data: {status:?}")));
    }
    picture::from_raw(ow, oh, alpha, buf).map(Some)
}

/// A thin libjpeg-turbo (TJ3) decompressor. The `turbojpeg` crate turns every libjpeg
/// *warning* into an error; here warnings about recoverable glitches that browsers
/// ignore (e.g. "extraneous bytes before marker") are accepted, while warnings that mean
/// missing data ("premature end", i.e. truncated files) stay 400 BadRequest.
mod tj {
    use std::ffi::{c_int, CStr};

    use turbojpeg_sys as raw;

    use super::corrupt;
    use crate::process::picture;
    use crate::process::ProcessError;

    /// What the frame header says.
    pub(crate) struct Header {
        pub width: u32,
        pub height: u32,
        /// CMYK or YCCK: decoded as CMYK and converted by the caller.
        pub cmyk: bool,
    }

    /// Owns a TJ3 decompression handle.
    pub(crate) struct Decoder(raw::tjhandle);

    impl Drop for Decoder {
        fn drop(&mut self) {
            // SAFETY: the handle came from tj3Init and is destroyed once.
            unsafe { raw::tj3Destroy(self.0) }
        }
    }

    impl Decoder {
        pub fn new() -> Result<Self, ProcessError> {
            // SAFETY: plain constructor; a null result is handled.
            let h = unsafe { raw::tj3Init(raw::TJINIT_TJINIT_DECOMPRESS as c_int) };
            if h.is_null() {
                return Err(ProcessError::internal("tj3Init failed"));
            }
            Ok(Decoder(h))
        }

        /// Maps a TJ3 return code: fatal errors and data-loss warnings are errors.
        fn check(&self, rc: c_int) -> Result<(), ProcessError> {
            if rc == 0 {
                return Ok(());
            }
            // SAFETY: the handle is valid; the error string is owned by the handle and
            // copied before the next call.
            let (code, msg) = unsafe {
                let code = raw::tj3GetErrorCode(self.0);
                let p = raw::tj3GetErrorStr(self.0);
                let msg = if p.is_null() { String::new() } else { CStr::from_ptr(p).to_string_lossy().into_owned() };
                (code, msg)
            };
            let warning = code == raw::TJERR_TJERR_WARNING as c_int;
            if warning && !msg.to_ascii_lowercase().contains("premature end") {
                return Ok(());
            }
            Err(corrupt(format!("TurboJPEG error: {msg}")))
        }

        fn get(&self, p: raw::TJPARAM) -> c_int {
            // SAFETY: valid handle, plain getter.
            unsafe { raw::tj3Get(self.0, p as c_int) }
        }

        /// Reads the frame header (no pixels).
        pub fn header(&mut self, src: &[u8]) -> Result<Header, ProcessError> {
            // SAFETY: pointer and length come from one live slice.
            let rc = unsafe { raw::tj3DecompressHeader(self.0, src.as_ptr(), src.len() as _) };
            self.check(rc)?;
            let w = self.get(raw::TJPARAM_TJPARAM_JPEGWIDTH);
            let h = self.get(raw::TJPARAM_TJPARAM_JPEGHEIGHT);
            let cs = self.get(raw::TJPARAM_TJPARAM_COLORSPACE);
            if w <= 0 || h <= 0 {
                return Err(corrupt("no frame header"));
            }
            Ok(Header {
                width: w as u32,
                height: h as u32,
                cmyk: cs == raw::TJCS_TJCS_CMYK as c_int || cs == raw::TJCS_TJCS_YCCK as c_int,
            })
        }

        /// Decodes to RGB (or CMYK for CMYK/YCCK files) with DCT scaling by `1/shrink`.
        pub fn decompress(
            &mut self,
            src: &[u8],
            header: &Header,
            shrink: u32,
        ) -> Result<(Vec<u8>, u32, u32), ProcessError> {
            let shrink = match shrink {
                2 | 4 | 8 => shrink,
                _ => 1,
            };
            if shrink > 1 {
                let f = raw::tjscalingfactor { num: 1, denom: shrink as c_int };
                // SAFETY: valid handle, plain setter.
                let rc = unsafe { raw::tj3SetScalingFactor(self.0, f) };
                self.check(rc)?;
            }
            // libjpeg-turbo's TJSCALED: ceil(dim · num / denom).
            let w = header.width.div_ceil(shrink);
            let h = header.height.div_ceil(shrink);
            let (fmt, ch) = if header.cmyk { (raw::TJPF_TJPF_CMYK, 4) } else { (raw::TJPF_TJPF_RGB, 3) };
            let mut buf = picture::try_alloc(picture::buf_len(w, h, ch)?)?;
            let pitch = c_int::try_from(w as usize * ch).map_err(|_| corrupt("width"))?;
            // SAFETY: `buf` holds exactly h rows of `pitch` bytes for the scaled size that
            // libjpeg-turbo computes the same way (TJSCALED), and outlives the call.
            let rc = unsafe {
                raw::tj3Decompress8(self.0, src.as_ptr(), src.len() as _, buf.as_mut_ptr(), pitch, fmt as c_int)
            };
            self.check(rc)?;
            Ok((buf, w, h))
        }
    }
}

/// Naive CMYK → RGB (no CMS). Adobe (Photoshop) JPEGs store inverted values, so the
/// decoded bytes are already `255 − C` etc. and `R = c·k/255`.
pub(crate) fn cmyk_to_rgb(cmyk: &[u8], inverted: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let [mut c, mut m, mut y, mut k] = [px[0], px[1], px[2], px[3]].map(u32::from);
        if !inverted {
            (c, m, y, k) = (255 - c, 255 - m, 255 - y, 255 - k);
        }
        out.extend_from_slice(&[(c * k / 255) as u8, (m * k / 255) as u8, (y * k / 255) as u8]);
    }
    out
}

// ---------------------------------------------------------------- encode

/// Encoder settings resolved from the pipeline.
#[derive(Debug, Clone)]
pub(crate) struct EncodeOptions {
    /// 1–100, for JPEG and WebP.
    pub quality: u8,
    /// Progressive JPEG.
    pub progressive: bool,
    /// RGB ICC profile to embed.
    pub icc: Option<Vec<u8>>,
    /// libwebp method, 0–6 (`limits.webp_method`).
    pub webp_method: u8,
}

impl Default for EncodeOptions {
    fn default() -> Self {
        EncodeOptions { quality: 0, progressive: false, icc: None, webp_method: DEFAULT_WEBP_METHOD }
    }
}

/// True for an ICC profile whose data colour space is RGB (header bytes 16..20).
pub(crate) fn is_rgb_icc(icc: &[u8]) -> bool {
    icc.get(16..20) == Some(b"RGB ")
}

fn enc_err(e: impl std::fmt::Display) -> ProcessError {
    ProcessError::internal(format!("encode: {e}"))
}

/// Encodes a picture. Animated pictures stay animated for GIF and WebP outputs; other
/// formats get the first frame.
pub(crate) fn encode(pic: &Picture, fmt: Format, opts: &EncodeOptions) -> Result<Vec<u8>, ProcessError> {
    let first = pic.first().ok_or_else(|| ProcessError::internal("empty picture"))?;
    if pic.is_animated() {
        match fmt {
            Format::Gif => return encode_gif(pic),
            Format::Webp => return encode_webp_anim(pic, opts),
            _ => {}
        }
    }
    let mut out = Vec::new();
    match fmt {
        Format::Jpg => out = encode_jpeg(first, opts)?,
        Format::Webp => out = encode_webp(first, opts)?,
        Format::Png => {
            let mut e = png::PngEncoder::new_with_quality(&mut out, PNG_COMPRESSION, png::FilterType::Adaptive);
            if let Some(icc) = &opts.icc {
                // PNG iCCP; an encoder refusal only loses the profile, never the image.
                let _ = e.set_icc_profile(icc.clone());
            }
            e.write_image(first.as_bytes(), first.width(), first.height(), ext_color(first)).map_err(enc_err)?;
        }
        Format::Bmp => {
            bmp::BmpEncoder::new(&mut out)
                .encode(first.as_bytes(), first.width(), first.height(), ext_color(first))
                .map_err(enc_err)?;
        }
        Format::Tiff => {
            let mut cur = Cursor::new(&mut out);
            let mut e = tiff::TiffEncoder::new(&mut cur);
            if let Some(icc) = &opts.icc {
                let _ = e.set_icc_profile(icc.clone());
            }
            e.write_image(first.as_bytes(), first.width(), first.height(), ext_color(first)).map_err(enc_err)?;
        }
        Format::Gif => out = encode_gif(pic)?,
        Format::Avif => out = encode_avif(first, opts)?,
    }
    Ok(out)
}

/// PNG deflate effort: zlib level 3 (zlib-rs, the zlib-ng port). On the six benchmark
/// PNGs at fit 400: `Fast` (fdeflate) 1.1 ms / 151.0 kB mean, level 3 4.9 ms / 139.0 kB,
/// level 6 7.9 ms / 137.1 kB; Pillow's level 6 (thumbor) 139.6 kB. Level 3 is the cheapest
/// that is no larger than the peers' files; `benches/engine.rs` `encode_png_*` has more.
pub(crate) const PNG_COMPRESSION: png::CompressionType = png::CompressionType::Level(3);

/// ravif quality for a request's (libjpeg-scale) quality. Chosen by measurement
/// (`benches/peers/sweep.py`, 7 photos at fit 400, SSIMULACRA2 against a linear-light
/// reference): ravif q80 at speed 10 scores about what the q80 WebP does (5 of 7 photos
/// within 2 points) with 0.93x its bytes at equal SSIMULACRA2, so the number maps 1:1; a
/// lower mapping (0.75: ravif q60) would win bytes by losing quality. What made AVIF large
/// was the inherited source quality, fixed in `pipeline::encode`.
pub(crate) fn avif_quality(q: u8) -> f32 {
    f32::from(q.clamp(1, 100)) * AVIF_QUALITY_SCALE
}

/// See [`avif_quality`].
const AVIF_QUALITY_SCALE: f32 = 1.0;

/// AVIF via ravif (rav1e) at speed 10, one thread: the cheapest setting, ~20 ms for a
/// 400 px image. Alpha is kept when the image has transparency.
fn encode_avif(img: &DynamicImage, opts: &EncodeOptions) -> Result<Vec<u8>, ProcessError> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let quality = avif_quality(opts.quality);
    let enc = ravif::Encoder::new()
        .with_quality(quality)
        .with_alpha_quality(quality)
        .with_speed(10)
        .with_num_threads(Some(1));
    let encoded = if img.color().has_alpha() && picture::has_transparency(img) {
        let rgba = img.to_rgba8();
        let px: Vec<ravif::RGBA8> = rgba.pixels().map(|p| ravif::RGBA8::new(p[0], p[1], p[2], p[3])).collect();
        enc.encode_rgba(ravif::Img::new(&px[..], w, h))
    } else {
        let rgb = img.to_rgb8();
        let px: Vec<ravif::RGB8> = rgb.pixels().map(|p| ravif::RGB8::new(p[0], p[1], p[2])).collect();
        enc.encode_rgb(ravif::Img::new(&px[..], w, h))
    };
    encoded.map(|e| e.avif_file).map_err(|e| enc_err(format!("{e}")))
}

pub(crate) fn ext_color(img: &DynamicImage) -> ExtendedColorType {
    if img.color().has_alpha() {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    }
}

/// JPEG via jpegli ([`super::jpegli`]: libjpeg's standard quantisation tables, so `Q_n`
/// means what it means at OSS; 4:2:0; optimised Huffman tables; baseline unless
/// `interlace,1`); alpha is flattened on white (spec §3).
pub(crate) fn encode_jpeg(img: &DynamicImage, opts: &EncodeOptions) -> Result<Vec<u8>, ProcessError> {
    let rgb_owned;
    let rgb = match img {
        DynamicImage::ImageRgb8(i) => i,
        other => {
            rgb_owned = picture::flatten_white(other.clone());
            &rgb_owned
        }
    };
    let jpeg = super::jpegli::encode_rgb(
        rgb.as_raw(),
        rgb.width(),
        rgb.height(),
        &super::jpegli::Settings::server(opts.quality, opts.progressive),
    )
    .map_err(enc_err)?;
    Ok(match &opts.icc {
        Some(icc) => insert_jpeg_icc(&jpeg, icc),
        None => jpeg,
    })
}

/// Inserts an ICC profile as APP2 `ICC_PROFILE` segments after SOI and any APP0.
pub(crate) fn insert_jpeg_icc(jpeg: &[u8], icc: &[u8]) -> Vec<u8> {
    const MAX: usize = 65_519; // 65535 − 2 (length) − 14 (signature + seq + count)
    let chunks: Vec<&[u8]> = icc.chunks(MAX).collect();
    if chunks.is_empty() || chunks.len() > 255 || jpeg.len() < 4 {
        return jpeg.to_vec();
    }
    // Position after SOI and a JFIF APP0 segment, if any.
    let mut pos = 2;
    if jpeg.get(2..4) == Some(&[0xFF, 0xE0]) {
        if let Some(l) = jpeg.get(4..6) {
            pos = 4 + usize::from(u16::from_be_bytes([l[0], l[1]]));
        }
    }
    if pos > jpeg.len() {
        return jpeg.to_vec();
    }
    let mut out = Vec::with_capacity(jpeg.len() + icc.len() + 18 * chunks.len());
    out.extend_from_slice(&jpeg[..pos]);
    let n = chunks.len() as u8;
    for (i, c) in chunks.iter().enumerate() {
        let len = (c.len() + 16) as u16;
        out.extend_from_slice(&[0xFF, 0xE2]);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(b"ICC_PROFILE\0");
        out.extend_from_slice(&[i as u8 + 1, n]);
        out.extend_from_slice(c);
    }
    out.extend_from_slice(&jpeg[pos..]);
    out
}

/// Default libwebp method (effort), `limits.webp_method`. Measured at equal SSIMULACRA2
/// (`benches/peers/sweep.py`, the 7 benchmark photos, q 70/80/90, bytes to reach method
/// 2's q80 quality; encode ms = median on this machine). Fit 400: method 2 3.3 ms; 3 0.961×
/// bytes, 7.9 ms; 4 0.950×, 7.7 ms; 5 0.932×, 8.5 ms; 6 0.918×, 15.5 ms. Fit 1000: 2
/// 12.2 ms; 4 0.957×, 27.7 ms; 5 0.943×, 31.1 ms; 6 0.924×, 48.1 ms. Every step above 2
/// costs more than 4 ms per 400 px output, against ~2.5 ms of headroom in issue 20's speed
/// goal for the WebP cell, so 2 stays the default and the rest is a setting. The other
/// knobs (sns_strength, filter_strength, autofilter, segments, preprocessing, sharp YUV)
/// moved bytes by less than the measurement's noise (±1.5 %) or cost as much as a method.
pub const DEFAULT_WEBP_METHOD: u8 = 2;

/// Highest method for a picture with transparency: libwebp codes the alpha plane
/// losslessly with effort = method and quality 8 × method, and from 25 (method 4) on it
/// takes the costly backward-reference search ("can take seconds", libwebp's own note).
const WEBP_ALPHA_METHOD_MAX: u8 = 3;

fn webp_config(quality: u8, method: u8, alpha: bool) -> Result<webp::WebPConfig, ProcessError> {
    let mut cfg = webp::WebPConfig::new().map_err(|_| enc_err("webp config"))?;
    cfg.quality = f32::from(quality.clamp(1, 100));
    let method = if alpha { method.min(WEBP_ALPHA_METHOD_MAX) } else { method.min(6) };
    cfg.method = i32::from(method);
    Ok(cfg)
}

/// Lossy WebP via libwebp.
pub(crate) fn encode_webp(img: &DynamicImage, opts: &EncodeOptions) -> Result<Vec<u8>, ProcessError> {
    let alpha = img.color().has_alpha() && picture::has_transparency(img);
    let rgb_owned;
    let enc = if img.color().has_alpha() && alpha {
        webp::Encoder::from_rgba(img.as_bytes(), img.width(), img.height())
    } else if img.color().has_alpha() {
        // Opaque RGBA: drop the alpha plane, it only costs time and bytes.
        rgb_owned = picture::flatten_white(img.clone());
        webp::Encoder::from_rgb(rgb_owned.as_raw(), img.width(), img.height())
    } else {
        webp::Encoder::from_rgb(img.as_bytes(), img.width(), img.height())
    };
    let cfg = webp_config(opts.quality, opts.webp_method, alpha)?;
    let mem = enc.encode_advanced(&cfg).map_err(|e| enc_err(format!("{e:?}")))?;
    let bytes = mem.to_vec();
    Ok(match &opts.icc {
        Some(icc) => add_webp_icc(&bytes, icc, img.width(), img.height(), alpha).unwrap_or(bytes),
        None => bytes,
    })
}

/// Rewrites a WebP container as VP8X with an `ICCP` chunk.
fn add_webp_icc(webp: &[u8], icc: &[u8], w: u32, h: u32, alpha: bool) -> Option<Vec<u8>> {
    if webp.len() < 12 || &webp[..4] != b"RIFF" {
        return None;
    }
    let mut chunks: Vec<&[u8]> = Vec::new();
    let mut flags = 0x20u8; // ICC
    if alpha {
        flags |= 0x10;
    }
    let mut i = 12;
    while i + 8 <= webp.len() {
        let len = u32::from_le_bytes(webp[i + 4..i + 8].try_into().ok()?) as usize;
        let end = i.checked_add(8)?.checked_add(len)?.checked_add(len & 1)?.min(webp.len());
        let id = &webp[i..i + 4];
        if id == b"VP8X" {
            if let Some(&f) = webp.get(i + 8) {
                flags |= f;
            }
        } else {
            chunks.push(&webp[i..end]);
        }
        i = end;
    }
    let mut body = Vec::with_capacity(webp.len() + icc.len() + 32);
    body.extend_from_slice(b"WEBP");
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[flags, 0, 0, 0]);
    body.extend_from_slice(&(w.checked_sub(1)?).to_le_bytes()[..3]);
    body.extend_from_slice(&(h.checked_sub(1)?).to_le_bytes()[..3]);
    body.extend_from_slice(b"ICCP");
    body.extend_from_slice(&(icc.len() as u32).to_le_bytes());
    body.extend_from_slice(icc);
    if icc.len() % 2 == 1 {
        body.push(0);
    }
    for c in chunks {
        body.extend_from_slice(c);
    }
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    Some(out)
}

/// Animated WebP via libwebp's WebPAnimEncoder (frame delays and loop count kept).
///
/// Calls libwebp directly rather than `webp::AnimEncoder`, which closes the animation
/// with timestamp 0 and so loses the last frame's duration.
fn encode_webp_anim(pic: &Picture, opts: &EncodeOptions) -> Result<Vec<u8>, ProcessError> {
    use libwebp_sys as ws;
    use std::mem::MaybeUninit;
    use std::ptr;

    /// Deletes the encoder on every exit path.
    struct EncGuard(*mut ws::WebPAnimEncoder);
    impl Drop for EncGuard {
        fn drop(&mut self) {
            // SAFETY: the pointer came from WebPAnimEncoderNewInternal and is deleted once.
            unsafe { ws::WebPAnimEncoderDelete(self.0) }
        }
    }

    let (w, h) = pic.dims();
    let (wi, hi) = (i32::try_from(w).map_err(enc_err)?, i32::try_from(h).map_err(enc_err)?);
    let stride = wi.checked_mul(4).ok_or_else(|| enc_err("width"))?;
    // Animation frames are RGBA: the alpha cap applies.
    let cfg = webp_config(opts.quality, opts.webp_method, true)?;
    let frames: Vec<(image::RgbaImage, u32)> =
        pic.frames.iter().map(|f| (picture::to_rgba(f.img.clone()), f.delay_ms)).collect();
    // A GIF without a loop extension plays once, which is WebP loop count 1.
    let loop_count = i32::from(pic.loop_count.unwrap_or(1));
    let mux_abi = ws::WEBP_MUX_ABI_VERSION as i32;
    // SAFETY: plain libwebp C API use: structs are initialised by their Init functions
    // before use, every RGBA buffer is w*h*4 bytes (checked by RgbaImage and the frame
    // size invariant of Picture), pictures are freed after being added, and the
    // assembled WebPData is copied then released with WebPDataClear.
    unsafe {
        let mut o = MaybeUninit::<ws::WebPAnimEncoderOptions>::zeroed();
        if ws::WebPAnimEncoderOptionsInitInternal(o.as_mut_ptr(), mux_abi) == 0 {
            return Err(enc_err("webp anim options"));
        }
        let mut o = o.assume_init();
        o.anim_params.loop_count = loop_count;
        let enc = ws::WebPAnimEncoderNewInternal(wi, hi, &o, mux_abi);
        if enc.is_null() {
            return Err(enc_err("webp anim encoder"));
        }
        let guard = EncGuard(enc);
        let mut t: i32 = 0;
        for (px, delay) in &frames {
            if px.dimensions() != (w, h) {
                return Err(enc_err("frame size"));
            }
            let mut p = MaybeUninit::<ws::WebPPicture>::zeroed();
            if ws::WebPPictureInitInternal(p.as_mut_ptr(), ws::WEBP_ENCODER_ABI_VERSION as i32) == 0 {
                return Err(enc_err("webp picture"));
            }
            let mut p = p.assume_init();
            p.use_argb = 1;
            p.width = wi;
            p.height = hi;
            if ws::WebPPictureImportRGBA(&mut p, px.as_raw().as_ptr(), stride) == 0 {
                ws::WebPPictureFree(&mut p);
                return Err(enc_err("webp import"));
            }
            let ok = ws::WebPAnimEncoderAdd(guard.0, &mut p, t, &cfg);
            ws::WebPPictureFree(&mut p);
            if ok == 0 {
                return Err(enc_err("webp anim add"));
            }
            // Timestamps must increase; a 0 ms GIF delay becomes 1 ms.
            t = t.saturating_add(i32::try_from((*delay).max(1)).unwrap_or(i32::MAX));
        }
        // The closing timestamp gives the last frame its duration.
        if ws::WebPAnimEncoderAdd(guard.0, ptr::null_mut(), t, ptr::null()) == 0 {
            return Err(enc_err("webp anim close"));
        }
        let mut data = ws::WebPData { bytes: ptr::null(), size: 0 };
        if ws::WebPAnimEncoderAssemble(guard.0, &mut data) == 0 || data.bytes.is_null() {
            return Err(enc_err("webp anim assemble"));
        }
        let out = std::slice::from_raw_parts(data.bytes, data.size).to_vec();
        ws::WebPDataClear(&mut data);
        Ok(out)
    }
}

/// GIF via the `image` crate (NeuQuant palette per frame), delays and loop count kept.
fn encode_gif(pic: &Picture) -> Result<Vec<u8>, ProcessError> {
    let mut out = Vec::new();
    {
        let mut e = gif::GifEncoder::new_with_speed(&mut out, 10);
        match pic.loop_count {
            Some(0) => e.set_repeat(gif::Repeat::Infinite).map_err(enc_err)?,
            Some(n) => e.set_repeat(gif::Repeat::Finite(n)).map_err(enc_err)?,
            // No extension in the source: write none (plays once).
            None => {}
        }
        for f in &pic.frames {
            let delay = image::Delay::from_numer_denom_ms(f.delay_ms, 1);
            let frame = image::Frame::from_parts(picture::to_rgba(f.img.clone()), 0, 0, delay);
            e.encode_frame(frame).map_err(enc_err)?;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn quality_estimate_matches_libjpeg_tables() {
        for q in [10u32, 50, 75, 80, 90, 95, 100] {
            let scale = if q < 50 { 5000 / q } else { 200 - 2 * q };
            let sum: u32 = STD_LUMA.iter().map(|&v| ((v * scale + 50) / 100).clamp(1, 255)).sum();
            let est = estimate_quality(sum);
            assert!((i32::from(est) - q as i32).abs() <= 1, "{q} → {est}");
        }
    }
    #[test]
    fn shrink_rule() {
        assert_eq!(shrink_factor((5312, 2988), (400, 225)), 4);
        assert_eq!(shrink_factor((800, 533), (400, 267)), 1);
        assert_eq!(shrink_factor((800, 533), (200, 133)), 2);
        assert_eq!(shrink_factor((8000, 8000), (10, 10)), 8);
    }
    #[test]
    fn sniffing() {
        assert_eq!(sniff(b"\xFF\xD8\xFF\xE0"), Some(Format::Jpg));
        assert_eq!(sniff(b"GIF89a"), Some(Format::Gif));
        assert_eq!(sniff(b"<html>"), None);
        assert_eq!(sniff(b""), None);
    }
}
