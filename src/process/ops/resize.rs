//! `resize` (spec §4.1): modes lfit/mfit/fill/pad/fixed, targets w/h, l/s, p, `limit`
//! and the pad `color`. Sizes follow the spec formulas exactly, with half-up rounding in
//! integer arithmetic, and every computed side is at least 1.

use std::fmt;

use image::DynamicImage;

use super::{check_output, parse_hex_color, round_mul_div};
use crate::process::parse::Args;
use crate::process::picture::{self, SrcRegion};
use crate::process::{Limits, ProcessError};

/// Resize mode (`m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Largest proportional image inside the box (default).
    Lfit,
    /// Smallest proportional image covering the box.
    Mfit,
    /// mfit, then centre crop to the box.
    Fill,
    /// lfit, then centred on a box-sized canvas of `color`.
    Pad,
    /// Stretch to the box.
    Fixed,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::Lfit => "lfit",
            Mode::Mfit => "mfit",
            Mode::Fill => "fill",
            Mode::Pad => "pad",
            Mode::Fixed => "fixed",
        }
    }
}

/// What the size is derived from, after the precedence rule w/h > l/s > p.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    /// `w` and/or `h`.
    Box { w: Option<u32>, h: Option<u32> },
    /// `l` and/or `s`.
    LongShort { l: Option<u32>, s: Option<u32> },
    /// `p` percent.
    Percent(u32),
}

/// Typed `resize` parameters.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Resize {
    /// `m`
    pub mode: Mode,
    /// Effective target (lower-precedence keys already dropped).
    pub target: Target,
    /// `limit_1`: never enlarge.
    pub limit: bool,
    /// `color` for pad.
    pub color: [u8; 3],
}

/// Parses `resize` parameters.
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Resize, ProcessError> {
    let mode = match a.get("m") {
        None | Some("lfit") => Mode::Lfit,
        Some("mfit") => Mode::Mfit,
        Some("fill") => Mode::Fill,
        Some("pad") => Mode::Pad,
        Some("fixed") => Mode::Fixed,
        Some(v) => {
            return Err(ProcessError::invalid(
                "m",
                v,
                "Value must be one of lfit, mfit, fill, pad, fixed",
                Some("0040-00000311"),
            ))
        }
    };
    // `w_0,h_0` has its own EC (spec §4.1), checked before the per-key ranges.
    if a.get("w") == Some("0") && a.get("h") == Some("0") {
        return Err(ProcessError::invalid("w", "0", "w and h cannot both be 0", Some("0040-00000321")));
    }
    let side = |k: &str, ec: &'static str| -> Result<Option<u32>, ProcessError> {
        Ok(a.int(k, 1, 16_384, Some(ec))?.map(|v| v as u32))
    };
    let w = side("w", "0040-00000312")?;
    let h = side("h", "0040-00000313")?;
    let l = side("l", "0040-00000314")?;
    let s = side("s", "0040-00000315")?;
    let p = a.int("p", 1, 1000, Some("0040-00000317"))?.map(|v| v as u32);
    let limit = match a.get("limit") {
        None | Some("1") => true,
        Some("0") => false,
        Some(v) => return Err(ProcessError::invalid("limit", v, "Value must be 0 or 1", Some("0040-00000319"))),
    };
    let color = match a.get("color") {
        None => [255, 255, 255],
        Some(v) => parse_hex_color(v).ok_or_else(|| {
            ProcessError::invalid("color", v, "Value must be 6 hex digits RRGGBB", Some("0040-00000318"))
        })?,
    };
    // Precedence (spec §4.1): w/h, else l/s, else p; the ignored keys are dropped so that
    // the canonical form does not depend on them.
    let target = if w.is_some() || h.is_some() {
        Target::Box { w, h }
    } else if l.is_some() || s.is_some() {
        Target::LongShort { l, s }
    } else if let Some(p) = p {
        Target::Percent(p)
    } else {
        return Err(ProcessError::missing("resize", "w, h, l, s or p", Some("0040-00000322")));
    };
    Ok(Resize { mode, target, limit, color })
}

