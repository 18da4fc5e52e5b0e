//! In-memory pictures: one or more frames of 8-bit RGB or RGBA pixels, plus the pixel
//! helpers shared by the operations (resampling, canvas allocation, alpha flattening).
//!
//! Invariant: every frame is `DynamicImage::ImageRgb8` or `ImageRgba8` (decoders normalise
//! grey, 16-bit and palette sources into these two), so operations only handle 3 or 4
//! interleaved channels. All frames of a picture have the same size.

use std::cell::RefCell;

use fast_image_resize as fir;
use image::{DynamicImage, RgbImage, RgbaImage};

use super::ProcessError;

/// One frame and how long it is shown.
#[derive(Debug, Clone)]
pub(crate) struct Frame {
    /// RGB8 or RGBA8 pixels.
    pub img: DynamicImage,
    /// Display time in milliseconds (0 for still images).
    pub delay_ms: u32,
}

/// A decoded image: one frame for stills, several for animations.
#[derive(Debug, Clone)]
pub(crate) struct Picture {
    /// At least one frame.
    pub frames: Vec<Frame>,
    /// Animation loop count from the source (0 = forever); `None` when the source has
    /// none (a GIF without the NETSCAPE2.0 extension plays once).
    pub loop_count: Option<u16>,
}

impl Picture {
    /// A still picture.
    pub fn still(img: DynamicImage) -> Self {
        Picture { frames: vec![Frame { img, delay_ms: 0 }], loop_count: None }
    }
    /// Width and height of the frames.
    pub fn dims(&self) -> (u32, u32) {
        self.frames.first().map(|f| (f.img.width(), f.img.height())).unwrap_or((0, 0))
    }
    /// True when more than one frame is kept.
    pub fn is_animated(&self) -> bool {
        self.frames.len() > 1
    }
    /// Drops all frames but the first (operations that make animations static, spec §2.4).
    pub fn make_static(&mut self) {
        self.frames.truncate(1);
    }
    /// The first frame.
    pub fn first(&self) -> Option<&DynamicImage> {
        self.frames.first().map(|f| &f.img)
    }
}

/// Normalises any decoded image to RGB8 or RGBA8 (moving, not copying, when it already is).
pub(crate) fn normalize(img: DynamicImage) -> DynamicImage {
    match img {
        DynamicImage::ImageRgb8(_) | DynamicImage::ImageRgba8(_) => img,
        other if other.color().has_alpha() => DynamicImage::ImageRgba8(other.into_rgba8()),
        other => DynamicImage::ImageRgb8(other.into_rgb8()),
    }
}

/// Allocates a zeroed byte buffer without aborting the process when memory is short.
pub(crate) fn try_alloc(len: usize) -> Result<Vec<u8>, ProcessError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len).map_err(|_| ProcessError::too_large("Not enough memory for the image.", None))?;
    v.resize(len, 0);
    Ok(v)
}

/// Byte length of a `w×h` image with `channels` channels, checked.
pub(crate) fn buf_len(w: u32, h: u32, channels: usize) -> Result<usize, ProcessError> {
    (w as usize)
        .checked_mul(h as usize)
        .and_then(|n| n.checked_mul(channels))
        .ok_or_else(|| ProcessError::too_large("Image dimensions overflow.", None))
}

/// A new image of the same kind (RGB or RGBA) filled with `rgba` (alpha dropped for RGB).
pub(crate) fn canvas(w: u32, h: u32, alpha: bool, rgba: [u8; 4]) -> Result<DynamicImage, ProcessError> {
    let ch = if alpha { 4 } else { 3 };
    let mut buf = try_alloc(buf_len(w, h, ch)?)?;
    for px in buf.chunks_exact_mut(ch) {
        px.copy_from_slice(&rgba[..ch]);
    }
    from_raw(w, h, alpha, buf)
}

/// Wraps a raw RGB/RGBA buffer.
pub(crate) fn from_raw(w: u32, h: u32, alpha: bool, buf: Vec<u8>) -> Result<DynamicImage, ProcessError> {
    let img = if alpha {
        RgbaImage::from_raw(w, h, buf).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(w, h, buf).map(DynamicImage::ImageRgb8)
    };
    img.ok_or_else(|| ProcessError::internal("pixel buffer size mismatch"))
}

/// Converts to RGBA8 (needed by operations that make pixels transparent).
pub(crate) fn to_rgba(img: DynamicImage) -> RgbaImage {
    match img {
        DynamicImage::ImageRgba8(i) => i,
        other => other.into_rgba8(),
    }
}

