//! JPEG encoding with jpegli, libjxl's JPEG encoder behind the libjpeg API (issue 20).
//!
//! Why jpegli and how it is set up (measured in BENCHMARKS.md, `benches/peers/sweep.py`
//! settings `jpeg-opt` and `jpeg-jpegli-noaq`):
//! - The quantisation tables are libjpeg's: the standard Annex K tables scaled by quality
//!   with libjpeg's integer formula (`jpegli_add_quant_table`), so the DQT segments are byte-identical to libjpeg-turbo's and `Q_80` means what it means
//!   at OSS. What differs is how coefficients are rounded onto those tables: a float DCT
//!   and per-frequency zero bias. That alone needs ~3 % fewer bytes at equal SSIMULACRA2
//!   (0.971x at fit 400, 0.967x at fit 1000) than libjpeg-turbo with optimised Huffman
//!   tables.
//! - Adaptive quantisation is off: it is tuned for jpegli's own tables and butteraugli;
//!   with the standard tables it costs bytes at equal SSIMULACRA2 (1.03-1.04x).
//! - Baseline 4:2:0 with optimised Huffman tables by default; `interlace,1` asks for
//!   jpegli's progressive script.
//! - Same URL, same bytes on every node: jpegli's Highway SIMD code would pick a target at
//!   run time (AVX-512, AVX2 or SSE4) and the targets round floats differently (one of 14
//!   benchmark outputs differed between AVX-512 and SSE4). `.cargo/config.toml` compiles it
//!   for one static x86-64-v2 target, so every x86-64 node writes the same bytes.
//!
//! jpegli's API is `jpegli_*`, so it links beside libjpeg-turbo (`jpeg_*`), which still
//! decodes.

use jpegli_sys as j;
use std::os::raw::{c_int, c_ulong, c_void};

extern "C-unwind" {
    // In jpegli's encode.h but not in jpegli-sys's generated bindings.
    fn jpegli_enable_adaptive_quantization(cinfo: *mut j::jpegli_compress_struct, value: j::boolean);
    fn jpegli_use_standard_quant_tables(cinfo: *mut j::jpegli_compress_struct);
    fn jpegli_set_progressive_level(cinfo: *mut j::jpegli_compress_struct, level: c_int);
}

extern "C" {
    // jpegli's memory destination allocates the output with malloc; the caller frees it.
    fn free(p: *mut c_void);
}

/// libjpeg's `JPEG_MAX_DIMENSION`: larger sizes are refused before the encoder sees them.
pub const MAX_DIMENSION: u32 = 65_500;

/// ITU-T T.81 Annex K tables K.1 and K.2 in natural order (libjpeg's `jcparam.c`).
const ANNEX_K_LUMINANCE: [u32; 64] = [
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51,
    87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101,
    72, 92, 95, 98, 112, 100, 103, 99,
];
const ANNEX_K_CHROMINANCE: [u32; 64] = [
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99,
    99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99, 99,
    99, 99, 99, 99, 99, 99,
];

/// jpegli's default progressive script (level 2); level 0 is a baseline (sequential) file.
const PROGRESSIVE_LEVEL: c_int = 2;

/// How to encode. The server uses [`Settings::server`]; the other fields exist so
/// `benches/encode_sweep.rs` can measure what each choice is worth.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settings {
    /// libjpeg quality, 1-100.
    pub quality: u8,
    /// jpegli's progressive script instead of a baseline file.
    pub progressive: bool,
    /// The standard Annex K tables scaled by quality (libjpeg's); `false` = jpegli's own.
    pub standard_tables: bool,
    /// jpegli's adaptive quantisation (per-block zero bias from a masking model).
    pub adaptive_quantization: bool,
    /// 4:2:0 chroma; `false` = 4:4:4.
    pub chroma_420: bool,
}

impl Settings {
    /// The server's encode: OSS's quality scale and layout, jpegli's rounding.
    pub fn server(quality: u8, progressive: bool) -> Self {
        Self { quality, progressive, standard_tables: true, adaptive_quantization: false, chroma_420: true }
    }
}

