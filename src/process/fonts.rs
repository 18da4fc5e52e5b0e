//! Fonts for text watermarks (spec §4.15): embedded in the binary from `assets/fonts/`
//! (or loaded once at start-up from `--fonts-dir`), then shared read-only by every worker,
//! plus a bounded cache of rendered text blocks.
//!
//! Every OSS font name maps to a chain of freely licensed faces (see
//! `assets/fonts/README.md`): each character is drawn with the first face of the chain
//! that has a glyph for it, so Latin text uses DejaVu Sans and Chinese/Japanese/Korean
//! text uses Droid Sans Fallback (DejaVu has no CJK glyphs; without the per-character
//! fallback they would be drawn as empty boxes).
//!
//! Rendering produces a straight-alpha RGBA block: glyph coverage × colour, with the
//! optional shadow and rotation applied. Opacity (`t`) is applied when compositing, so
//! one cached block serves every `t`. The cache key is everything that changes the
//! pixels (font, size, text, colour, shadow, rotation); the cache is byte-weighted
//! (moka), so repeated identical watermarks are not rasterised again.

use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use ab_glyph::{Font, FontArc, FontRef, FontVec, GlyphId, PxScale, ScaleFont};
use image::RgbaImage;

use super::ProcessError;

/// The font files in `fonts_dir`, in face-index order, each with a character it must
/// have a glyph for (a cheap check that the file is the face we expect).
pub const FACES: [(&str, char); 4] = [
    ("DejaVuSans.ttf", 'A'),
    ("DroidSansFallbackFull.ttf", '图'),
    ("DejaVuSans-Bold.ttf", 'A'),
    ("DejaVuSerif.ttf", 'A'),
];

/// [decision] spec §4.15: shadow offset, in pixels right and down.
pub(crate) const SHADOW_OFFSET: u32 = 2;

/// Largest rendered text block (pixels), the OSS output area limit: a 64-character text
/// at size 1000 would otherwise need gigabytes.
const MAX_BLOCK_PIXELS: u64 = 4096 * 4096;

/// Bytes of rendered blocks kept in the cache.
const CACHE_BYTES: u64 = 32 << 20;

/// Why the fonts could not be loaded (start-up error).
#[derive(Debug, thiserror::Error)]
pub enum FontError {
    /// The file could not be read.
    #[error("reading font {path}: {source}")]
    Read {
        /// File path.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not a usable font.
    #[error("font {path} is not a valid TrueType/OpenType font or lacks the expected glyphs")]
    Invalid {
        /// File path.
        path: String,
    },
}

/// A face that has a glyph for `probe` (a cheap check that the file is the face expected).
fn checked(face: FontArc, probe: char, path: String) -> Result<FontArc, FontError> {
    if face.glyph_id(probe) == GlyphId(0) {
        return Err(FontError::Invalid { path });
    }
    Ok(face)
}

/// Key of one rendered text block.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TextKey {
    /// OSS font name.
    pub font: &'static str,
    /// Size in px.
    pub size: u32,
    /// The text.
    pub text: String,
    /// RRGGBB.
    pub color: [u8; 3],
    /// Shadow opacity, 0 = none.
    pub shadow: u32,
    /// Clockwise rotation in degrees.
    pub rotate: u32,
}

/// The [`FACES`] files compiled into the binary, so an installed binary draws text
/// watermarks with nothing else on disk (5.9 MB of the executable; served from its mapped
/// pages, never copied to the heap).
const EMBEDDED: [&[u8]; 4] = [
    include_bytes!("../../assets/fonts/DejaVuSans.ttf"),
    include_bytes!("../../assets/fonts/DroidSansFallbackFull.ttf"),
    include_bytes!("../../assets/fonts/DejaVuSans-Bold.ttf"),
    include_bytes!("../../assets/fonts/DejaVuSerif.ttf"),
];

