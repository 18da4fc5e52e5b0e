//! `watermark` (spec §4.15): text, image and text+image blocks, placed by gravity and
//! margins, optionally tiled, composited with opacity `t` onto every frame.
//!
//! Parse time: the text/font/colour parameters are checked, the image value is decoded
//! into an object key (checked with [`crate::url::normalize_path`], so a key cannot
//! escape the origin) plus its allowed preprocessing steps (resize incl. `P_`, crop,
//! indexcrop, rounded-corners, rotate, auto-orient; `circle` and nested `watermark` are
//! rejected). Run time: the handler has already fetched the watermark objects through
//! the same origin and passes them in [`RunContext::overlays`]; the text comes from the
//! start-up [`Fonts`] (rendered blocks are cached there). [`Watermark::prepare`] builds
//! the block once per op, [`Watermark::draw`] composites it on each frame.
//!
//! [decision]s (spec §4.15): `voffset` positive = downward; shadow is black, offset 2 px
//! right/down; `fill_1` tiles the block on a grid anchored at its placed position with a
//! gap equal to the block size; `P_` fits the watermark inside `round(W·P/100) ×
//! round(H·P/100)` of the main image at that point of the chain (other keys of that
//! `resize` are ignored); a missing or invalid watermark object is 400 `WatermarkError`;
//! for a text+image block `rotate` turns the text only and `fill` tiles the whole block.
//!
//! [`Fonts`]: crate::process::fonts::Fonts

use std::fmt;
use std::sync::Arc;

use image::{DynamicImage, RgbaImage};

use super::{parse_hex_color, round_mul_div, Gravity, Op};
use crate::process::fonts::TextKey;
use crate::process::parse::{base64url, Args};
use crate::process::{codec, picture, Limits, ProcessError, RunContext};

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
#[derive(Debug, Clone, PartialEq)]
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
    /// decoded watermark value (object key with optional `?x-oss-process=...`)
    pub image: Option<String>,
    /// the watermark object: normalised key (no leading `/`) and preprocessing
    pub overlay: Option<Overlay>,
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
        Some(v) => Gravity::parse(v).ok_or_else(|| ProcessError::invalid("g", v, "Value must be a gravity", None))?,
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
    let overlay = image.as_deref().map(parse_overlay).transpose()?;
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
        overlay,
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

/// One preprocessing step of a watermark image.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pre {
    /// An ordinary op (resize, crop, indexcrop, rounded-corners, rotate).
    Op(Op),
    /// `resize,P_n`: fit inside n % of the main image.
    Percent(u32),
}

/// The watermark object and what to do to it before drawing.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Overlay {
    /// Normalised object key, without the leading `/`.
    pub key: String,
    /// Apply EXIF orientation (default on, `auto-orient,0` turns it off).
    pub auto_orient: bool,
    /// Steps in order.
    pub steps: Vec<Pre>,
}

fn watermark_error(msg: impl Into<String>) -> ProcessError {
    ProcessError::watermark(msg)
}

/// Splits `key[?x-oss-process=image/...]`, checks the key and parses the preprocessing.
fn parse_overlay(decoded: &str) -> Result<Overlay, ProcessError> {
    let (key, query) = match decoded.split_once('?') {
        Some((k, q)) => (k, Some(q)),
        None => (decoded, None),
    };
    // `%` is literal in an object key; escape it so normalize_path does not decode it.
    let normalized = crate::url::normalize_path(&format!("/{}", key.replace('%', "%25")))
        .map_err(|_| watermark_error(format!("The watermark object key is invalid: {key}")))?;
    let key = normalized.strip_prefix('/').unwrap_or(&normalized).to_owned();
    let mut overlay = Overlay { key, auto_orient: true, steps: Vec::new() };
    let Some(query) = query else { return Ok(overlay) };
    let chain = query.strip_prefix("x-oss-process=").and_then(|c| c.strip_prefix("image/")).ok_or_else(|| {
        ProcessError::invalid("image", decoded, "Watermark preprocessing must be x-oss-process=image/...", None)
    })?;
    let empty = crate::process::Styles::new();
    let limits = Limits::default();
    for seg in chain.split('/').filter(|s| !s.is_empty()) {
        let name = seg.split(',').next().unwrap_or_default();
        match name {
            "watermark" => {
                return Err(ProcessError::invalid(
                    "image",
                    decoded,
                    "A watermark image cannot carry a watermark",
                    Some("0040-00000373"),
                ))
            }
            "resize" => {
                let args = Args::new("resize", seg.split(',').skip(1));
                if let Some(p) = args.int("P", 1, 100, None)? {
                    overlay.steps.push(Pre::Percent(p as u32));
                    continue;
                }
            }
            "crop" | "indexcrop" | "rounded-corners" | "rotate" | "auto-orient" => {}
            _ => {
                return Err(ProcessError::invalid(
                    "image",
                    decoded,
                    &format!("The operation {name} is not allowed on a watermark image"),
                    None,
                ))
            }
        }
        let p = crate::process::parse(&format!("image/{seg}"), &empty, &limits)?;
        if name == "auto-orient" {
            overlay.auto_orient = p.auto_orient;
        }
        overlay.steps.extend(p.ops.into_iter().map(Pre::Op));
    }
    Ok(overlay)
}

