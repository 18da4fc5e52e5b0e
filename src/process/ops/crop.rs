//! `crop` (spec §4.2): custom crop with gravity origin, offsets, and cut at the edge.

use std::fmt;

use image::DynamicImage;

use super::Gravity;
use crate::process::parse::Args;
use crate::process::picture;
use crate::process::ProcessError;

/// Typed `crop` parameters. `w`/`h` of 0 or absent mean "to the edge" ([decision]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Crop {
    /// crop width, 0 = to the edge
    pub w: u32,
    /// crop height, 0 = to the edge
    pub h: u32,
    /// x offset added to the origin
    pub x: u32,
    /// y offset added to the origin
    pub y: u32,
    /// origin
    pub g: Gravity,
}

/// Parses `crop` parameters; unknown keys (e.g. the `r_1` in Alibaba's SDK tests) are
/// ignored.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Crop, ProcessError> {
    let w = a.int("w", 0, 16_384, Some("0040-00000225"))?.unwrap_or(0) as u32;
    let h = a.int("h", 0, 16_384, Some("0040-00000226"))?.unwrap_or(0) as u32;
    // x/y are bounded by the image at run time; here only non-negative integers.
    let x = a.int("x", 0, i64::from(u32::MAX), None)?.unwrap_or(0) as u32;
    let y = a.int("y", 0, i64::from(u32::MAX), None)?.unwrap_or(0) as u32;
    let g = match a.get("g") {
        None => Gravity::Nw,
        Some(v) => Gravity::parse(v).ok_or_else(|| {
            ProcessError::invalid("g", v, "Value must be one of nw, north, ne, west, center, east, sw, south, se", None)
        })?,
    };
    Ok(Crop { w, h, x, y, g })
}

impl fmt::Display for Crop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "crop,w_{},h_{},x_{},y_{},g_{}", self.w, self.h, self.x, self.y, self.g.as_str())
    }
}

impl Crop {
    /// The rectangle `(x, y, w, h)` cut from a `W×H` image.
    ///
    /// # Errors
    /// `BadRequest` "Advance cut's position is out of image." when the start point is at
    /// or past the right/bottom edge.
    pub fn rect(&self, (iw, ih): (u32, u32)) -> Result<(u32, u32, u32, u32), ProcessError> {
        let (iw, ih) = (i64::from(iw), i64::from(ih));
        let w = if self.w == 0 { iw } else { i64::from(self.w) };
        let h = if self.h == 0 { ih } else { i64::from(self.h) };
        // Origin by the current doc formula; halves by integer division; negative → 0.
        let (ox, oy) = match self.g {
            Gravity::Nw => (0, 0),
            Gravity::North => (iw / 2 - w / 2, 0),
            Gravity::Ne => (iw - w, 0),
            Gravity::West => (0, ih / 2 - h / 2),
            Gravity::Center => (iw / 2 - w / 2, ih / 2 - h / 2),
            Gravity::East => (iw - w, ih / 2 - h / 2),
            Gravity::Sw => (0, ih - h),
            Gravity::South => (iw / 2 - w / 2, ih - h),
            Gravity::Se => (iw - w, ih - h),
        };
        let sx = ox.max(0) + i64::from(self.x);
        let sy = oy.max(0) + i64::from(self.y);
        if sx >= iw || sy >= ih {
            return Err(ProcessError::bad_request("Advance cut's position is out of image.", None));
        }
        let cw = w.min(iw - sx);
        let ch = h.min(ih - sy);
        Ok((sx as u32, sy as u32, cw as u32, ch as u32))
    }

    /// Applies the crop to one frame.
    pub fn apply(&self, img: &DynamicImage) -> Result<DynamicImage, ProcessError> {
        let (x, y, w, h) = self.rect((img.width(), img.height()))?;
        Ok(picture::crop(img, x, y, w, h))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    fn p(s: &str) -> Result<Crop, ProcessError> {
        parse_args(&Args::new("crop", s.split(',')))
    }

    #[test]
    fn examples() {
        assert_eq!(p("x_100,y_50").unwrap().rect((400, 267)).unwrap(), (100, 50, 300, 217));
        assert_eq!(p("x_100,y_50,w_100,h_100").unwrap().rect((400, 267)).unwrap(), (100, 50, 100, 100));
        assert_eq!(p("w_200,h_200,g_se").unwrap().rect((400, 300)).unwrap(), (200, 100, 200, 200));
        assert_eq!(p("w_100,h_100,g_center").unwrap().rect((400, 300)).unwrap(), (150, 100, 100, 100));
        // stray r_1 ignored (SDK test)
        assert_eq!(p("w_100,h_100,x_100,y_100,r_1").unwrap().rect((400, 267)).unwrap(), (100, 100, 100, 100));
        // g_se + offset moves the start by (x, y): here past the corner → error
        assert!(p("w_100,h_100,g_se,x_100,y_100").unwrap().rect((400, 300)).is_err());
        assert_eq!(p("w_100,h_100,g_se,x_50,y_10").unwrap().rect((400, 300)).unwrap(), (350, 210, 50, 90));
    }

    #[test]
    fn out_of_image() {
        let e = p("x_400").unwrap().rect((400, 267)).unwrap_err();
        assert_eq!(e.code(), "BadRequest");
        assert_eq!(e.message(), "Advance cut's position is out of image.");
        assert!(p("x_399").unwrap().rect((400, 267)).is_ok());
        assert!(p("y_267").unwrap().rect((400, 267)).is_err());
    }

    #[test]
    fn ranges() {
        assert!(p("w_0").is_ok());
        assert!(p("w_16384").is_ok());
        assert_eq!(p("w_16385").unwrap_err().ec(), Some("0040-00000225"));
        assert_eq!(p("w_-1").unwrap_err().ec(), Some("0040-00000225"));
        assert_eq!(p("w_abc").unwrap_err().ec(), Some("0040-00000225"));
        assert_eq!(p("h_-1").unwrap_err().ec(), Some("0040-00000226"));
        assert!(p("x_-1").is_err());
        assert!(p("g_middle").is_err());
        assert_eq!(p("g_se,h_10,w_5").unwrap().to_string(), "crop,w_5,h_10,x_0,y_0,g_se");
    }
}
