//! `contrast` (spec §4.10): `[decision]` `out = (in − 128)·k + 128` with
//! `k = ((100 + v) / 100)²` (the curve of image's `contrast()`), so −100 gives flat grey,
//! 0 is the identity and 100 quadruples the distance from mid-grey. Alpha untouched.

use std::fmt;

use image::DynamicImage;

use super::bright::{curve_lut, map_colour};
use crate::process::parse::Args;
use crate::process::ProcessError;

/// Typed `contrast` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Contrast {
    /// [-100, 100]
    pub v: i32,
}

/// Parses `contrast,<v>`.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Contrast, ProcessError> {
    Ok(Contrast { v: a.single_int(-100, 100, None, None)? as i32 })
}

impl fmt::Display for Contrast {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "contrast,{}", self.v)
    }
}

impl Contrast {
    /// Applies the curve to one frame.
    pub fn apply(&self, mut img: DynamicImage) -> DynamicImage {
        let k = ((100.0 + f64::from(self.v)) / 100.0).powi(2);
        let lut = curve_lut(|x| (x - 128.0) * k + 128.0);
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
        let p = |s: &str| parse_args(&Args::new("contrast", s.split(',').filter(|t| !t.is_empty())));
        assert!(p("-100").is_ok() && p("100").is_ok() && p("0").is_ok());
        assert!(p("101").is_err() && p("-101").is_err() && p("x").is_err() && p("").is_err());
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([100, 150, 128])));
        assert_eq!(p("0").unwrap().apply(img.clone()).into_rgb8().get_pixel(0, 0).0, [100, 150, 128]);
        assert_eq!(p("-100").unwrap().apply(img.clone()).into_rgb8().get_pixel(0, 0).0, [128, 128, 128]);
        assert_eq!(p("100").unwrap().apply(img.clone()).into_rgb8().get_pixel(0, 0).0, [16, 216, 128]);
    }
}
