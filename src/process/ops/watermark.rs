//! `watermark` (spec §4.15): parsed and validated here so chains with watermarks get the
//! right 400s and a stable cache key; drawing is a separate issue, so [`run`] answers
//! 501 `NotImplemented` for a chain that contains one.
//!
//! [`run`]: crate::process::run

use std::fmt;

use super::{parse_hex_color, Gravity};
use crate::process::parse::{base64url, Args};
use crate::process::ProcessError;

/// Known fonts (name as decoded from `type`).
const FONTS: &[&str] = &[
    "wqy-zenhei",
    "wqy-microhei",
    "fangzhengshusong",
    "fangzhengkaiti",
    "fangzhengheiti",
    "fangzhengfangsong",
    "droidsansfallback",
];

/// Typed `watermark` parameters (defaults made explicit).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watermark {
    /// opacity
    pub t: u32,
    /// anchor
    pub g: Gravity,
    /// horizontal margin
    pub x: u32,
    /// vertical margin
    pub y: u32,
    /// vertical shift
    pub voffset: i32,
    /// decoded text
    pub text: Option<String>,
    /// font name
    pub font: &'static str,
    /// text colour
    pub color: [u8; 3],
    /// font size
    pub size: u32,
    /// shadow opacity
    pub shadow: u32,
    /// text rotation
    pub rotate: u32,
    /// tile the text
    pub fill: bool,
    /// decoded watermark object key (with optional `?x-oss-process=...`)
    pub image: Option<String>,
    /// image first (0) or text first (1)
    pub order: u32,
    /// vertical alignment of text+image
    pub align: u32,
    /// gap between image and text
    pub interval: u32,
}

fn b64_text(v: &str, param: &str, ec: &'static str) -> Result<String, ProcessError> {
    base64url(v)
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| ProcessError::invalid(param, v, "Input is not base64 decoding.", Some(ec)))
}

/// Parses `watermark` parameters (ranges per spec §4.15).
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Watermark, ProcessError> {
    let g = match a.get("g") {
        None => Gravity::Se,
        Some(v) => Gravity::parse(v)
            .ok_or_else(|| ProcessError::invalid("g", v, "Value must be a gravity", None))?,
    };
    let text = match a.get("text") {
        None => None,
        Some(v) => {
            let t = b64_text(v, "text", "0040-00000257")?;
            if t.len() > 64 {
                return Err(ProcessError::invalid("text", v, "Text must not exceed 64 bytes", Some("0040-00000259")));
            }
            Some(t)
        }
    };
    let font = match a.get("type") {
        None => FONTS[0],
        Some(v) => {
            let name = b64_text(v, "type", "0040-00000250")?;
            FONTS
                .iter()
                .find(|f| **f == name)
                .copied()
                .ok_or_else(|| ProcessError::invalid("type", v, "Unknown font", Some("0040-00000251")))?
        }
    };
    let image = match a.get("image") {
        None => None,
        Some(v) => Some(b64_text(v, "image", "0040-00000265")?),
    };
    if text.is_none() && image.is_none() {
        return Err(ProcessError::missing("watermark", "text or image", None));
    }
    let color = match a.get("color") {
        None => [0, 0, 0],
        Some(v) => parse_hex_color(v)
            .ok_or_else(|| ProcessError::invalid("color", v, "Value must be 6 hex digits RRGGBB", None))?,
    };
    let int = |k: &str, min: i64, max: i64, def: i64| -> Result<i64, ProcessError> {
        Ok(a.int(k, min, max, None)?.unwrap_or(def))
    };
    Ok(Watermark {
        t: int("t", 0, 100, 100)? as u32,
        g,
        x: int("x", 0, 4096, 10)? as u32,
        y: int("y", 0, 4096, 10)? as u32,
        voffset: int("voffset", -1000, 1000, 0)? as i32,
        text,
        font,
        color,
        size: int("size", 1, 1000, 40)? as u32,
        shadow: int("shadow", 0, 100, 0)? as u32,
        rotate: int("rotate", 0, 360, 0)? as u32,
        fill: int("fill", 0, 1, 0)? == 1,
        image,
        order: int("order", 0, 1, 0)? as u32,
        align: int("align", 0, 2, 2)? as u32,
        interval: int("interval", 0, 1000, 0)? as u32,
    })
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
}

impl fmt::Display for Watermark {
    /// Values re-encoded as unpadded base64url so padded and unpadded spellings share a
    /// cache key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "watermark,t_{},g_{},x_{},y_{},voffset_{}", self.t, self.g.as_str(), self.x, self.y, self.voffset)?;
        if let Some(t) = &self.text {
            let [r, g, b] = self.color;
            write!(
                f,
                ",text_{},type_{},color_{r:02X}{g:02X}{b:02X},size_{},shadow_{},rotate_{},fill_{}",
                b64(t),
                b64(self.font),
                self.size,
                self.shadow,
                self.rotate,
                u8::from(self.fill)
            )?;
        }
        if let Some(i) = &self.image {
            write!(f, ",image_{}", b64(i))?;
        }
        if self.text.is_some() && self.image.is_some() {
            write!(f, ",order_{},align_{},interval_{}", self.order, self.align, self.interval)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    fn p(s: &str) -> Result<Watermark, ProcessError> {
        parse_args(&Args::new("watermark", s.split(',')))
    }
    #[test]
    fn parse() {
        let w = p("text_SGVsbG8gV29ybGQ,type_d3F5LXplbmhlaQ==").unwrap();
        assert_eq!(w.text.as_deref(), Some("Hello World"));
        assert_eq!(w.to_string(), p("type_d3F5LXplbmhlaQ,text_SGVsbG8gV29ybGQ=").unwrap().to_string());
        assert_eq!(p("image_cGFuZGEucG5n").unwrap().image.as_deref(), Some("panda.png"));
        assert_eq!(p("text_***").unwrap_err().ec(), Some("0040-00000257"));
        assert_eq!(p("image_a+b").unwrap_err().ec(), Some("0040-00000265"));
        assert_eq!(p("text_YQ,type_YQ").unwrap_err().ec(), Some("0040-00000251"));
        // 65 bytes
        let long = b64(&"a".repeat(65));
        assert_eq!(p(&format!("text_{long}")).unwrap_err().ec(), Some("0040-00000259"));
        assert!(p(&format!("text_{}", b64(&"a".repeat(64)))).is_ok());
        assert_eq!(p("t_50").unwrap_err().code(), "MissingArgument");
        assert!(p("text_YQ,t_101").is_err());
        assert!(p("text_YQ,voffset_-1000").is_ok());
        assert!(p("text_YQ,voffset_1001").is_err());
        assert!(p("text_YQ,size_0").is_err());
    }
}
