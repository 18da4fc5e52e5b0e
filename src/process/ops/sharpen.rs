//! `sharpen` (spec §4.11): unsharp mask. `[decision]` the blur is a 3×3-ish Gaussian
//! (radius 1, σ 1) and the amount is `v / 100`, so the recommended 100 adds the full
//! high-pass once; 399 is very strong. Size unchanged.

use std::fmt;

use image::DynamicImage;

use super::blur::{convolve, kernel};
use crate::process::parse::Args;
use crate::process::{ProcessError, RunContext};

/// Typed `sharpen` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sharpen {
    /// [50, 399]
    pub v: u32,
}

/// Parses `sharpen,<v>`.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Sharpen, ProcessError> {
    Ok(Sharpen { v: a.single_int(50, 399, Some("0040-00000279"), Some("0040-00000280"))? as u32 })
}

impl fmt::Display for Sharpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sharpen,{}", self.v)
    }
}

impl Sharpen {
    /// Applies the unsharp mask to one frame.
    pub fn apply(&self, img: &DynamicImage, ctx: &RunContext<'_>) -> Result<DynamicImage, ProcessError> {
        let blurred = convolve(img, &kernel(1, 1.0), ctx)?;
        let amount = self.v as f32 / 100.0;
        let ch = if img.color().has_alpha() { 4 } else { 3 };
        let mut out = img.clone();
        let dst: &mut [u8] = match &mut out {
            DynamicImage::ImageRgb8(i) => i,
            DynamicImage::ImageRgba8(i) => i,
            _ => return Ok(out),
        };
        for (d, b) in dst.chunks_exact_mut(ch).zip(blurred.as_bytes().chunks_exact(ch)) {
            for c in 0..3 {
                let o = f32::from(d[c]);
                d[c] = (o + (o - f32::from(b[c])) * amount).round().clamp(0.0, 255.0) as u8;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn bounds() {
        let p = |s: &str| parse_args(&Args::new("sharpen", s.split(',').filter(|t| !t.is_empty())));
        assert!(p("50").is_ok() && p("399").is_ok());
        assert_eq!(p("49").unwrap_err().ec(), Some("0040-00000280"));
        assert_eq!(p("10").unwrap_err().ec(), Some("0040-00000280"));
        assert_eq!(p("400").unwrap_err().ec(), Some("0040-00000280"));
        assert_eq!(p("").unwrap_err().ec(), Some("0040-00000279"));
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(400, 267));
        let out = p("100").unwrap().apply(&img, &RunContext::new(&Default::default())).unwrap();
        assert_eq!((out.width(), out.height()), (400, 267));
    }
}