/// Top-left corner of a `ww×wh` block on a `W×H` image (spec §4.15 placement table).
/// May be negative or past the edges; drawing clips.
pub(crate) fn place(w: &Watermark, (iw, ih): (u32, u32), (ww, wh): (u32, u32)) -> (i64, i64) {
    let (iw, ih, ww, wh) = (i64::from(iw), i64::from(ih), i64::from(ww), i64::from(wh));
    let (x, y, v) = (i64::from(w.x), i64::from(w.y), i64::from(w.voffset));
    let left = (iw - ww).div_euclid(2);
    let right = iw - ww - x;
    let mid = (ih - wh).div_euclid(2) + v;
    let bottom = ih - wh - y;
    match w.g {
        Gravity::Nw => (x, y),
        Gravity::North => (left, y),
        Gravity::Ne => (right, y),
        Gravity::West => (x, mid),
        Gravity::Center => (left, mid),
        Gravity::East => (right, mid),
        Gravity::Sw => (x, bottom),
        Gravity::South => (left, bottom),
        Gravity::Se => (right, bottom),
    }
}

impl Watermark {
    /// The watermark object key to fetch, if any.
    pub(crate) fn object_key(&self) -> Option<&str> {
        self.overlay.as_ref().map(|o| o.key.as_str())
    }

    /// Builds the block (text, image or both) for a main image of size `dims`.
    ///
    /// # Errors
    /// 400 `WatermarkError` for a missing or undecodable watermark object, limits, and
    /// 500 when no fonts were loaded.
    pub(crate) fn prepare(&self, dims: (u32, u32), ctx: &RunContext<'_>) -> Result<Arc<RgbaImage>, ProcessError> {
        let text = match &self.text {
            None => None,
            Some(t) => {
                let fonts = ctx.fonts.ok_or_else(|| ProcessError::internal("fonts are not loaded"))?;
                let key = TextKey {
                    font: self.font,
                    size: self.size,
                    text: t.clone(),
                    color: self.color,
                    shadow: self.shadow,
                    rotate: self.rotate,
                };
                Some(fonts.text_block(&key)?)
            }
        };
        let image = match &self.overlay {
            None => None,
            Some(o) => Some(overlay_image(o, dims, ctx)?),
        };
        match (text, image) {
            (Some(t), None) => Ok(t),
            (None, Some(i)) => Ok(Arc::new(i)),
            (Some(t), Some(i)) => self.combine(&t, &i).map(Arc::new),
            (None, None) => Err(ProcessError::missing("watermark", "text or image", None)),
        }
    }

    /// Lays image and text side by side (`order`, `align`, `interval`).
    fn combine(&self, text: &RgbaImage, img: &RgbaImage) -> Result<RgbaImage, ProcessError> {
        let (first, second) = if self.order == 1 { (text, img) } else { (img, text) };
        let w = u64::from(first.width()) + u64::from(self.interval) + u64::from(second.width());
        let h = u64::from(first.height().max(second.height()));
        if w > super::MAX_SIDE || h > super::MAX_SIDE || w.saturating_mul(h) > super::MAX_AREA {
            return Err(ProcessError::too_large("The watermark block exceeds the size limit.", None));
        }
        let (w, h) = (w as u32, h as u32);
        let mut out = RgbaImage::new(w, h);
        let top = |part: &RgbaImage| -> i64 {
            let free = i64::from(h) - i64::from(part.height());
            match self.align {
                0 => 0,
                1 => free / 2,
                _ => free,
            }
        };
        image::imageops::replace(&mut out, first, 0, top(first));
        let x2 = i64::from(first.width()) + i64::from(self.interval);
        image::imageops::replace(&mut out, second, x2, top(second));
        Ok(out)
    }

