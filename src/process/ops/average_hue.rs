//! `average-hue` (spec §4.17): `{"RGB": "0xrrggbb"}`.
//!
//! [decision] the FAQ's "dominant tone" algorithm: (1) the average hue of the image
//! (circular mean, weighted by chroma so greys do not vote); (2) the pixels whose hue
//! differs from it by more than [`HUE_THRESHOLD`] degrees; (3) their mean colour. If no
//! pixel passes (or the image has no chroma at all), the plain mean colour. The image is
//! first reduced to at most 256 px per side, which changes the result by well under one
//! level and bounds the cost.

use image::DynamicImage;

use crate::process::picture;
use crate::process::ProcessError;

/// Hue distance, in degrees, above which a pixel counts for the dominant tone.
pub(crate) const HUE_THRESHOLD: f64 = 30.0;

fn hue_chroma(r: f64, g: f64, b: f64) -> (f64, f64) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let c = max - min;
    if c <= 0.0 {
        return (0.0, 0.0);
    }
    let h = if max == r {
        ((g - b) / c).rem_euclid(6.0)
    } else if max == g {
        (b - r) / c + 2.0
    } else {
        (r - g) / c + 4.0
    };
    (h * 60.0, c)
}

/// The dominant colour of one frame as `(r, g, b)`.
pub(crate) fn dominant(img: &DynamicImage) -> Result<[u8; 3], ProcessError> {
    let (w, h) = (img.width(), img.height());
    let small = if w.max(h) > 256 {
        let s = 256.0 / f64::from(w.max(h));
        let nw = ((f64::from(w) * s).round() as u32).max(1);
        let nh = ((f64::from(h) * s).round() as u32).max(1);
        picture::resample(img, nw, nh, None)?
    } else {
        img.clone()
    };
    let rgba = picture::to_rgba(small);
    let px: Vec<[f64; 3]> = rgba
        .pixels()
        .filter(|p| p.0[3] > 0)
        .map(|p| [f64::from(p.0[0]), f64::from(p.0[1]), f64::from(p.0[2])])
        .collect();
    let mean = |set: &mut dyn Iterator<Item = &[f64; 3]>| -> Option<[u8; 3]> {
        let (mut s, mut n) = ([0.0f64; 3], 0.0f64);
        for p in set {
            for k in 0..3 {
                s[k] += p[k];
            }
            n += 1.0;
        }
        (n > 0.0).then(|| [0, 1, 2].map(|k| (s[k] / n).round().clamp(0.0, 255.0) as u8))
    };
    let plain = mean(&mut px.iter()).unwrap_or([255, 255, 255]);
    let (mut sx, mut sy) = (0.0f64, 0.0f64);
    let hues: Vec<(f64, f64)> = px.iter().map(|p| hue_chroma(p[0], p[1], p[2])).collect();
    for &(hdeg, c) in &hues {
        sx += c * hdeg.to_radians().cos();
        sy += c * hdeg.to_radians().sin();
    }
    if sx.hypot(sy) < 1e-9 {
        return Ok(plain);
    }
    let avg = sy.atan2(sx).to_degrees().rem_euclid(360.0);
    let mut selected = px.iter().zip(hues.iter()).filter_map(|(p, &(hdeg, c))| {
        let d = (hdeg - avg).abs();
        let d = d.min(360.0 - d);
        (c > 0.0 && d > HUE_THRESHOLD).then_some(p)
    });
    Ok(mean(&mut selected).unwrap_or(plain))
}

/// The JSON answer for one frame.
pub(crate) fn compute(img: &DynamicImage) -> Result<Vec<u8>, ProcessError> {
    let [r, g, b] = dominant(img)?;
    Ok(format!("{{\"RGB\":\"0x{r:02x}{g:02x}{b:02x}\"}}").into_bytes())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn uniform_and_grey() {
        let img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([92, 120, 59])));
        assert_eq!(compute(&img).unwrap(), b"{\"RGB\":\"0x5c783b\"}");
        let grey = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([10, 10, 10])));
        assert_eq!(dominant(&grey).unwrap(), [10, 10, 10]);
    }
}
