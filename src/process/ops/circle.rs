//! `circle` (spec §4.4): inscribed circle; output is the bounding square, outside pixels
//! transparent (flattened to white later if the final format is JPG).

use std::fmt;

use image::DynamicImage;

use crate::process::parse::Args;
use crate::process::picture;
use crate::process::ProcessError;

/// Typed `circle` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Circle {
    /// radius, [1, 4096]
    pub r: u32,
}

/// Parses `circle` parameters.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Circle, ProcessError> {
    match a.int("r", 1, 4096, Some("0040-00000233"))? {
        Some(r) => Ok(Circle { r: r as u32 }),
        None => Err(ProcessError::missing("circle", "r", Some("0040-00000233"))),
    }
}

impl fmt::Display for Circle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circle,r_{}", self.r)
    }
}

/// Coverage of a pixel centred at distance `d` from the circle centre, for radius `r`:
/// a one-pixel linear ramp gives an anti-aliased edge.
pub(crate) fn coverage(d: f64, r: f64) -> f64 {
    (r + 0.5 - d).clamp(0.0, 1.0)
}

impl Circle {
    /// [decision] `r_eff = min(r, (min(W,H) − 1) div 2)`, output side `2·r_eff + 1`,
    /// square at `((W − side) div 2, (H − side) div 2)`.
    pub fn geometry(&self, (w, h): (u32, u32)) -> (u32, u32, u32, u32) {
        let r = self.r.min(w.min(h).saturating_sub(1) / 2);
        let side = 2 * r + 1;
        ((w - side) / 2, (h - side) / 2, side, r)
    }

    /// Applies the circle to one frame.
    pub fn apply(&self, img: &DynamicImage) -> Result<DynamicImage, ProcessError> {
        let (x, y, side, r) = self.geometry((img.width(), img.height()));
        let mut out = picture::to_rgba(picture::crop(img, x, y, side, side));
        let c = f64::from(r);
        let rf = f64::from(r);
        for (px, py, p) in out.enumerate_pixels_mut() {
            let dx = f64::from(px) - c;
            let dy = f64::from(py) - c;
            let cov = coverage((dx * dx + dy * dy).sqrt(), rf);
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
    fn geometry_and_parse() {
        let c = |s: &str| parse_args(&Args::new("circle", s.split(',')));
        assert_eq!(c("r_1000").unwrap().geometry((400, 267)), (66, 0, 267, 133));
        assert_eq!(c("r_100").unwrap().geometry((1000, 800)).2, 201);
        assert!(c("r_1").is_ok());
        assert!(c("r_4096").is_ok());
        assert_eq!(c("r_5000").unwrap_err().ec(), Some("0040-00000233"));
        assert_eq!(c("r_0").unwrap_err().ec(), Some("0040-00000233"));
        assert_eq!(c("r_abc").unwrap_err().ec(), Some("0040-00000233"));
        assert!(c("").is_err());
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(11, 9, image::Rgb([9, 9, 9])));
        let out = c("r_100").unwrap().apply(&img).unwrap().into_rgba8();
        assert_eq!(out.dimensions(), (9, 9));
        assert_eq!(out.get_pixel(0, 0).0[3], 0);
        assert_eq!(out.get_pixel(4, 4).0[3], 255);
    }
}
