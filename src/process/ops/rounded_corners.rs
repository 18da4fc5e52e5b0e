//! `rounded-corners` (spec §4.5): cut the four corners with quarter circles of radius `r`;
//! size unchanged, cut area transparent (white for JPG output).

use std::fmt;

use image::DynamicImage;

use super::circle::coverage;
use crate::process::parse::Args;
use crate::process::picture;
use crate::process::ProcessError;

/// Typed `rounded-corners` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RoundedCorners {
    /// corner radius, [1, 4096]
    pub r: u32,
}

/// Parses `rounded-corners` parameters.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<RoundedCorners, ProcessError> {
    match a.int("r", 1, 4096, Some("0040-00000237"))? {
        Some(r) => Ok(RoundedCorners { r: r as u32 }),
        None => Err(ProcessError::missing("rounded-corners", "r", Some("0040-00000237"))),
    }
}

impl fmt::Display for RoundedCorners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rounded-corners,r_{}", self.r)
    }
}

impl RoundedCorners {
    /// Applies the corners to one frame; `r` is capped to `min(W,H)/2` (spec).
    pub fn apply(&self, img: &DynamicImage) -> Result<DynamicImage, ProcessError> {
        let (w, h) = (img.width(), img.height());
        let r = self.r.min(w.min(h) / 2);
        let mut out = picture::to_rgba(img.clone());
        if r == 0 {
            return Ok(DynamicImage::ImageRgba8(out));
        }
        let rf = f64::from(r);
        // Corner circle centres sit `r` pixels in from each edge (pixel-centre coordinates).
        let (cx0, cy0) = (rf - 0.5, rf - 0.5);
        let (cx1, cy1) = (f64::from(w) - rf - 0.5, f64::from(h) - rf - 0.5);
        for (px, py, p) in out.enumerate_pixels_mut() {
            let (fx, fy) = (f64::from(px), f64::from(py));
            let cx = if fx < cx0 {
                cx0
            } else if fx > cx1 {
                cx1
            } else {
                continue;
            };
            let cy = if fy < cy0 {
                cy0
            } else if fy > cy1 {
                cy1
            } else {
                continue;
            };
            let d = ((fx - cx).powi(2) + (fy - cy).powi(2)).sqrt();
            let cov = coverage(d, rf - 0.5);
            p.0[3] = (f64::from(p.0[3]) * cov).round() as u8;
        }
        Ok(DynamicImage::ImageRgba8(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn parse_and_apply() {
        let c = |s: &str| parse_args(&Args::new("rounded-corners", s.split(',')));
        assert_eq!(c("r_5000").unwrap_err().ec(), Some("0040-00000237"));
        assert_eq!(c("r_abc").unwrap_err().ec(), Some("0040-00000237"));
        assert!(c("r_4096").is_ok());
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(100, 100, image::Rgb([9, 9, 9])));
        let out = c("r_10").unwrap().apply(&img).unwrap().into_rgba8();
        assert_eq!(out.dimensions(), (100, 100));
        assert_eq!(out.get_pixel(0, 0).0[3], 0);
        assert_eq!(out.get_pixel(99, 99).0[3], 0);
        assert_eq!(out.get_pixel(50, 0).0[3], 255);
        assert_eq!(out.get_pixel(50, 50).0[3], 255);
    }
}