impl fmt::Display for Resize {
    /// `resize,m_<m>,w_..,h_..|l_..,s_..|p_..,limit_<0|1>[,color_RRGGBB]`; `color` only
    /// for `m_pad`, where it matters.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "resize,m_{}", self.mode.as_str())?;
        match self.target {
            Target::Box { w, h } => {
                if let Some(w) = w {
                    write!(f, ",w_{w}")?;
                }
                if let Some(h) = h {
                    write!(f, ",h_{h}")?;
                }
            }
            Target::LongShort { l, s } => {
                if let Some(l) = l {
                    write!(f, ",l_{l}")?;
                }
                if let Some(s) = s {
                    write!(f, ",s_{s}")?;
                }
            }
            Target::Percent(p) => write!(f, ",p_{p}")?,
        }
        write!(f, ",limit_{}", u8::from(self.limit))?;
        if self.mode == Mode::Pad {
            let [r, g, b] = self.color;
            write!(f, ",color_{r:02X}{g:02X}{b:02X}")?;
        }
        Ok(())
    }
}

/// What `resize` does to a `W×H` source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Plan {
    /// `limit_1` guard triggered: keep the source size (no crop, no pad).
    Pass,
    /// Scale to `w×h`.
    Scale { w: u32, h: u32 },
    /// Scale to `sw×sh` (mfit), then centre-crop `w×h`.
    Fill { sw: u32, sh: u32, w: u32, h: u32 },
    /// Scale to `sw×sh` (lfit), then centre on a `w×h` canvas.
    Pad { sw: u32, sh: u32, w: u32, h: u32 },
}

impl Plan {
    /// The output size for a `W×H` source.
    pub fn out_dims(&self, src: (u32, u32)) -> (u32, u32) {
        match *self {
            Plan::Pass => src,
            Plan::Scale { w, h } | Plan::Fill { w, h, .. } | Plan::Pad { w, h, .. } => (w, h),
        }
    }
    /// The size the source is resampled to (before crop/pad); used to pick the JPEG
    /// shrink-on-load factor.
    pub fn scaled_dims(&self, src: (u32, u32)) -> (u32, u32) {
        match *self {
            Plan::Pass => src,
            Plan::Scale { w, h } => (w, h),
            Plan::Fill { sw, sh, .. } | Plan::Pad { sw, sh, .. } => (sw, sh),
        }
    }
}

fn clamp_side(v: u64) -> u64 {
    v.max(1)
}

impl Resize {
    /// True for `p`-based resizes (they make animations static, spec §2.4).
    pub fn is_percentage(&self) -> bool {
        matches!(self.target, Target::Percent(_))
    }

