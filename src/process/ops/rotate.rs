//! `rotate` (spec §4.6): clockwise by any integer angle in [0, 360]. Right angles are
//! exact pixel moves; other angles grow the canvas to the rotated bounding box
//! (`W' = ceil(|W cosθ| + |H sinθ|)`, `H' = ceil(|W sinθ| + |H cosθ|)`, [decision]) with a
//! transparent background (white for JPG output), sampled bilinearly on premultiplied
//! alpha so edges do not darken.

use std::fmt;

use image::{DynamicImage, RgbaImage};

use super::check_output;
use crate::process::parse::Args;
use crate::process::picture;
use crate::process::{Limits, ProcessError};

/// Typed `rotate` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rotate {
    /// degrees clockwise, [0, 360]
    pub deg: u32,
}

/// Parses `rotate,<deg>`.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Rotate, ProcessError> {
    let deg = a.single_int(0, 360, Some("0040-00000216"), Some("0040-00000217"))?;
    Ok(Rotate { deg: deg as u32 })
}

impl fmt::Display for Rotate {
    /// 360 is written as 0: both mean "no rotation".
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "rotate,{}", self.deg % 360)
    }
}

/// Output size of a `w×h` image rotated by `deg` degrees.
pub(crate) fn rotated_dims(w: u32, h: u32, deg: u32) -> (u64, u64) {
    match deg % 360 {
        0 | 180 => (u64::from(w), u64::from(h)),
        90 | 270 => (u64::from(h), u64::from(w)),
        d => {
            let t = f64::from(d).to_radians();
            let (s, c) = (t.sin().abs(), t.cos().abs());
            let (wf, hf) = (f64::from(w), f64::from(h));
            // The epsilon keeps float noise from adding a whole pixel.
            let nw = (wf * c + hf * s - 1e-9).ceil().max(1.0);
            let nh = (wf * s + hf * c - 1e-9).ceil().max(1.0);
            (nw as u64, nh as u64)
        }
    }
}

impl Rotate {
    /// Applies the rotation to one frame.
    ///
    /// # Errors
    /// Source side > 4096 → `ImageTooLarge` EC `0040-00000006` (spec §2.2).
    pub fn apply(&self, img: &DynamicImage, limits: &Limits) -> Result<DynamicImage, ProcessError> {
        let (w, h) = (img.width(), img.height());
        let deg = self.deg % 360;
        if deg == 0 {
            return Ok(img.clone());
        }
        if w > 4096 || h > 4096 {
            return Err(ProcessError::too_large(
                "The image to rotate must not exceed 4096 pixels per side.",
                Some("0040-00000006"),
            ));
        }
        let (nw, nh) = rotated_dims(w, h, deg);
        check_output(nw, nh, limits)?;
        Ok(match deg {
            90 => img.rotate90(),
            180 => img.rotate180(),
            270 => img.rotate270(),
            _ => DynamicImage::ImageRgba8(rotate_any(&picture::to_rgba(img.clone()), deg, nw as u32, nh as u32)?),
        })
    }
}

fn rotate_any(src: &RgbaImage, deg: u32, nw: u32, nh: u32) -> Result<RgbaImage, ProcessError> {
    let (w, h) = src.dimensions();
    let buf = picture::try_alloc(picture::buf_len(nw, nh, 4)?)?;
    let mut out = RgbaImage::from_raw(nw, nh, buf).ok_or_else(|| ProcessError::internal("rotate buffer"))?;
    let t = f64::from(deg).to_radians();
    let (s, c) = (t.sin(), t.cos());
    let (scx, scy) = (f64::from(w) / 2.0, f64::from(h) / 2.0);
    let (dcx, dcy) = (f64::from(nw) / 2.0, f64::from(nh) / 2.0);
    let raw = src.as_raw();
    let sample = |x: i64, y: i64| -> [f64; 4] {
        if x < 0 || y < 0 || x >= i64::from(w) || y >= i64::from(h) {
            return [0.0; 4];
        }
        let i = ((y as usize) * (w as usize) + x as usize) * 4;
        let a = f64::from(raw[i + 3]) / 255.0;
        [f64::from(raw[i]) * a, f64::from(raw[i + 1]) * a, f64::from(raw[i + 2]) * a, a]
    };
    for (dx, dy, p) in out.enumerate_pixels_mut() {
        // Inverse of a clockwise rotation (y axis points down).
        let x = f64::from(dx) + 0.5 - dcx;
        let y = f64::from(dy) + 0.5 - dcy;
        let sx = x * c + y * s + scx - 0.5;
        let sy = -x * s + y * c + scy - 0.5;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let mut acc = [0.0f64; 4];
        for (ox, oy, wgt) in
            [(0, 0, (1.0 - fx) * (1.0 - fy)), (1, 0, fx * (1.0 - fy)), (0, 1, (1.0 - fx) * fy), (1, 1, fx * fy)]
        {
            if wgt == 0.0 {
                continue;
            }
            let v = sample(x0 + ox, y0 + oy);
            for k in 0..4 {
                acc[k] += v[k] * wgt;
            }
        }
        let a = acc[3];
        if a > 0.0 {
            p.0 = [
                (acc[0] / a).round().clamp(0.0, 255.0) as u8,
                (acc[1] / a).round().clamp(0.0, 255.0) as u8,
                (acc[2] / a).round().clamp(0.0, 255.0) as u8,
                (a * 255.0).round().clamp(0.0, 255.0) as u8,
            ];
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    fn p(s: &str) -> Result<Rotate, ProcessError> {
        parse_args(&Args::new("rotate", s.split(',').filter(|t| !t.is_empty())))
    }
    #[test]
    fn parse_bounds() {
        assert!(p("0").is_ok());
        assert!(p("360").is_ok());
        assert_eq!(p("361").unwrap_err().ec(), Some("0040-00000217"));
        assert_eq!(p("400").unwrap_err().ec(), Some("0040-00000217"));
        assert_eq!(p("-1").unwrap_err().ec(), Some("0040-00000217"));
        assert_eq!(p("abc").unwrap_err().ec(), Some("0040-00000217"));
        assert_eq!(p("").unwrap_err().ec(), Some("0040-00000216"));
        assert_eq!(p("").unwrap_err().code(), "MissingArgument");
        assert_eq!(p("90,200,300").unwrap_err().ec(), Some("0040-00000203"));
        assert_eq!(p("360").unwrap().to_string(), "rotate,0");
    }
    #[test]
    fn dims() {
        assert_eq!(rotated_dims(400, 267, 90), (267, 400));
        assert_eq!(rotated_dims(100, 100, 45), (142, 142));
        assert_eq!(rotated_dims(400, 200, 30), (447, 374));
        let img = DynamicImage::ImageRgb8(image::RgbImage::new(40, 20));
        let out = p("30").unwrap().apply(&img, &Limits::default()).unwrap();
        assert_eq!((out.width(), out.height()), (45, 38));
        assert!(out.color().has_alpha());
        let big = DynamicImage::ImageRgb8(image::RgbImage::new(4097, 1));
        assert_eq!(p("90").unwrap().apply(&big, &Limits::default()).unwrap_err().ec(), Some("0040-00000006"));
    }
}
