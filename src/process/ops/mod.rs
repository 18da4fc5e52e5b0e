//! One file per OSS action. Each owns its typed parameters, `parse_args` (range checks,
//! EC codes), a canonical `Display` (fixed key order, defaults explicit, unknown keys
//! dropped) and `apply` (pixels). [`Op`] is the list of pixel steps of a chain; the
//! encoder settings (`format`, `quality`, `interlace`, `auto-orient`) are fields of the
//! pipeline instead, because they apply wherever they appear (spec §1.3).

use std::fmt;

use super::{Limits, ProcessError};

pub(crate) mod auto_orient;
pub(crate) mod average_hue;
pub(crate) mod blur;
pub(crate) mod bright;
pub(crate) mod circle;
pub(crate) mod contrast;
pub(crate) mod crop;
pub(crate) mod format;
pub(crate) mod indexcrop;
pub(crate) mod info;
pub(crate) mod interlace;
pub(crate) mod quality;
pub(crate) mod resize;
pub(crate) mod rotate;
pub(crate) mod rounded_corners;
pub(crate) mod sharpen;
pub(crate) mod watermark;

/// A pixel operation of a chain, in URL order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Op {
    /// `resize`
    Resize(resize::Resize),
    /// `crop`
    Crop(crop::Crop),
    /// `indexcrop`
    IndexCrop(indexcrop::IndexCrop),
    /// `circle`
    Circle(circle::Circle),
    /// `rounded-corners`
    RoundedCorners(rounded_corners::RoundedCorners),
    /// `rotate`
    Rotate(rotate::Rotate),
    /// `blur`
    Blur(blur::Blur),
    /// `bright`
    Bright(bright::Bright),
    /// `contrast`
    Contrast(contrast::Contrast),
    /// `sharpen`
    Sharpen(sharpen::Sharpen),
    /// `watermark`
    Watermark(watermark::Watermark),
}

impl Op {
    /// True when an animated source stays animated through this op (spec §2.4: only
    /// resize by size, crop and watermark keep animation).
    pub fn keeps_animation(&self) -> bool {
        match self {
            Op::Resize(r) => !r.is_percentage(),
            Op::Crop(_) | Op::Watermark(_) => true,
            _ => false,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Op::Resize(p) => p.fmt(f),
            Op::Crop(p) => p.fmt(f),
            Op::IndexCrop(p) => p.fmt(f),
            Op::Circle(p) => p.fmt(f),
            Op::RoundedCorners(p) => p.fmt(f),
            Op::Rotate(p) => p.fmt(f),
            Op::Blur(p) => p.fmt(f),
            Op::Bright(p) => p.fmt(f),
            Op::Contrast(p) => p.fmt(f),
            Op::Sharpen(p) => p.fmt(f),
            Op::Watermark(p) => p.fmt(f),
        }
    }
}

/// OSS output limits (spec §4.1 "Output limits"): each side ≤ 16 384 and area ≤ 4096²,
/// plus the configured `max_output_pixels`. Checked before a buffer of that size exists.
pub(crate) const MAX_SIDE: u64 = 16_384;
/// Largest output area OSS allows.
pub(crate) const MAX_AREA: u64 = 16_777_216;

/// Rejects an output size over the limits (EC `0040-00000007`).
pub(crate) fn check_output(w: u64, h: u64, limits: &Limits) -> Result<(), ProcessError> {
    let area = w.saturating_mul(h);
    if w == 0 || h == 0 {
        return Err(ProcessError::bad_request("The result image would be empty.", None));
    }
    if w > MAX_SIDE || h > MAX_SIDE || area > MAX_AREA || area > limits.max_output_pixels {
        return Err(ProcessError::too_large(
            format!("The result image {w}x{h} exceeds the output limit."),
            Some("0040-00000007"),
        ));
    }
    Ok(())
}

/// `round(a·b / c)` half up, in exact integer arithmetic (spec §4.1 "Rounding").
pub(crate) fn round_mul_div(a: u64, b: u64, c: u64) -> u64 {
    if c == 0 {
        return 0;
    }
    let n = 2u128 * u128::from(a) * u128::from(b) + u128::from(c);
    let v = n / (2 * u128::from(c));
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// Parses a `RRGGBB` colour (no `#`).
pub(crate) fn parse_hex_color(v: &str) -> Option<[u8; 3]> {
    if v.len() != 6 || !v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let n = u32::from_str_radix(v, 16).ok()?;
    Some([(n >> 16) as u8, (n >> 8) as u8, n as u8])
}

/// Gravity of `crop` and `watermark` (3×3 grid).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gravity {
    /// top left
    Nw,
    /// top centre
    North,
    /// top right
    Ne,
    /// middle left
    West,
    /// centre
    Center,
    /// middle right
    East,
    /// bottom left
    Sw,
    /// bottom centre
    South,
    /// bottom right
    Se,
}

impl Gravity {
    /// Parses the OSS spelling.
    pub fn parse(v: &str) -> Option<Self> {
        Some(match v {
            "nw" => Gravity::Nw,
            "north" => Gravity::North,
            "ne" => Gravity::Ne,
            "west" => Gravity::West,
            "center" => Gravity::Center,
            "east" => Gravity::East,
            "sw" => Gravity::Sw,
            "south" => Gravity::South,
            "se" => Gravity::Se,
            _ => return None,
        })
    }
    /// The OSS spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Gravity::Nw => "nw",
            Gravity::North => "north",
            Gravity::Ne => "ne",
            Gravity::West => "west",
            Gravity::Center => "center",
            Gravity::East => "east",
            Gravity::Sw => "sw",
            Gravity::South => "south",
            Gravity::Se => "se",
        }
    }
}