    /// Computes the plan for a `W×H` source (spec formulas). `never_enlarge` forces the
    /// `limit_1` behaviour (GIF sources are never enlarged, spec §4.1).
    ///
    /// # Errors
    /// `ImageTooLarge` (EC `0040-00000007`) when the result exceeds the output limits.
    pub fn plan(&self, src: (u32, u32), never_enlarge: bool, limits: &Limits) -> Result<Plan, ProcessError> {
        let (sw, sh) = (u64::from(src.0.max(1)), u64::from(src.1.max(1)));
        // Proportional fit of `sw×sh` in a `bw×bh` box: `cover` = mfit, else lfit.
        let fit = |bw: u64, bh: u64, cover: bool| -> (u64, u64) {
            // w/W ≤ h/H  ⇔  w·H ≤ h·W
            let width_bound = (bw * sh <= bh * sw) != cover || (bw * sh == bh * sw);
            if width_bound {
                (bw, clamp_side(round_mul_div(sh, bw, sw)))
            } else {
                (clamp_side(round_mul_div(sw, bh, sh)), bh)
            }
        };
        let by_width = |w: u64| (w, clamp_side(round_mul_div(sh, w, sw)));
        let by_height = |h: u64| (clamp_side(round_mul_div(sw, h, sh)), h);

        // (scaled size, final box, kind)
        enum K {
            Scale,
            Fill,
            Pad,
        }
        let boxed = |bw: u64, bh: u64, mode: Mode| -> ((u64, u64), (u64, u64), K) {
            match mode {
                Mode::Lfit => (fit(bw, bh, false), (0, 0), K::Scale),
                Mode::Mfit => (fit(bw, bh, true), (0, 0), K::Scale),
                Mode::Fill => (fit(bw, bh, true), (bw, bh), K::Fill),
                Mode::Pad => (fit(bw, bh, false), (bw, bh), K::Pad),
                Mode::Fixed => ((bw, bh), (0, 0), K::Scale),
            }
        };
        let (scaled, boxdims, kind) = match self.target {
            Target::Percent(p) => {
                // p is not subject to `limit` (spec §4.1 [inferred]).
                let w = clamp_side(round_mul_div(sw, u64::from(p), 100));
                let h = clamp_side(round_mul_div(sh, u64::from(p), 100));
                check_output(w, h, limits)?;
                return Ok(Plan::Scale { w: w as u32, h: h as u32 });
            }
            Target::Box { w: Some(w), h: Some(h) } => boxed(u64::from(w), u64::from(h), self.mode),
            Target::Box { w, h } => {
                let given = u64::from(w.or(h).unwrap_or(1));
                match self.mode {
                    // One side for lfit/mfit: scale proportionally by that side.
                    Mode::Lfit | Mode::Mfit => {
                        let s = if w.is_some() { by_width(given) } else { by_height(given) };
                        (s, (0, 0), K::Scale)
                    }
                    // fill/pad/fixed: the missing side takes the same value (square box).
                    m => boxed(given, given, m),
                }
            }
            Target::LongShort { l, s } => match (l, s) {
                (Some(l), None) => {
                    let l = u64::from(l);
                    (if sw >= sh { by_width(l) } else { by_height(l) }, (0, 0), K::Scale)
                }
                (None, Some(s)) => {
                    let s = u64::from(s);
                    (if sw <= sh { by_width(s) } else { by_height(s) }, (0, 0), K::Scale)
                }
                // [decision] both: `l` goes to the longer source side, `s` to the shorter,
                // then the mode applies as with w/h.
                (Some(l), Some(s)) => {
                    let (l, s) = (u64::from(l), u64::from(s));
                    let (bw, bh) = if sw >= sh { (l, s) } else { (s, l) };
                    boxed(bw, bh, self.mode)
                }
                (None, None) => return Err(ProcessError::missing("resize", "l or s", Some("0040-00000322"))),
            },
        };
        // [decision] limit_1: "larger than the source" = the scaled size (before crop/pad)
        // exceeds the source on either side; the image then passes through unchanged.
        if (self.limit || never_enlarge) && (scaled.0 > sw || scaled.1 > sh) {
            return Ok(Plan::Pass);
        }
        let (ow, oh) = match kind {
            K::Scale => scaled,
            K::Fill | K::Pad => boxdims,
        };
        check_output(ow, oh, limits)?;
        // The pad/fill intermediate is never allocated at full size when it is larger
        // than the box (fill resamples only the visible region), but lfit inside a pad box
        // is ≤ the box anyway.
        let (s0, s1, o0, o1) = (scaled.0 as u32, scaled.1 as u32, ow as u32, oh as u32);
        Ok(match kind {
            K::Scale => Plan::Scale { w: s0, h: s1 },
            K::Fill => Plan::Fill { sw: s0, sh: s1, w: o0, h: o1 },
            K::Pad => Plan::Pad { sw: s0, sh: s1, w: o0, h: o1 },
        })
    }

