//! `blur` (spec §4.8): Gaussian blur with kernel radius `r` and standard deviation `s`,
//! both in [1, 50], as a separable convolution (alpha premultiplied so transparent pixels
//! do not bleed colour).

use std::fmt;

use image::DynamicImage;

use crate::process::parse::Args;
use crate::process::picture;
use crate::process::{ProcessError, RunContext};

/// Typed `blur` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Blur {
    /// kernel radius
    pub r: u32,
    /// standard deviation
    pub s: u32,
}

/// Parses `blur`; [decision] both `r` and `s` are required (every doc example has both).
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Blur, ProcessError> {
    let r = a.int("r", 1, 50, Some("0040-00000241"))?;
    let s = a.int("s", 1, 50, Some("0040-00000242"))?;
    match (r, s) {
        (Some(r), Some(s)) => Ok(Blur { r: r as u32, s: s as u32 }),
        (None, _) => Err(ProcessError::missing("blur", "r", Some("0040-00000241"))),
        (_, None) => Err(ProcessError::missing("blur", "s", Some("0040-00000242"))),
    }
}

impl fmt::Display for Blur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "blur,r_{},s_{}", self.r, self.s)
    }
}

/// Normalised 1-D Gaussian kernel of radius `r` and sigma `s`.
pub(crate) fn kernel(r: u32, s: f64) -> Vec<f32> {
    let r = r as i64;
    let mut k: Vec<f32> = (-r..=r).map(|i| (-((i * i) as f64) / (2.0 * s * s)).exp() as f32).collect();
    let sum: f32 = k.iter().sum();
    for v in &mut k {
        *v /= sum;
    }
    k
}

/// Separable convolution of an RGB8/RGBA8 image with a symmetric kernel (edges clamped).
///
/// The cost grows with the kernel (up to 101 taps), so the deadline and the cancel flag
/// are checked every 64 rows: a large blur cannot run far past the request's time budget,
/// nor on after its last client left.
pub(crate) fn convolve(img: &DynamicImage, k: &[f32], ctx: &RunContext<'_>) -> Result<DynamicImage, ProcessError> {
    let check = |row: usize| if row % 64 == 0 { ctx.check() } else { Ok(()) };
    let (w, h) = (img.width() as usize, img.height() as usize);
    let alpha = img.color().has_alpha();
    let ch = if alpha { 4 } else { 3 };
    let src = img.as_bytes();
    let r = (k.len() / 2) as i64;
    // Work in f32, premultiplied when there is alpha.
    let n = picture::buf_len(w as u32, h as u32, ch)?;
    let mut a: Vec<f32> = Vec::new();
    a.try_reserve_exact(n).map_err(|_| ProcessError::too_large("Not enough memory.", None))?;
    for px in src.chunks_exact(ch) {
        let m = if alpha { f32::from(px[3]) / 255.0 } else { 1.0 };
        a.extend_from_slice(&[f32::from(px[0]) * m, f32::from(px[1]) * m, f32::from(px[2]) * m]);
        if alpha {
            a.push(f32::from(px[3]));
        }
    }
    let mut b = vec![0f32; n];
    // Horizontal pass a → b.
    for y in 0..h {
        check(y)?;
        for x in 0..w {
            for c in 0..ch {
                let mut acc = 0f32;
                for (i, kv) in k.iter().enumerate() {
                    let sx = (x as i64 + i as i64 - r).clamp(0, w as i64 - 1) as usize;
                    acc += a[(y * w + sx) * ch + c] * kv;
                }
                b[(y * w + x) * ch + c] = acc;
            }
        }
    }
    // Vertical pass b → a.
    for y in 0..h {
        check(y)?;
        for x in 0..w {
            for c in 0..ch {
                let mut acc = 0f32;
                for (i, kv) in k.iter().enumerate() {
                    let sy = (y as i64 + i as i64 - r).clamp(0, h as i64 - 1) as usize;
                    acc += b[(sy * w + x) * ch + c] * kv;
                }
                a[(y * w + x) * ch + c] = acc;
            }
        }
    }
    let mut out = picture::try_alloc(n)?;
    for (o, v) in out.chunks_exact_mut(ch).zip(a.chunks_exact(ch)) {
        let m = if alpha { v[3] / 255.0 } else { 1.0 };
        for c in 0..3 {
            let val = if m > 0.0 { v[c] / m } else { 0.0 };
            o[c] = val.round().clamp(0.0, 255.0) as u8;
        }
        if alpha {
            o[3] = v[3].round().clamp(0.0, 255.0) as u8;
        }
    }
    picture::from_raw(w as u32, h as u32, alpha, out)
}

impl Blur {
    /// Applies the blur to one frame.
    pub fn apply(&self, img: &DynamicImage, ctx: &RunContext<'_>) -> Result<DynamicImage, ProcessError> {
        convolve(img, &kernel(self.r, f64::from(self.s)), ctx)
    }

    /// Kernel taps per pass (2r+1): with the pixel count, what the blur costs.
    pub fn taps(&self) -> u64 {
        2 * u64::from(self.r) + 1
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn bounds() {
        let p = |s: &str| parse_args(&Args::new("blur", s.split(',')));
        assert!(p("r_1,s_1").is_ok() && p("r_50,s_50").is_ok());
        assert_eq!(p("r_51,s_2").unwrap_err().ec(), Some("0040-00000241"));
        assert_eq!(p("r_200,s_2").unwrap_err().ec(), Some("0040-00000241"));
        assert_eq!(p("r_0,s_2").unwrap_err().ec(), Some("0040-00000241"));
        assert_eq!(p("r_3,s_abc").unwrap_err().ec(), Some("0040-00000242"));
        assert_eq!(p("r_3,s_51").unwrap_err().ec(), Some("0040-00000242"));
        assert_eq!(p("r_3").unwrap_err().code(), "MissingArgument");
        assert_eq!(p("s_2,r_3").unwrap().to_string(), "blur,r_3,s_2");
        let mut img = image::RgbImage::new(9, 9);
        img.put_pixel(4, 4, image::Rgb([255, 255, 255]));
        let out = p("r_3,s_2")
            .unwrap()
            .apply(&DynamicImage::ImageRgb8(img), &RunContext::new(&Default::default()))
            .unwrap()
            .into_rgb8();
        assert!(out.get_pixel(4, 4).0[0] < 255 && out.get_pixel(5, 4).0[0] > 0);
    }
}
