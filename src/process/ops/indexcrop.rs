//! `indexcrop` (spec §4.3): cut the image into columns of width `x` (or rows of height
//! `y`, which wins when both are given) and keep slice `i`.

use std::fmt;

use image::DynamicImage;

use crate::process::parse::{number_error, Args};
use crate::process::picture;
use crate::process::ProcessError;

/// Slice direction and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Axis {
    /// Columns of this width.
    X(u32),
    /// Rows of this height.
    Y(u32),
}

/// Typed `indexcrop` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexCrop {
    /// slice size and direction
    pub axis: Axis,
    /// slice index
    pub i: u32,
}

fn size(a: &Args<'_>, key: &str, digit_ec: &'static str) -> Result<Option<u32>, ProcessError> {
    let Some(v) = a.get(key) else { return Ok(None) };
    match v.parse::<i64>() {
        Err(_) => Err(number_error(key, v, 1, 16_384, Some(digit_ec))),
        // x_0 / y_0 → EC 230; the upper bound is the image size, checked at run time.
        Ok(n) if n < 1 || n > i64::from(u32::MAX) => {
            Err(ProcessError::invalid(key, v, "Value must be at least 1", Some("0040-00000230")))
        }
        Ok(n) => Ok(Some(n as u32)),
    }
}

/// Parses `indexcrop` parameters.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<IndexCrop, ProcessError> {
    let x = size(a, "x", "0040-00000230")?;
    let y = size(a, "y", "0040-00000224")?;
    let i = a.int("i", 0, i64::from(u32::MAX), Some("0040-00000229"))?.unwrap_or(0) as u32;
    let axis = match (x, y) {
        (_, Some(y)) => Axis::Y(y),
        (Some(x), None) => Axis::X(x),
        // [inferred] neither given → 400.
        (None, None) => return Err(ProcessError::missing("indexcrop", "x or y", None)),
    };
    Ok(IndexCrop { axis, i })
}

impl fmt::Display for IndexCrop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.axis {
            Axis::X(x) => write!(f, "indexcrop,x_{x},i_{}", self.i),
            Axis::Y(y) => write!(f, "indexcrop,y_{y},i_{}", self.i),
        }
    }
}

impl IndexCrop {
    /// The kept rectangle, or `None` when `i` is past the last slice (image unchanged).
    ///
    /// # Errors
    /// [decision] a slice size larger than the image side → 400.
    pub fn rect(&self, (w, h): (u32, u32)) -> Result<Option<(u32, u32, u32, u32)>, ProcessError> {
        let (len, step) = match self.axis {
            Axis::X(x) => (w, x),
            Axis::Y(y) => (h, y),
        };
        if step > len {
            let key = if matches!(self.axis, Axis::X(_)) { "x" } else { "y" };
            return Err(ProcessError::invalid(
                key,
                &step.to_string(),
                "Value must not exceed the image size",
                Some("0040-00000230"),
            ));
        }
        let n = len.div_ceil(step);
        if self.i >= n {
            return Ok(None);
        }
        let start = self.i * step;
        let size = step.min(len - start);
        Ok(Some(match self.axis {
            Axis::X(_) => (start, 0, size, h),
            Axis::Y(_) => (0, start, w, size),
        }))
    }

    /// Applies the slice to one frame.
    pub fn apply(&self, img: &DynamicImage) -> Result<DynamicImage, ProcessError> {
        Ok(match self.rect((img.width(), img.height()))? {
            Some((x, y, w, h)) => picture::crop(img, x, y, w, h),
            None => img.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    fn p(s: &str) -> Result<IndexCrop, ProcessError> {
        parse_args(&Args::new("indexcrop", s.split(',')))
    }
    #[test]
    fn slices() {
        assert_eq!(p("x_100,i_0").unwrap().rect((400, 267)).unwrap(), Some((0, 0, 100, 267)));
        assert_eq!(p("y_100,i_2").unwrap().rect((400, 267)).unwrap(), Some((0, 200, 400, 67)));
        assert_eq!(p("y_100,i_10").unwrap().rect((400, 267)).unwrap(), None);
        assert_eq!(p("x_100,y_100,i_1").unwrap().rect((400, 267)).unwrap(), Some((0, 100, 400, 100)));
        assert!(p("x_401").unwrap().rect((400, 267)).is_err());
        assert!(p("x_400").unwrap().rect((400, 267)).is_ok());
    }
    #[test]
    fn errors() {
        assert_eq!(p("x_0").unwrap_err().ec(), Some("0040-00000230"));
        assert_eq!(p("y_0").unwrap_err().ec(), Some("0040-00000230"));
        assert_eq!(p("y_abc").unwrap_err().ec(), Some("0040-00000224"));
        assert_eq!(p("x_10,i_abc").unwrap_err().ec(), Some("0040-00000229"));
        assert_eq!(p("x_10,i_-1").unwrap_err().ec(), Some("0040-00000229"));
        assert!(p("i_1").is_err());
        assert_eq!(p("i_3,x_1").unwrap().to_string(), "indexcrop,x_1,i_3");
    }
}
