//! `bright` (spec §4.9): `[decision]` a linear offset of `v × 255 / 100` on R, G and B,
//! clamped; alpha untouched.

use std::fmt;

use image::DynamicImage;

use crate::process::parse::Args;
use crate::process::ProcessError;

/// Typed `bright` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Bright {
    /// [-100, 100]
    pub v: i32,
}

/// Parses `bright,<v>`.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Bright, ProcessError> {
    Ok(Bright { v: a.single_int(-100, 100, None, Some("0040-00000246"))? as i32 })
}

impl fmt::Display for Bright {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "bright,{}", self.v)
    }
}

/// A 256-entry lookup table from a curve on the 0..=255 scale (rounded, clamped).
pub(crate) fn curve_lut(curve: impl Fn(f64) -> f64) -> [u8; 256] {
    let mut lut = [0u8; 256];
    for (i, l) in lut.iter_mut().enumerate() {
        *l = curve(i as f64).round().clamp(0.0, 255.0) as u8;
    }
    lut
}

/// Maps every colour channel (not alpha) of an RGB8/RGBA8 image through a lookup table.
pub(crate) fn map_colour(img: &mut DynamicImage, lut: &[u8; 256]) {
    let ch = if img.color().has_alpha() { 4 } else { 3 };
    let buf: &mut [u8] = match img {
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(i) => i,
        _ => return,
    };
    for px in buf.chunks_exact_mut(ch) {
        for c in &mut px[..3] {
            *c = lut[usize::from(*c)];
        }
    }
}

impl Bright {
    /// Applies the offset to one frame.
    pub fn apply(&self, mut img: DynamicImage) -> DynamicImage {
        let off = f64::from(self.v) * 255.0 / 100.0;
        let lut = curve_lut(|x| x + off);
        // In place: the frame is owned, no copy needed.
        map_colour(&mut img, &lut);
        img
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn bounds_and_effect() {
        let p = |s: &str| parse_args(&Args::new("bright", s.split(',').filter(|t| !t.is_empty())));
        assert!(p("-100").is_ok());
        assert!(p("100").is_ok());
        assert_eq!(p("101").unwrap_err().ec(), Some("0040-00000246"));
        assert_eq!(p("200").unwrap_err().ec(), Some("0040-00000246"));
        assert_eq!(p("-101").unwrap_err().ec(), Some("0040-00000246"));
        assert_eq!(p("abc").unwrap_err().ec(), Some("0040-00000246"));
        assert_eq!(p("1,2").unwrap_err().ec(), Some("0040-00000203"));
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(2, 2, image::Rgb([100, 100, 100])));
        assert_eq!(p("50").unwrap().apply(img.clone()).into_rgb8().get_pixel(0, 0).0, [228, 228, 228]);
        assert_eq!(p("-50").unwrap().apply(img.clone()).into_rgb8().get_pixel(0, 0).0, [0, 0, 0]);
    }
}
