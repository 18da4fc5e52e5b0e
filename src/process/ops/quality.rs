//! `quality` (spec §4.13): `q` relative to the source JPEG quality, `Q` absolute but never
//! above the source quality; the bare form `quality,80` is treated as `q` ([decision]).
//! Only JPG and WebP outputs use it.

use std::fmt;

use crate::process::parse::{number_error, Args};
use crate::process::ProcessError;

/// Typed `quality` parameters (after `Q` beats `q`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Quality {
    /// `q_<n>`: relative.
    Relative(u8),
    /// `Q_<n>`: absolute, capped by the source quality.
    Absolute(u8),
}

/// Parses `quality`.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Quality, ProcessError> {
    let q_abs = a.int("Q", 1, 100, Some("0040-00000308"))?;
    let q_rel = a.int("q", 1, 100, Some("0040-00000309"))?;
    let bare = match a.positional.last() {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if (1..=100).contains(&n) => Some(n),
            _ => return Err(number_error("quality", v, 1, 100, Some("0040-00000310"))),
        },
    };
    if let Some(q) = q_abs {
        return Ok(Quality::Absolute(q as u8));
    }
    match q_rel.or(bare) {
        Some(q) => Ok(Quality::Relative(q as u8)),
        None => Err(ProcessError::missing("quality", "q or Q", None)),
    }
}

impl fmt::Display for Quality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Quality::Relative(q) => write!(f, "quality,q_{q}"),
            Quality::Absolute(q) => write!(f, "quality,Q_{q}"),
        }
    }
}

/// Default JPEG quality when neither the request nor a JPEG source gives one.
pub(crate) const DEFAULT_JPEG: u8 = 85;
/// Default WebP quality.
pub(crate) const DEFAULT_WEBP: u8 = 80;

/// The encoder quality for an output, given the request and the source.
///
/// `src_jpeg_q` is the estimated quality of a JPEG source (`None` for other sources,
/// which count as quality 100). Without a `quality` op, JPEG→JPEG keeps the source
/// quality and other encodes use the defaults.
pub(crate) fn effective(req: Option<Quality>, src_jpeg_q: Option<u8>, out_is_webp: bool) -> u8 {
    let src = src_jpeg_q.unwrap_or(100).clamp(1, 100);
    let v = match req {
        Some(Quality::Absolute(q)) => q.min(src),
        // Relative only for JPEG sources; otherwise q behaves like Q against 100.
        Some(Quality::Relative(q)) => match src_jpeg_q {
            Some(_) => ((u32::from(src) * u32::from(q) + 50) / 100) as u8,
            None => q,
        },
        None => match (out_is_webp, src_jpeg_q) {
            (true, _) => DEFAULT_WEBP,
            (false, Some(s)) => s,
            (false, None) => DEFAULT_JPEG,
        },
    };
    v.clamp(1, 100)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    fn p(s: &str) -> Result<Quality, ProcessError> {
        parse_args(&Args::new("quality", s.split(',').filter(|t| !t.is_empty())))
    }
    #[test]
    fn parse_bounds() {
        assert_eq!(p("q_1"), Ok(Quality::Relative(1)));
        assert_eq!(p("q_100"), Ok(Quality::Relative(100)));
        assert_eq!(p("q_0").unwrap_err().ec(), Some("0040-00000309"));
        assert_eq!(p("q_101").unwrap_err().ec(), Some("0040-00000309"));
        assert_eq!(p("Q_0").unwrap_err().ec(), Some("0040-00000308"));
        assert_eq!(p("Q_101").unwrap_err().ec(), Some("0040-00000308"));
        assert_eq!(p("101").unwrap_err().ec(), Some("0040-00000310"));
        let e = p("image").unwrap_err();
        assert_eq!(e.message(), "The value: image of parameter: quality is invalid.reason:Value must be digit");
        assert_eq!(p("80"), Ok(Quality::Relative(80)));
        assert_eq!(p("q_50,Q_90"), Ok(Quality::Absolute(90)));
        assert!(p("").is_err());
    }
    #[test]
    fn semantics() {
        // spec: source 100 → q_90 gives 90; source 80 → 72
        assert_eq!(effective(Some(Quality::Relative(90)), Some(100), false), 90);
        assert_eq!(effective(Some(Quality::Relative(90)), Some(80), false), 72);
        // Q: source 95 → Q_90 gives 90; source 80 → stays 80
        assert_eq!(effective(Some(Quality::Absolute(90)), Some(95), false), 90);
        assert_eq!(effective(Some(Quality::Absolute(90)), Some(80), false), 80);
        // WebP source: q acts like Q
        assert_eq!(effective(Some(Quality::Relative(60)), None, true), 60);
        assert_eq!(effective(None, Some(92), false), 92);
        assert_eq!(effective(None, Some(92), true), DEFAULT_WEBP);
        assert_eq!(effective(None, None, false), DEFAULT_JPEG);
    }
}