/// The loaded faces and the rendered-text cache. Build once with [`Fonts::embedded`] or
/// [`Fonts::load_dir`].
pub struct Fonts {
    /// In [`FACES`] order: DejaVu Sans, Droid Sans Fallback, DejaVu Sans Bold, DejaVu Serif.
    faces: Vec<FontArc>,
    cache: moka::sync::Cache<TextKey, Arc<RgbaImage>>,
    rasterised: AtomicU64,
}

impl fmt::Debug for Fonts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fonts").field("faces", &self.faces.len()).finish_non_exhaustive()
    }
}

impl Fonts {
    /// The faces compiled into the binary (the default; `fonts_dir` overrides them).
    ///
    /// # Errors
    /// Only if the embedded files were broken at build time (a test checks they are not).
    pub fn embedded() -> Result<Fonts, FontError> {
        let mut faces = Vec::with_capacity(FACES.len());
        for (bytes, (name, probe)) in EMBEDDED.into_iter().zip(FACES) {
            let face = FontRef::try_from_slice(bytes).map_err(|_| FontError::Invalid { path: name.to_owned() })?;
            faces.push(checked(FontArc::new(face), probe, name.to_owned())?);
        }
        Ok(Fonts::with_faces(faces))
    }

    /// Loads the [`FACES`] files from `dir` and checks that each has the glyphs it is
    /// used for.
    ///
    /// # Errors
    /// A missing, unreadable or broken font file (start-up fails with its path).
    pub fn load_dir(dir: &Path) -> Result<Fonts, FontError> {
        let mut files = Vec::with_capacity(FACES.len());
        for (name, _) in FACES {
            let path = dir.join(name);
            let bytes =
                std::fs::read(&path).map_err(|source| FontError::Read { path: path.display().to_string(), source })?;
            files.push((path.display().to_string(), bytes));
        }
        Fonts::from_bytes(files)
    }

    /// Builds from font file contents in [`FACES`] order, each `(name for errors, bytes)`.
    ///
    /// # Errors
    /// A missing or broken font, or one without the glyphs it is used for.
    pub fn from_bytes(files: Vec<(String, Vec<u8>)>) -> Result<Fonts, FontError> {
        if files.len() != FACES.len() {
            return Err(FontError::Invalid {
                path: format!("{} font files given, {} needed", files.len(), FACES.len()),
            });
        }
        let mut faces = Vec::with_capacity(FACES.len());
        for ((path, bytes), (_, probe)) in files.into_iter().zip(FACES) {
            let f = FontVec::try_from_vec(bytes).map_err(|_| FontError::Invalid { path: path.clone() })?;
            faces.push(checked(FontArc::new(f), probe, path)?);
        }
        Ok(Fonts::with_faces(faces))
    }

    fn with_faces(faces: Vec<FontArc>) -> Fonts {
        let cache = moka::sync::Cache::builder()
            .max_capacity(CACHE_BYTES)
            .weigher(|_k: &TextKey, v: &Arc<RgbaImage>| u32::try_from(v.as_raw().len()).unwrap_or(u32::MAX))
            .eviction_policy(moka::policy::EvictionPolicy::lru())
            .build();
        Fonts { faces, cache, rasterised: AtomicU64::new(0) }
    }

    /// How many text blocks were rasterised (cache misses) since start-up.
    pub fn rasterised_count(&self) -> u64 {
        self.rasterised.load(Ordering::Relaxed)
    }