    /// Applies a plan computed for a `logical` source size to `img`, which may be smaller
    /// than `logical` when the JPEG was shrunk on load (the plan's sizes still follow the
    /// spec formulas on the stored size).
    pub fn apply_plan(
        &self,
        img: &DynamicImage,
        plan: Plan,
        logical: (u32, u32),
    ) -> Result<DynamicImage, ProcessError> {
        match plan {
            Plan::Pass => picture::resample(img, logical.0, logical.1, None),
            Plan::Scale { w, h } => picture::resample(img, w, h, None),
            Plan::Fill { sw, sh, w, h } => {
                // Crop offset in scaled coordinates: (mfit − box) div 2 (spec [decision]),
                // mapped back to source pixels so only the visible region is resampled.
                let fx = f64::from(img.width()) / f64::from(sw);
                let fy = f64::from(img.height()) / f64::from(sh);
                let ox = f64::from((sw - w) / 2);
                let oy = f64::from((sh - h) / 2);
                let (left, top) = (ox * fx, oy * fy);
                // Clamped to the image: in floating point, 31/30 * 30 is 31.000000000000004,
                // and a region a hair past the edge is refused by the resizer.
                let region: SrcRegion = (
                    left,
                    top,
                    (f64::from(w) * fx).min(f64::from(img.width()) - left),
                    (f64::from(h) * fy).min(f64::from(img.height()) - top),
                );
                picture::resample(img, w, h, Some(region))
            }
            Plan::Pad { sw, sh, w, h } => {
                let scaled = picture::resample(img, sw, sh, None)?;
                let [r, g, b] = self.color;
                // [decision] RGBA sources are padded with the opaque colour.
                let mut canvas = picture::canvas(w, h, scaled.color().has_alpha(), [r, g, b, 255])?;
                let (x, y) = ((w - sw) / 2, (h - sh) / 2);
                image::imageops::replace(&mut canvas, &scaled, i64::from(x), i64::from(y));
                Ok(canvas)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::process::parse::Args;

    fn p(s: &str) -> Result<Resize, ProcessError> {
        parse_args(&Args::new("resize", s.split(',')))
    }
    fn dims(s: &str, src: (u32, u32)) -> (u32, u32) {
        let r = p(s).unwrap();
        r.plan(src, false, &Limits::default()).unwrap().out_dims(src)
    }

    #[test]
    fn worked_examples_200x100() {
        let s = (200, 100);
        assert_eq!(dims("w_150,h_80,m_lfit", s), (150, 75));
        assert_eq!(dims("w_150,h_80,m_mfit", s), (160, 80));
        assert_eq!(dims("w_150,h_80,m_fill", s), (150, 80));
        assert_eq!(dims("w_150,h_80,m_pad", s), (150, 80));
        assert_eq!(dims("w_150,h_80,m_fixed", s), (150, 80));
        assert_eq!(dims("m_fixed,h_100", s), (100, 100));
        // pad inner size
        let plan = p("w_150,h_80,m_pad").unwrap().plan(s, false, &Limits::default()).unwrap();
        assert_eq!(plan, Plan::Pad { sw: 150, sh: 75, w: 150, h: 80 });
        let plan = p("w_150,h_80,m_fill").unwrap().plan(s, false, &Limits::default()).unwrap();
        assert_eq!(plan, Plan::Fill { sw: 160, sh: 80, w: 150, h: 80 });
    }

    #[test]
    fn worked_examples_400x300() {
        let s = (400, 300);
        assert_eq!(dims("h_100,w_300,m_lfit", s), (133, 100));
        assert_eq!(dims("m_fixed,h_100,w_100", s), (100, 100));
        assert_eq!(dims("m_fill,h_100,w_100", s), (100, 100));
        assert_eq!(dims("m_pad,h_100,w_100,color_FF0000", s), (100, 100));
        let plan = p("m_pad,h_100,w_100").unwrap().plan(s, false, &Limits::default()).unwrap();
        assert_eq!(plan, Plan::Pad { sw: 100, sh: 75, w: 100, h: 100 });
        assert_eq!(dims("p_50", s), (200, 150));
        let e = p("w_16384,limit_0").unwrap().plan(s, false, &Limits::default()).unwrap_err();
        assert_eq!(e.ec(), Some("0040-00000007"));
        assert_eq!(dims("m_fixed,w_4096,h_4096,limit_0", s), (4096, 4096));
        let e = p("m_fixed,w_5000,h_5000,limit_0").unwrap().plan(s, false, &Limits::default()).unwrap_err();
        assert_eq!((e.code(), e.ec()), ("ImageTooLarge", Some("0040-00000007")));
    }

    #[test]
    fn worked_examples_400x267() {
        let s = (400, 267);
        assert_eq!(dims("w_200", s), (200, 134));
        assert_eq!(dims("m_lfit,w_100,h_100", s), (100, 67));
        assert_eq!(dims("m_mfit,w_100,h_100", s), (150, 100));
        assert_eq!(dims("m_fixed,w_100,h_100", s), (100, 100));
        assert_eq!(dims("l_100", s), (100, 67));
        assert_eq!(dims("s_100", s), (150, 100));
        // limit: w_500 keeps the source, limit_0 enlarges.
        assert_eq!(dims("w_500", s), (400, 267));
        assert_eq!(dims("w_500,limit_0", s), (500, 334));
        // p ignored when w/h present
        assert_eq!(dims("w_200,p_10", s), (200, 134));
        // p > 100 enlarges regardless of limit
        assert_eq!(dims("p_200", s), (800, 534));
    }

    #[test]
    fn gif_never_enlarged() {
        let r = p("w_500,limit_0").unwrap();
        assert_eq!(r.plan((400, 267), true, &Limits::default()).unwrap(), Plan::Pass);
    }

    #[test]
    fn l_and_s_box() {
        // portrait source: l → height, s → width
        assert_eq!(dims("l_200,s_100,m_fixed", (300, 600)), (100, 200));
        assert_eq!(dims("l_100", (267, 400)), (67, 100));
    }

    #[test]
    fn ranges_and_ecs() {
        let ec = |s: &str| p(s).unwrap_err().ec();
        for (k, code) in [("w", "312"), ("h", "313"), ("l", "314"), ("s", "315")] {
            assert!(p(&format!("{k}_1")).is_ok());
            assert!(p(&format!("{k}_16384")).is_ok());
            let want = format!("0040-00000{code}");
            assert_eq!(ec(&format!("{k}_0")), Some(want.as_str()));
            assert_eq!(ec(&format!("{k}_16385")), Some(want.as_str()));
            assert_eq!(ec(&format!("{k}_abc")), Some(want.as_str()));
        }
        assert!(p("p_1").is_ok());
        assert!(p("p_1000").is_ok());
        assert_eq!(ec("p_0"), Some("0040-00000317"));
        assert_eq!(ec("p_1001"), Some("0040-00000317"));
        assert_eq!(ec("w_100,m_abc"), Some("0040-00000311"));
        assert_eq!(ec("w_100,limit_3"), Some("0040-00000319"));
        assert_eq!(ec("w_100,color_AABBCCDD"), Some("0040-00000318"));
        assert_eq!(ec("w_100,color_GGGGGG"), Some("0040-00000318"));
        assert_eq!(ec("w_0,h_0"), Some("0040-00000321"));
        let e = p("m_lfit").unwrap_err();
        assert_eq!((e.code(), e.ec()), ("MissingArgument", Some("0040-00000322")));
        let e = p("w_abc").unwrap_err();
        assert_eq!(e.message(), "The value: abc of parameter: w is invalid.reason:Value must be digit");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn canonical() {
        assert_eq!(p("w_100,h_50").unwrap().to_string(), "resize,m_lfit,w_100,h_50,limit_1");
        assert_eq!(p("h_50,m_lfit,w_100,limit_1,zz_9").unwrap().to_string(), "resize,m_lfit,w_100,h_50,limit_1");
        assert_eq!(p("w_100,w_200").unwrap().to_string(), "resize,m_lfit,w_200,limit_1");
        assert_eq!(p("m_pad,w_10,color_ff0000").unwrap().to_string(), "resize,m_pad,w_10,limit_1,color_FF0000");
        assert_eq!(p("w_10,color_ff0000").unwrap().to_string(), "resize,m_lfit,w_10,limit_1");
        assert_eq!(p("w_10,p_50,l_5").unwrap().to_string(), "resize,m_lfit,w_10,limit_1");
    }
}