/// Why an encode was refused or failed; the caller maps it to its error type.
#[derive(Debug)]
pub struct EncodeError(pub String);

impl std::fmt::Display for EncodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Encodes packed 8-bit RGB (`width * 3` bytes per row).
///
/// # Errors
/// A size outside 1..=[`MAX_DIMENSION`], a buffer of the wrong length, or an encoder error.
pub fn encode_rgb(pixels: &[u8], width: u32, height: u32, settings: &Settings) -> Result<Vec<u8>, EncodeError> {
    if width == 0 || height == 0 || width > MAX_DIMENSION || height > MAX_DIMENSION {
        return Err(EncodeError(format!("{width}x{height} is outside JPEG's 1..={MAX_DIMENSION}")));
    }
    let stride = width as usize * 3;
    if pixels.len() != stride * height as usize {
        return Err(EncodeError(format!("{} bytes for {width}x{height} RGB", pixels.len())));
    }
    // SAFETY: `enc` owns a created compress struct whose error manager and output
    // pointers live in the same box; rows are `stride` bytes of the checked buffer.
    guarded(|enc| unsafe { enc.run(pixels, width, height, stride, settings) })
}

/// Runs `f` on a fresh encoder. jpegli reports errors through `error_exit`, which must not
/// return; ours unwinds (the bindings are "C-unwind") and the unwind is caught here, after
/// the encoder's drop has destroyed it and freed its output.
fn guarded(f: impl FnOnce(&mut Compress) -> Vec<u8>) -> Result<Vec<u8>, EncodeError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&mut Compress::new()))).map_err(|payload| {
        let why = payload.downcast_ref::<String>().cloned().unwrap_or_default();
        EncodeError(format!("jpegli: {why}"))
    })
}

/// One compress struct, its error manager and its output buffer, at stable addresses
/// (jpegli keeps pointers to all three); destroyed and freed on drop, also after an error.
struct Compress {
    err: j::jpegli_error_mgr,
    cinfo: j::jpegli_compress_struct,
    out: *mut u8,
    out_len: c_ulong,
}

impl Compress {
    fn new() -> Box<Self> {
        // SAFETY: both are plain C structs for which all-zero is the documented "not yet
        // set up" state; `jpegli_std_error` fills the error manager and `create` the rest.
        let mut enc: Box<Self> = Box::new(unsafe { std::mem::zeroed() });
        unsafe {
            enc.cinfo.common.err = j::jpegli_std_error(&mut enc.err);
            enc.err.error_exit = Some(error_exit);
            enc.err.output_message = Some(no_output);
            j::jpegli_create_compress(&mut enc.cinfo);
        }
        enc
    }

    unsafe fn run(&mut self, pixels: &[u8], width: u32, height: u32, stride: usize, settings: &Settings) -> Vec<u8> {
        let c = &mut self.cinfo;
        j::jpegli_mem_dest(c, &mut self.out, &mut self.out_len);
        c.image_width = width;
        c.image_height = height;
        c.input_components = 3;
        c.in_color_space = j::J_COLOR_SPACE::JCS_RGB;
        j::jpegli_set_defaults(c);
        let quality = c_int::from(settings.quality.clamp(1, 100));
        if settings.standard_tables {
            jpegli_use_standard_quant_tables(c);
        }
        j::jpegli_set_quality(c, quality, 1);
        if settings.standard_tables {
            // jpegli scales the standard tables in floating point, which rounds some
            // entries one step away from libjpeg's integer formula (e.g. at q30);
            // `add_quant_table` uses libjpeg's formula, so the tables are libjpeg's exactly.
            let scale = j::jpegli_quality_scaling(quality);
            j::jpegli_add_quant_table(c, 0, ANNEX_K_LUMINANCE.as_ptr(), scale, 1);
            j::jpegli_add_quant_table(c, 1, ANNEX_K_CHROMINANCE.as_ptr(), scale, 1);
        }
        jpegli_enable_adaptive_quantization(c, c_int::from(settings.adaptive_quantization));
        jpegli_set_progressive_level(c, if settings.progressive { PROGRESSIVE_LEVEL } else { 0 });
        c.optimize_coding = 1;
        // 4:2:0 like libjpeg's default and OSS's output (jpegli's own default is 4:4:4).
        let comps = std::slice::from_raw_parts_mut(c.comp_info, 3);
        for (i, comp) in comps.iter_mut().enumerate() {
            let factor = if i == 0 && settings.chroma_420 { 2 } else { 1 };
            comp.h_samp_factor = factor;
            comp.v_samp_factor = factor;
        }
        j::jpegli_start_compress(c, 1);
        for row in pixels.chunks_exact(stride) {
            let ptr = row.as_ptr();
            j::jpegli_write_scanlines(c, &ptr, 1);
        }
        j::jpegli_finish_compress(c);
        std::slice::from_raw_parts(self.out, self.out_len as usize).to_vec()
    }
}

