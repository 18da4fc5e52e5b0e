//! Colour management: converts pixels described by an embedded ICC profile to sRGB with
//! moxcms (already part of the build through `image`), so outputs need no profile and
//! look the same in every viewer.
//!
//! Applied at the end of the chain, on output-sized pixels (after resize), where it is
//! cheap. Supported: RGB matrix/LUT profiles (e.g. Adobe RGB, Display P3) and grey
//! profiles on greyscale sources. When a profile cannot be parsed or converted, the
//! caller carries the RGB profile into the output instead, so it is never silently lost.
//! [decision] CMYK JPEGs are converted with the naive Adobe formula in `codec.rs`; a CMYK
//! profile is then dropped (the corpus has no CMYK JPEG with a profile).

use image::DynamicImage;
use moxcms::{ColorProfile, DataColorSpace, Layout, TransformOptions};

use super::picture::{self, Picture};
use super::ProcessError;

/// True when the profile claims to be sRGB (its description mentions it): nothing to do.
fn looks_srgb(icc: &[u8]) -> bool {
    icc.windows(4).any(|w| w == b"sRGB") || icc.windows(8).any(|w| w == b"s\0R\0G\0B\0")
}

/// Outcome of [`to_srgb`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Converted {
    /// Pixels are now sRGB (or already were); no profile needed.
    Done,
    /// Could not convert; carry the profile if it is RGB.
    Carry,
}

/// Converts every frame from `icc` to sRGB in place.
pub(crate) fn to_srgb(pic: &mut Picture, icc: &[u8]) -> Result<Converted, ProcessError> {
    if looks_srgb(icc) {
        return Ok(Converted::Done);
    }
    let Ok(src) = ColorProfile::new_from_slice(icc) else { return Ok(Converted::Carry) };
    let dst = ColorProfile::new_srgb();
    match src.color_space {
        DataColorSpace::Rgb => {
            for f in &mut pic.frames {
                let alpha = f.img.color().has_alpha();
                let layout = if alpha { Layout::Rgba } else { Layout::Rgb };
                let Ok(t) = src.create_transform_8bit(layout, &dst, layout, TransformOptions::default()) else {
                    return Ok(Converted::Carry);
                };
                let mut out = picture::try_alloc(f.img.as_bytes().len())?;
                if t.transform(f.img.as_bytes(), &mut out).is_err() {
                    return Ok(Converted::Carry);
                }
                f.img = picture::from_raw(f.img.width(), f.img.height(), alpha, out)?;
            }
            Ok(Converted::Done)
        }
        DataColorSpace::Gray => {
            // Grey sources were expanded to R=G=B on decode; convert from one channel.
            for f in &mut pic.frames {
                let alpha = f.img.color().has_alpha();
                let ch = if alpha { 4 } else { 3 };
                let grey: Vec<u8> = f.img.as_bytes().chunks_exact(ch).map(|p| p[0]).collect();
                let Ok(t) = src.create_transform_8bit(Layout::Gray, &dst, Layout::Rgb, TransformOptions::default())
                else {
                    return Ok(Converted::Done);
                };
                let mut rgb = picture::try_alloc(picture::buf_len(f.img.width(), f.img.height(), 3)?)?;
                if t.transform(&grey, &mut rgb).is_err() {
                    return Ok(Converted::Done);
                }
                let img = if alpha {
                    let mut rgba = picture::to_rgba(f.img.clone());
                    for (p, c) in rgba.as_mut().chunks_exact_mut(4).zip(rgb.chunks_exact(3)) {
                        p[..3].copy_from_slice(c);
                    }
                    DynamicImage::ImageRgba8(rgba)
                } else {
                    picture::from_raw(f.img.width(), f.img.height(), false, rgb)?
                };
                f.img = img;
            }
            Ok(Converted::Done)
        }
        // CMYK and other spaces: the pixels are already RGB after decoding.
        _ => Ok(Converted::Done),
    }
}
