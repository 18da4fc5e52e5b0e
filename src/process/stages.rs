//! Individual engine stages, exposed only for `benches/engine.rs` (hidden from docs; not
//! part of the crate's contract). Each wraps the same code `run` uses.

use image::DynamicImage;

use super::codec::{self, EncodeOptions};
use super::picture;
use super::{Fonts, Limits, ProcessError};

/// A decoded image, opaque to callers.
pub struct Decoded(DynamicImage);

impl Decoded {
    /// Width and height.
    pub fn dims(&self) -> (u32, u32) {
        (self.0.width(), self.0.height())
    }
}

/// Probes and decodes a JPEG with the shrink-on-load factor chosen for a target width.
///
/// # Errors
/// As `run`.
pub fn decode_for_width(src: &[u8], target_w: u32) -> Result<Decoded, ProcessError> {
    let probe = codec::probe(src, &Limits::default())?;
    let (w, h) = (probe.meta.width, probe.meta.height);
    let th = ((u64::from(h) * u64::from(target_w) + u64::from(w) / 2) / u64::from(w.max(1))) as u32;
    let scale = codec::LoadScale::for_target(&probe, (w, h), (target_w, th.max(1)));
    let pic = codec::decode(src, &probe, scale, false, &Limits::default())?;
    pic.first().cloned().map(Decoded).ok_or_else(|| ProcessError::internal("no frame"))
}

/// Lanczos3 resize to a width, keeping the aspect ratio.
///
/// # Errors
/// As `run`.
pub fn resize_to_width(img: &Decoded, w: u32) -> Result<Decoded, ProcessError> {
    let (sw, sh) = img.dims();
    let h = ((u64::from(sh) * u64::from(w) + u64::from(sw) / 2) / u64::from(sw.max(1))) as u32;
    picture::resample(&img.0, w, h.max(1), None).map(Decoded)
}

/// JPEG encode (libjpeg-turbo, 4:2:0).
///
/// # Errors
/// As `run`.
pub fn encode_jpeg(img: &Decoded, quality: u8) -> Result<Vec<u8>, ProcessError> {
    codec::encode_jpeg(&img.0, &EncodeOptions { quality, ..EncodeOptions::default() })
}

/// Lossy WebP encode (libwebp).
///
/// # Errors
/// As `run`.
pub fn encode_webp(img: &Decoded, quality: u8) -> Result<Vec<u8>, ProcessError> {
    codec::encode_webp(&img.0, &EncodeOptions { quality, ..EncodeOptions::default() })
}

/// Encodes in a named output format (`jpg`, `webp`, `png`, `gif`, `bmp`, `tiff`, `avif`)
/// exactly as `run` does for a still image.
///
/// # Errors
/// As `run`; an unknown name is a 400.
pub fn encode(img: &Decoded, format: &str, quality: u8) -> Result<Vec<u8>, ProcessError> {
    use super::ops::format::Format;
    let fmt = match format {
        "jpg" => Format::Jpg,
        "webp" => Format::Webp,
        "png" => Format::Png,
        "gif" => Format::Gif,
        "bmp" => Format::Bmp,
        "tiff" => Format::Tiff,
        "avif" => Format::Avif,
        other => return Err(ProcessError::invalid("format", other, "unknown format", None)),
    };
    let pic = picture::Picture::still(img.0.clone());
    codec::encode(&pic, fmt, &EncodeOptions { quality, ..EncodeOptions::default() })
}

/// PNG at an explicit deflate level (1-9; 0 = the engine's setting), to weigh encode
/// time against bytes.
///
/// # Errors
/// As `run`.
pub fn encode_png_level(img: &Decoded, level: u8) -> Result<Vec<u8>, ProcessError> {
    use image::codecs::png;
    use image::ImageEncoder;
    let compression = if level == 0 { codec::PNG_COMPRESSION } else { png::CompressionType::Level(level) };
    let mut out = Vec::new();
    png::PngEncoder::new_with_quality(&mut out, compression, png::FilterType::Adaptive)
        .write_image(img.0.as_bytes(), img.0.width(), img.0.height(), codec::ext_color(&img.0))
        .map_err(|e| ProcessError::internal(e.to_string()))?;
    Ok(out)
}

/// Decodes any supported source fully (no shrink-on-load).
///
/// # Errors
/// As `run`.
pub fn decode(src: &[u8]) -> Result<Decoded, ProcessError> {
    let probe = codec::probe(src, &Limits::default())?;
    let pic = codec::decode(src, &probe, codec::LoadScale::FULL, false, &Limits::default())?;
    pic.first().cloned().map(Decoded).ok_or_else(|| ProcessError::internal("no frame"))
}

/// Rasterises a text watermark block without the cache (default font, black, no shadow)
/// and returns its size.
///
/// # Errors
/// As `run` (a block over the size limit).
pub fn rasterise_text(fonts: &Fonts, text: &str, size: u32) -> Result<(u32, u32), ProcessError> {
    let key = super::fonts::TextKey {
        font: "wqy-zenhei",
        size,
        text: text.to_owned(),
        color: [0, 0, 0],
        shadow: 0,
        rotate: 0,
    };
    fonts.render(&key).map(|b| b.dimensions())
}

/// Draws every `watermark` op of `chain` (text only; no watermark objects) on `img`,
/// as `run` does: block from the font cache, then composited.
///
/// # Errors
/// As `run`.
pub fn draw_watermarks(img: &mut Decoded, chain: &str, fonts: &Fonts) -> Result<(), ProcessError> {
    let limits = Limits::default();
    let p = super::parse(chain, &super::Styles::new(), &limits)?;
    let ctx = super::RunContext { fonts: Some(fonts), ..super::RunContext::new(&limits) };
    for op in &p.ops {
        if let super::ops::Op::Watermark(w) = op {
            let block = w.prepare(img.dims(), &ctx)?;
            w.draw(&mut img.0, &block);
        }
    }
    Ok(())
}