impl Drop for Compress {
    fn drop(&mut self) {
        // SAFETY: created in `new`; destroy is valid in any state, also after an error,
        // and the output buffer (if any) was malloc'ed by jpegli's memory destination.
        unsafe {
            j::jpegli_destroy_compress(&mut self.cinfo);
            if !self.out.is_null() {
                free(self.out.cast());
            }
        }
    }
}

/// libjpeg's error exit must not return: unwind with the message code (no panic hook, so
/// nothing is printed; the caller logs the error it returns).
unsafe extern "C-unwind" fn error_exit(cinfo: &mut j::jpegli_common_struct) {
    let code = if cinfo.err.is_null() { -1 } else { (*cinfo.err).msg_code };
    std::panic::resume_unwind(Box::new(format!("encoder error (message code {code})")));
}

/// Warnings are not printed to stderr (the default); an encode that succeeds is correct.
unsafe extern "C-unwind" fn no_output(_: &mut j::jpegli_common_struct) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Quantisation tables by table id.
    type Tables = Vec<(u8, Vec<u8>)>;

    /// Quantisation tables and the SOF marker with its payload.
    fn tables_and_frame(jpeg: &[u8]) -> (Tables, u8, Vec<u8>) {
        let (mut tables, mut sof) = (Vec::new(), (0, Vec::new()));
        let mut i = 2;
        while i + 4 <= jpeg.len() && jpeg[i + 1] != 0xDA {
            let len = usize::from(u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]));
            let body = &jpeg[i + 4..i + 2 + len];
            match jpeg[i + 1] {
                0xDB => {
                    let mut j = 0;
                    while j < body.len() {
                        let n = if body[j] >> 4 == 0 { 64 } else { 128 };
                        tables.push((body[j] & 15, body[j + 1..j + 1 + n].to_vec()));
                        j += 1 + n;
                    }
                }
                m @ (0xC0 | 0xC2) => sof = (m, body.to_vec()),
                _ => {}
            }
            i += 2 + len;
        }
        tables.sort();
        (tables, sof.0, sof.1)
    }

    fn photo() -> (Vec<u8>, u32, u32) {
        let src =
            std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/giunchedi_srgb_icc.jpg")).expect("fixture");
        // libjpeg-turbo's integer decode is the same on every machine, so the pixels are.
        let img = turbojpeg::decompress(&src, turbojpeg::PixelFormat::RGB).expect("decode");
        (img.pixels, img.width as u32, img.height as u32)
    }

    fn libjpeg_turbo(px: &[u8], w: u32, h: u32, q: u8, progressive: bool) -> Vec<u8> {
        let mut c = turbojpeg::Compressor::new().expect("tj");
        c.set_quality(i32::from(q)).expect("q");
        c.set_subsamp(turbojpeg::Subsamp::Sub2x2).expect("subsampling");
        c.set_progressive(progressive).expect("progressive");
        let image = turbojpeg::Image {
            pixels: px,
            width: w as usize,
            pitch: w as usize * 3,
            height: h as usize,
            format: turbojpeg::PixelFormat::RGB,
        };
        c.compress_to_vec(image).expect("encode")
    }

    /// Issue 20 item 3: `Q_n` keeps libjpeg's meaning. The DQT tables are byte for byte the
    /// ones libjpeg-turbo writes at the same quality, the frame is the same (size, 4:2:0
    /// sampling, table ids), baseline unless progressive was asked for; only the coding
    /// differs, and it is smaller.
    #[test]
    fn same_tables_and_layout_as_libjpeg_at_every_quality_in_fewer_bytes() {
        let (px, w, h) = photo();
        for q in [1, 10, 30, 50, 75, 80, 90, 95, 100] {
            for progressive in [false, true] {
                let ours = encode_rgb(&px, w, h, &Settings::server(q, progressive)).expect("jpegli");
                let theirs = libjpeg_turbo(&px, w, h, q, progressive);
                let (t1, m1, f1) = tables_and_frame(&ours);
                let (t2, m2, f2) = tables_and_frame(&theirs);
                assert_eq!(t1, t2, "q{q}: quantisation tables");
                assert_eq!((m1, &f1), (m2, &f2), "q{q} progressive={progressive}: frame header");
                assert_eq!(m1, if progressive { 0xC2 } else { 0xC0 });
                if (50..=95).contains(&q) {
                    assert!(ours.len() < theirs.len(), "q{q}: {} >= {} bytes", ours.len(), theirs.len());
                }
            }
        }
    }

    /// Issue 20 item 7 across nodes: the bytes do not depend on the CPU's SIMD level.
    /// With Highway's run-time dispatch these outputs differ between AVX-512 and SSE4
    /// machines; .cargo/config.toml pins one target, so they are these on every x86-64
    /// machine.
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn the_same_bytes_on_every_x86_64_machine() {
        use sha2::Digest;
        let (px, w, h) = photo();
        let got: Vec<(u8, usize, String)> = [90, 95]
            .into_iter()
            .map(|q| {
                let jpeg = encode_rgb(&px, w, h, &Settings::server(q, false)).expect("jpegli");
                let hex = sha2::Sha256::digest(&jpeg).iter().map(|b| format!("{b:02x}")).collect();
                (q, jpeg.len(), hex)
            })
            .collect();
        let want = [
            (90, 47_042, "b75b4acacf5ba6d0d81c3724beeea80617fb1c9d40dbd25ca7daa287d4c45436"),
            (95, 74_906, "f3efd14b1834ba4b07af4862c2fc8cb97ee6ac9b935965acbcc61c4ba5cfbe21"),
        ];
        assert_eq!(got.iter().map(|(q, n, h)| (*q, *n, h.as_str())).collect::<Vec<_>>(), want);
    }

    /// An error inside jpegli (here: finishing an encode that never started) comes back as
    /// an `Err`; the unwind through its C++ frames does not abort the process.
    #[test]
    fn an_encoder_error_is_an_err_not_an_abort() {
        // SAFETY: a valid, created struct in the wrong state: exactly what jpegli checks.
        let err = guarded(|enc| unsafe {
            j::jpegli_finish_compress(&mut enc.cinfo);
            Vec::new()
        })
        .expect_err("finish before start is an error");
        assert!(err.0.contains("message code"), "{err}");
        // The encoder still works afterwards.
        assert!(encode_rgb(&[9; 3], 1, 1, &Settings::server(80, false)).is_ok());
    }

    #[test]
    fn too_large_and_short_buffers_are_refused_before_the_encoder() {
        assert!(encode_rgb(&[], 0, 1, &Settings::server(80, false)).is_err());
        assert!(encode_rgb(&[0; 3], 1, MAX_DIMENSION + 1, &Settings::server(80, false)).is_err());
        assert!(encode_rgb(&[0; 5], 1, 2, &Settings::server(80, false)).is_err());
    }

    #[test]
    fn encodes_a_small_image() {
        let px: Vec<u8> = (0..17 * 9 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let jpeg = encode_rgb(&px, 17, 9, &Settings::server(80, false)).expect("encode");
        assert!(jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.ends_with(&[0xFF, 0xD9]));
        let img = image::load_from_memory(&jpeg).expect("decode").to_rgb8();
        assert_eq!(img.dimensions(), (17, 9));
    }
}