    /// Composites `block` onto one frame: placed by gravity (or tiled with `fill`),
    /// clipped to the frame, with opacity `t`.
    pub(crate) fn draw(&self, frame: &mut DynamicImage, block: &RgbaImage) {
        let dims = (frame.width(), frame.height());
        let (bw, bh) = (block.width(), block.height());
        if bw == 0 || bh == 0 || self.t == 0 {
            return;
        }
        let (l, t) = place(self, dims, (bw, bh));
        if !(self.fill && self.text.is_some()) {
            blend(frame, block, l, t, self.t);
            return;
        }
        // Tiles on a grid through (l, t) with a gap of one block size.
        let (sx, sy) = (2 * i64::from(bw), 2 * i64::from(bh));
        let (iw, ih) = (i64::from(dims.0), i64::from(dims.1));
        let x0 = l - (l + i64::from(bw)).div_euclid(sx) * sx - sx;
        let y0 = t - (t + i64::from(bh)).div_euclid(sy) * sy - sy;
        let mut y = y0;
        while y < ih {
            let mut x = x0;
            while x < iw {
                if x + i64::from(bw) > 0 && y + i64::from(bh) > 0 {
                    blend(frame, block, x, y, self.t);
                }
                x += sx;
            }
            y += sy;
        }
    }
}

/// Decodes the fetched watermark object and applies its preprocessing.
fn overlay_image(o: &Overlay, main: (u32, u32), ctx: &RunContext<'_>) -> Result<RgbaImage, ProcessError> {
    let bytes = ctx
        .overlays
        .and_then(|m| m.get(&o.key))
        .ok_or_else(|| watermark_error(format!("The watermark object does not exist: {}", o.key)))?;
    let limits = ctx.limits;
    let probe = codec::probe(bytes, limits)
        .map_err(|e| watermark_error(format!("The watermark object is not a usable image: {}", e.message())))?;
    let pic = codec::decode(bytes, &probe, codec::LoadScale::FULL, false, limits)
        .map_err(|e| watermark_error(format!("The watermark object is not a usable image: {}", e.message())))?;
    let mut img = pic.first().cloned().ok_or_else(|| watermark_error("The watermark image is empty."))?;
    if o.auto_orient && probe.meta.orientation != 1 {
        if let Some(or) = image::metadata::Orientation::from_exif(probe.meta.orientation) {
            img.apply_orientation(or);
        }
    }
    for step in &o.steps {
        let dims = (img.width(), img.height());
        img = match step {
            Pre::Percent(p) => {
                let bw = round_mul_div(u64::from(main.0), u64::from(*p), 100).max(1);
                let bh = round_mul_div(u64::from(main.1), u64::from(*p), 100).max(1);
                let (iw, ih) = (u64::from(dims.0.max(1)), u64::from(dims.1.max(1)));
                // Proportional fit: width-bound when bw/iw <= bh/ih.
                let (w, h) = if bw * ih <= bh * iw {
                    (bw, round_mul_div(ih, bw, iw).max(1))
                } else {
                    (round_mul_div(iw, bh, ih).max(1), bh)
                };
                picture::resample(&img, w as u32, h as u32, None)?
            }
            Pre::Op(Op::Resize(r)) => {
                let plan = r.plan(dims, false, limits)?;
                r.apply_plan(&img, plan, dims)?
            }
            Pre::Op(Op::Crop(c)) => c.apply(&img)?,
            Pre::Op(Op::IndexCrop(c)) => c.apply(&img)?,
            Pre::Op(Op::RoundedCorners(c)) => c.apply(&img)?,
            Pre::Op(Op::Rotate(r)) => r.apply(&img, limits)?,
            Pre::Op(_) => return Err(ProcessError::internal("unexpected watermark preprocessing step")),
        };
    }
    Ok(picture::to_rgba(img))
}