/// Composites RGBA onto white (spec §3: JPG output fills transparency with white).
/// RGB images pass through untouched.
pub(crate) fn flatten_white(img: DynamicImage) -> RgbImage {
    match img {
        DynamicImage::ImageRgba8(rgba) => {
            let (w, h) = rgba.dimensions();
            let mut out = Vec::with_capacity(rgba.as_raw().len() / 4 * 3);
            for px in rgba.as_raw().chunks_exact(4) {
                let a = u32::from(px[3]);
                for &c in &px[..3] {
                    // c·a + 255·(1−a), rounded.
                    out.push(((u32::from(c) * a + 255 * (255 - a) + 127) / 255) as u8);
                }
            }
            RgbImage::from_raw(w, h, out).unwrap_or_else(|| RgbImage::new(w, h))
        }
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.into_rgb8(),
    }
}

/// True when any pixel is not fully opaque.
pub(crate) fn has_transparency(img: &DynamicImage) -> bool {
    match img {
        DynamicImage::ImageRgba8(i) => i.as_raw().chunks_exact(4).any(|p| p[3] != 255),
        _ => false,
    }
}

thread_local! {
    /// One resizer per worker thread: it keeps its SIMD buffers between calls.
    static RESIZER: RefCell<fir::Resizer> = RefCell::new(fir::Resizer::new());
}

/// Region of the source to resample, in source pixels (left, top, width, height).
pub(crate) type SrcRegion = (f64, f64, f64, f64);

/// Resamples `img` to `w×h` with Lanczos3 (fast_image_resize, SIMD), optionally from a
/// sub-region of the source. RGBA is premultiplied during the resize, so transparent
/// pixels do not bleed colour.
pub(crate) fn resample(
    img: &DynamicImage,
    w: u32,
    h: u32,
    region: Option<SrcRegion>,
) -> Result<DynamicImage, ProcessError> {
    let (sw, sh) = (img.width(), img.height());
    if region.is_none() && sw == w && sh == h {
        return Ok(img.clone());
    }
    let alpha = img.color().has_alpha();
    let (pt, ch) = if alpha { (fir::PixelType::U8x4, 4) } else { (fir::PixelType::U8x3, 3) };
    let src = fir::images::ImageRef::new(sw, sh, img.as_bytes(), pt)
        .map_err(|e| ProcessError::internal(format!("resize source: {e}")))?;
    let buf = try_alloc(buf_len(w, h, ch)?)?;
    let mut dst = fir::images::Image::from_vec_u8(w, h, buf, pt)
        .map_err(|e| ProcessError::internal(format!("resize destination: {e}")))?;
    let mut opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3));
    if let Some((l, t, rw, rh)) = region {
        opts = opts.crop(l, t, rw, rh);
    }
    RESIZER
        .with(|r| r.borrow_mut().resize(&src, &mut dst, &opts))
        .map_err(|e| ProcessError::internal(format!("resize: {e}")))?;
    from_raw(w, h, alpha, dst.into_vec())
}

/// Shrink-on-load for sources whose codec cannot scale (PNG, BMP, TIFF): a box
/// average by `d` (libvips' `shrink` before its Lanczos `reduce`), taking the decoded
/// frame by value so RGBA is premultiplied in place instead of in a second full-size
/// buffer. The full decode is freed here; what stays (and what the decoded-source
/// cache keeps) is `d²` times smaller. Any pixel type comes back as RGB8 or RGBA8.
pub(crate) fn box_shrink(img: DynamicImage, d: u32) -> Result<DynamicImage, ProcessError> {
    let img = normalize(img);
    let (sw, sh) = (img.width(), img.height());
    let (w, h) = (sw.div_ceil(d.max(1)), sh.div_ceil(d.max(1)));
    if (w, h) == (sw, sh) {
        return Ok(img);
    }
    let alpha = img.color().has_alpha();
    let (pt, ch) = if alpha { (fir::PixelType::U8x4, 4) } else { (fir::PixelType::U8x3, 3) };
    let err = |what: &str, e: &dyn std::fmt::Display| ProcessError::internal(format!("shrink {what}: {e}"));
    let mut src = fir::images::Image::from_vec_u8(sw, sh, img.into_bytes(), pt).map_err(|e| err("source", &e))?;
    let muldiv = fir::MulDiv::default();
    if alpha {
        muldiv.multiply_alpha_inplace(&mut src).map_err(|e| err("premultiply", &e))?;
    }
    let mut dst = fir::images::Image::from_vec_u8(w, h, try_alloc(buf_len(w, h, ch)?)?, pt)
        .map_err(|e| err("destination", &e))?;
    let opts = fir::ResizeOptions::new().resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Box)).use_alpha(false);
    RESIZER.with(|r| r.borrow_mut().resize(&src, &mut dst, &opts)).map_err(|e| err("resize", &e))?;
    drop(src);
    if alpha {
        muldiv.divide_alpha_inplace(&mut dst).map_err(|e| err("unpremultiply", &e))?;
    }
    from_raw(w, h, alpha, dst.into_vec())
}

/// Copies the `w×h` rectangle at `(x, y)`; the caller guarantees it lies inside.
pub(crate) fn crop(img: &DynamicImage, x: u32, y: u32, w: u32, h: u32) -> DynamicImage {
    img.crop_imm(x, y, w, h)
}