    /// The face chain for an OSS font name (indices into `faces`).
    ///
    /// CJK always comes from Droid Sans Fallback (the only CJK face shipped); the Latin
    /// face follows the style of the OSS font: Hei (sans) → DejaVu Sans, FZ HeiTi (bold
    /// sans) → DejaVu Sans Bold, the Song/Kai/FangSong faces (serif-like) → DejaVu Serif.
    /// `droidsansfallback` tries Droid Sans Fallback first (it has almost no Latin, so
    /// Latin still falls through to DejaVu Sans). See `assets/fonts/README.md`.
    fn chain(font: &str) -> &'static [usize] {
        match font {
            "droidsansfallback" => &[1, 0],
            "fangzhengheiti" => &[2, 1],
            "fangzhengshusong" | "fangzhengkaiti" | "fangzhengfangsong" => &[3, 1],
            _ => &[0, 1],
        }
    }

    /// The rendered block for `key`, from the cache or rasterised now.
    ///
    /// # Errors
    /// 400 `ImageTooLarge` when the block would exceed the output area limit.
    pub(crate) fn text_block(&self, key: &TextKey) -> Result<Arc<RgbaImage>, ProcessError> {
        self.cache
            .try_get_with(key.clone(), || {
                self.rasterised.fetch_add(1, Ordering::Relaxed);
                self.render(key).map(Arc::new)
            })
            .map_err(|e| (*e).clone())
    }

    /// Lays out and draws the text, then adds the shadow and rotates.
    pub(crate) fn render(&self, key: &TextKey) -> Result<RgbaImage, ProcessError> {
        let scale = PxScale::from(key.size as f32);
        let chain = Self::chain(key.font);
        // Pick a face per character: the first in the chain with a glyph.
        let picks: Vec<(usize, GlyphId)> = key
            .text
            .chars()
            .filter(|c| !c.is_control())
            .map(|c| {
                chain
                    .iter()
                    .find_map(|&i| {
                        let id = self.faces.get(i)?.glyph_id(c);
                        (id != GlyphId(0)).then_some((i, id))
                    })
                    .unwrap_or((chain[0], GlyphId(0)))
            })
            .collect();
        let mut ascent = 0f32;
        let mut descent = 0f32;
        for &i in chain {
            if let Some(f) = self.faces.get(i) {
                let s = f.as_scaled(scale);
                ascent = ascent.max(s.ascent());
                descent = descent.min(s.descent());
            }
        }
        // Pen positions.
        let mut x = 0f32;
        let mut glyphs = Vec::with_capacity(picks.len());
        let mut prev: Option<(usize, GlyphId)> = None;
        for &(fi, id) in &picks {
            let Some(face) = self.faces.get(fi) else { continue };
            let s = face.as_scaled(scale);
            if let Some((pf, pid)) = prev {
                if pf == fi {
                    x += s.kern(pid, id);
                }
            }
            glyphs.push((fi, id.with_scale_and_position(scale, ab_glyph::point(x, ascent))));
            x += s.h_advance(id);
            prev = Some((fi, id));
        }
        let tw = x.ceil().max(1.0) as u64;
        let th = (ascent - descent).ceil().max(1.0) as u64;
        let pad = if key.shadow > 0 { u64::from(SHADOW_OFFSET) } else { 0 };
        let (bw, bh) = (tw + pad, th + pad);
        if bw.saturating_mul(bh) > MAX_BLOCK_PIXELS {
            return Err(ProcessError::too_large(
                format!("The watermark text block {bw}x{bh} exceeds the size limit."),
                None,
            ));
        }
        let (bw, bh) = (bw as u32, bh as u32);
        // Coverage mask.
        let mut mask = vec![0f32; (bw as usize) * (bh as usize)];
        for (fi, g) in glyphs {
            let Some(face) = self.faces.get(fi) else { continue };
            let Some(outlined) = face.outline_glyph(g) else { continue };
            let b = outlined.px_bounds();
            outlined.draw(|gx, gy, c| {
                let px = b.min.x as i64 + i64::from(gx);
                let py = b.min.y as i64 + i64::from(gy);
                if px >= 0 && py >= 0 && (px as u64) < tw && (py as u64) < th {
                    let idx = py as usize * bw as usize + px as usize;
                    if let Some(m) = mask.get_mut(idx) {
                        *m = (*m + c).min(1.0);
                    }
                }
            });
        }
        let [r, g, b] = key.color;
        let mut block = RgbaImage::new(bw, bh);
        let shadow_a = key.shadow as f32 / 100.0;
        for (px, py, out) in block.enumerate_pixels_mut() {
            let idx = py as usize * bw as usize + px as usize;
            let text_a = mask.get(idx).copied().unwrap_or(0.0);
            let sh_a = if pad > 0 && px >= SHADOW_OFFSET && py >= SHADOW_OFFSET {
                let sidx = (py - SHADOW_OFFSET) as usize * bw as usize + (px - SHADOW_OFFSET) as usize;
                mask.get(sidx).copied().unwrap_or(0.0) * shadow_a
            } else {
                0.0
            };
            // Text over a black shadow, straight alpha.
            let a = text_a + sh_a * (1.0 - text_a);
            if a <= 0.0 {
                continue;
            }
            let mix = |c: u8| ((f32::from(c) * text_a) / a).round().clamp(0.0, 255.0) as u8;
            *out = image::Rgba([mix(r), mix(g), mix(b), (a * 255.0).round().clamp(0.0, 255.0) as u8]);
        }
        if key.rotate % 360 == 0 {
            return Ok(block);
        }
        rotate_rgba(&block, key.rotate)
    }
}