/// Straight-alpha "over" of `block` at `(left, top)` with opacity `t` percent, clipped.
pub(crate) fn blend(frame: &mut DynamicImage, block: &RgbaImage, left: i64, top: i64, t: u32) {
    let (fw, fh) = (i64::from(frame.width()), i64::from(frame.height()));
    let (bw, bh) = (i64::from(block.width()), i64::from(block.height()));
    let x_from = left.max(0);
    let y_from = top.max(0);
    let x_to = (left + bw).min(fw);
    let y_to = (top + bh).min(fh);
    if x_from >= x_to || y_from >= y_to {
        return;
    }
    let t = t.min(100);
    let src = block.as_raw();
    let (ch, dst) = match frame {
        DynamicImage::ImageRgb8(i) => (3usize, &mut **i),
        DynamicImage::ImageRgba8(i) => (4usize, &mut **i),
        _ => return,
    };
    let fw = fw as usize;
    for y in y_from..y_to {
        let by = (y - top) as usize;
        for x in x_from..x_to {
            let bx = (x - left) as usize;
            let si = (by * bw as usize + bx) * 4;
            let Some(s) = src.get(si..si + 4) else { continue };
            let sa = u32::from(s[3]) * t / 100;
            if sa == 0 {
                continue;
            }
            let di = (y as usize * fw + x as usize) * ch;
            let Some(d) = dst.get_mut(di..di + ch) else { continue };
            if ch == 3 {
                for k in 0..3 {
                    d[k] = ((u32::from(s[k]) * sa + u32::from(d[k]) * (255 - sa) + 127) / 255) as u8;
                }
            } else {
                let da = u32::from(d[3]);
                // out_a = sa + da·(1−sa), in 255² units to keep precision.
                let oa = sa * 255 + da * (255 - sa);
                if oa == 0 {
                    continue;
                }
                for k in 0..3 {
                    let c = u32::from(s[k]) * sa * 255 + u32::from(d[k]) * da * (255 - sa);
                    d[k] = ((c + oa / 2) / oa) as u8;
                }
                d[3] = ((oa + 127) / 255) as u8;
            }
        }
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

    #[test]
    fn placement_follows_the_spec_table_for_every_gravity() {
        // 200×100 image, 40×20 block, x=5, y=7, voffset=3.
        let cases = [
            ("nw", (5, 7)),
            ("north", (80, 7)),
            ("ne", (155, 7)),
            ("west", (5, 43)),
            ("center", (80, 43)),
            ("east", (155, 43)),
            ("sw", (5, 73)),
            ("south", (80, 73)),
            ("se", (155, 73)),
        ];
        for (g, want) in cases {
            let w = p(&format!("text_YQ,g_{g},x_5,y_7,voffset_3")).unwrap();
            assert_eq!(place(&w, (200, 100), (40, 20)), want, "{g}");
        }
        // Negative voffset moves up; a block larger than the image gets negative offsets.
        let w = p("text_YQ,g_center,voffset_-10").unwrap();
        assert_eq!(place(&w, (200, 100), (40, 20)), (80, 30));
        assert_eq!(place(&w, (20, 10), (40, 20)), (-10, -15));
    }

    #[test]
    fn blend_clips_and_respects_opacity() {
        let mut img = DynamicImage::ImageRgb8(image::RgbImage::from_pixel(4, 4, image::Rgb([0, 0, 0])));
        let block = RgbaImage::from_pixel(3, 3, image::Rgba([255, 255, 255, 255]));
        blend(&mut img, &block, -1, 2, 50);
        let rgb = img.to_rgb8();
        assert_eq!(rgb.get_pixel(0, 3).0, [127, 127, 127]);
        assert_eq!(rgb.get_pixel(2, 3).0, [0, 0, 0]);
        assert_eq!(rgb.get_pixel(0, 1).0, [0, 0, 0]);
        // Over a transparent RGBA pixel the colour is the watermark's, alpha t.
        let mut img = DynamicImage::ImageRgba8(RgbaImage::from_pixel(2, 2, image::Rgba([0, 0, 0, 0])));
        blend(&mut img, &block, 0, 0, 40);
        assert_eq!(img.to_rgba8().get_pixel(1, 1).0, [255, 255, 255, 102]);
    }

    #[test]
    fn image_values_parse_key_and_preprocessing() {
        let w = p(&format!("image_{}", b64("dir/panda.png?x-oss-process=image/resize,P_30/crop,w_10,h_10/rotate,90")))
            .unwrap();
        let o = w.overlay.unwrap();
        assert_eq!(o.key, "dir/panda.png");
        assert_eq!(o.steps.len(), 3);
        assert_eq!(o.steps[0], Pre::Percent(30));
        assert!(p(&format!("image_{}", b64("a.png?x-oss-process=image/resize,P_0"))).is_err());
        assert!(p(&format!("image_{}", b64("a.png?x-oss-process=image/blur,r_3,s_2"))).is_err());
        assert!(p(&format!("image_{}", b64("a.png?other=1"))).is_err());
        for bad in ["../a.png", "a/../../b.png", "a//b.png", "/abs.png"] {
            assert_eq!(p(&format!("image_{}", b64(bad))).map(|_| ()).unwrap_err().code(), "WatermarkError", "{bad:?}");
        }
        // `%` stays literal.
        assert_eq!(p(&format!("image_{}", b64("a%2e%2e.png"))).unwrap().object_key(), Some("a%2e%2e.png"));
    }
}