/// Rotates a straight-alpha RGBA block clockwise by `deg` degrees onto a canvas that
/// holds the whole rotated block (bilinear, premultiplied so edges do not darken).
pub(crate) fn rotate_rgba(src: &RgbaImage, deg: u32) -> Result<RgbaImage, ProcessError> {
    let (w, h) = (f64::from(src.width()), f64::from(src.height()));
    let rad = f64::from(deg % 360).to_radians();
    let (sin, cos) = rad.sin_cos();
    // The epsilon keeps 90° from growing a pixel through cos(90°) ≈ 6e-17.
    let nw = (w * cos.abs() + h * sin.abs() - 1e-6).ceil().max(1.0);
    let nh = (w * sin.abs() + h * cos.abs() - 1e-6).ceil().max(1.0);
    if nw * nh > MAX_BLOCK_PIXELS as f64 {
        return Err(ProcessError::too_large("The rotated watermark exceeds the size limit.", None));
    }
    let (nw, nh) = (nw as u32, nh as u32);
    let mut out = RgbaImage::new(nw, nh);
    let (cx, cy) = (w / 2.0, h / 2.0);
    let (ncx, ncy) = (f64::from(nw) / 2.0, f64::from(nh) / 2.0);
    let (sw, sh) = (src.width() as i64, src.height() as i64);
    let sample = |x: i64, y: i64| -> [f64; 4] {
        if x < 0 || y < 0 || x >= sw || y >= sh {
            return [0.0; 4];
        }
        let p = src.get_pixel(x as u32, y as u32).0;
        let a = f64::from(p[3]) / 255.0;
        [f64::from(p[0]) * a, f64::from(p[1]) * a, f64::from(p[2]) * a, a]
    };
    for (ox, oy, px) in out.enumerate_pixels_mut() {
        // Inverse mapping: rotate the output pixel centre counter-clockwise.
        let dx = f64::from(ox) + 0.5 - ncx;
        let dy = f64::from(oy) + 0.5 - ncy;
        let sx = dx * cos + dy * sin + cx - 0.5;
        let sy = -dx * sin + dy * cos + cy - 0.5;
        let (x0, y0) = (sx.floor(), sy.floor());
        let (fx, fy) = (sx - x0, sy - y0);
        let (x0, y0) = (x0 as i64, y0 as i64);
        let mut acc = [0f64; 4];
        for (xx, yy, wgt) in [
            (x0, y0, (1.0 - fx) * (1.0 - fy)),
            (x0 + 1, y0, fx * (1.0 - fy)),
            (x0, y0 + 1, (1.0 - fx) * fy),
            (x0 + 1, y0 + 1, fx * fy),
        ] {
            let s = sample(xx, yy);
            for k in 0..4 {
                acc[k] += s[k] * wgt;
            }
        }
        if acc[3] > 0.0 {
            let un = |c: f64| (c / acc[3]).round().clamp(0.0, 255.0) as u8;
            *px = image::Rgba([un(acc[0]), un(acc[1]), un(acc[2]), (acc[3] * 255.0).round().clamp(0.0, 255.0) as u8]);
        }
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::sync::OnceLock;

    /// The repository's fonts, loaded once per test binary.
    pub(crate) fn fonts() -> &'static Fonts {
        static F: OnceLock<Fonts> = OnceLock::new();
        F.get_or_init(|| Fonts::embedded().expect("embedded fonts"))
    }

    fn key(text: &str) -> TextKey {
        TextKey { font: "wqy-zenhei", size: 24, text: text.into(), color: [0, 0, 0], shadow: 0, rotate: 0 }
    }

    #[test]
    fn every_script_has_real_glyphs() {
        let f = fonts();
        // Latin, Chinese, Japanese kana and kanji. (Hangul is not in Droid Sans Fallback.)
        for c in ['A', 'é', '图', '片', '水', 'あ', 'カ', '語'] {
            assert!(Fonts::chain("wqy-zenhei").iter().any(|&i| f.faces[i].glyph_id(c) != GlyphId(0)), "{c}");
        }
    }

    #[test]
    fn cache_is_hit_for_identical_text() {
        // Its own instance: the shared one is used by tests running in parallel.
        let f = Fonts::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("assets/fonts")).unwrap();
        let k = key("cache-test");
        let before = f.rasterised_count();
        let a = f.text_block(&k).unwrap();
        let b = f.text_block(&k).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "second call returns the cached block");
        assert_eq!(f.rasterised_count() - before, 1);
        let c = f.text_block(&TextKey { size: 25, ..k }).unwrap();
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn block_size_follows_font_size_and_limits() {
        let f = fonts();
        let b = f.text_block(&key("Hello")).unwrap();
        assert!(b.height() >= 24 && b.height() <= 32, "{}", b.height());
        assert!(b.width() > 40 && b.width() < 90, "{}", b.width());
        let cjk = f.text_block(&key("图片")).unwrap();
        assert!(cjk.as_raw().chunks(4).filter(|p| p[3] > 128).count() > 50, "CJK glyphs are drawn");
        let huge = TextKey { size: 1000, text: "W".repeat(64), ..key("") };
        assert_eq!(f.text_block(&huge).unwrap_err().code(), "ImageTooLarge");
    }

    #[test]
    fn type_selects_the_face() {
        let f = fonts();
        let sans = f.text_block(&key("Type")).unwrap();
        let bold = f.text_block(&TextKey { font: "fangzhengheiti", ..key("Type") }).unwrap();
        let serif = f.text_block(&TextKey { font: "fangzhengshusong", ..key("Type") }).unwrap();
        assert_ne!(sans.as_raw(), bold.as_raw());
        assert_ne!(sans.as_raw(), serif.as_raw());
        assert_ne!(bold.as_raw(), serif.as_raw());
        // CJK comes from Droid Sans Fallback whatever the name.
        let a = f.text_block(&TextKey { font: "fangzhengkaiti", ..key("图片") }).unwrap();
        let b = f.text_block(&TextKey { font: "droidsansfallback", ..key("图片") }).unwrap();
        assert_eq!(a.as_raw(), b.as_raw());
    }

    #[test]
    fn rotation_swaps_sides_at_90() {
        let b = RgbaImage::from_pixel(10, 4, image::Rgba([255, 0, 0, 255]));
        let r = rotate_rgba(&b, 90).unwrap();
        assert_eq!((r.width(), r.height()), (4, 10));
        assert_eq!(r.get_pixel(1, 5)[3], 255);
    }

    #[test]
    fn broken_font_fails_load() {
        let e = Fonts::load_dir(Path::new("/nonexistent")).unwrap_err();
        assert!(e.to_string().contains("DejaVuSans.ttf"));
        let files = (0..4).map(|i| (format!("f{i}"), vec![1, 2, 3])).collect();
        let e = Fonts::from_bytes(files).unwrap_err();
        assert!(matches!(e, FontError::Invalid { .. }));
    }
}
