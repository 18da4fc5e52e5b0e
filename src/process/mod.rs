//! Image processing: `x-oss-process` parsing and the decode → ops → encode pipeline.
//!
//! This module knows nothing of HTTP, tokio, the cache or origins. It takes bytes, a
//! [`Pipeline`] and [`Limits`], and returns bytes and a MIME type.
//!
//! Contract used by the rest of the crate (keep these signatures):
//! - [`parse`]`(value, styles, limits) -> Result<Pipeline, ProcessError>`: pure, no pixels.
//! - [`Pipeline::canonical`]: a canonical spelling; equivalent chains give the same string
//!   (it becomes part of the cache key).
//! - [`run`]`(src, pipeline, ctx) -> Result<Output, ProcessError>`: CPU work, called on the
//!   blocking pool.
//! - [`ProcessError`]: a [`ProcessErrorKind`], `ec()`, `message()`; `error.rs` maps the kind.
//!
//! Layout: `parse.rs` tokenises the value and dispatches to `ops/<action>.rs`, each of
//! which owns its typed parameters, `parse_args`, canonical `Display` and `apply`;
//! `pipeline.rs` holds [`Pipeline`] and the execution loop; `codec.rs` sniffs, probes
//! (limits are checked from the header, before any pixel buffer is allocated), decodes
//! and encodes. The behaviour follows `spec/oss-image-processing.md`; `[decision]`
//! points of the spec are repeated in the doc comments where they are implemented.
//!
//! Choices where the spec leaves room (each also documented at its implementation):
//! - Output size limits (16 384 px per side, 4096² area, EC `-007`) are checked for the
//!   ops that produce a new size (resize, rotate) and predicted from the header before
//!   decoding; `Limits::max_output_pixels` bounds the final image. A large source passed
//!   through unchanged (e.g. `format,png` on a 20 MP photo) is not rejected.
//! - Alpha: kept for PNG, WebP, BMP (32-bit), GIF and TIFF outputs, flattened on white
//!   for JPG (spec §4.4 lists BMP among the formats with transparency).
//! - ICC: RGB and grey profiles are converted to sRGB (moxcms); if that fails the RGB
//!   profile is embedded in the output. CMYK JPEGs use the naive Adobe-inverted formula.
//! - JPEG warnings from libjpeg-turbo about recoverable glitches (extraneous bytes) are
//!   tolerated like browsers do; truncated data ("premature end") is a 400 BadRequest,
//!   as OSS does not repair damaged files.
//! - Animated GIF → GIF and animated WebP → WebP keep every frame, delay and the loop
//!   count through resize/crop; any other op or format takes the first frame (spec §2.4,
//!   including GIF → WebP; `GIF_TO_WEBP_ANIMATED` in pipeline.rs flips that). APNG is
//!   read as its first frame.
//! - `watermark` draws text (start-up [`Fonts`], cached blocks), image (objects fetched
//!   by the caller and passed in [`RunContext::overlays`]) and mixed blocks on every frame;
//!   see `ops/watermark.rs` for its `[decision]`s.
//! - `bright`, `contrast`, `sharpen` curves and the `average-hue` threshold are
//!   undocumented by OSS; see their files.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

pub(crate) mod codec;
pub(crate) mod colour;
pub(crate) mod cost;
pub mod decoded;
pub mod fonts;
pub(crate) mod jpeg_scans;
pub mod jpegli;
pub mod memo;
pub(crate) mod ops;
pub(crate) mod parse;
pub(crate) mod picture;
pub(crate) mod pipeline;
#[doc(hidden)]
pub mod stages;

#[cfg(test)]
mod reference_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod watermark_tests;

pub use codec::DEFAULT_WEBP_METHOD;
pub use decoded::DecodedCache;
pub use fonts::Fonts;
pub use memo::{ChainMemo, ParsedChain};
pub use pipeline::Pipeline;

/// Watermark objects fetched for a run: normalised key (no leading `/`) → bytes.
pub type Overlays = HashMap<String, bytes::Bytes>;

/// Named styles from the config file: name → `image/...` chain.
pub type Styles = HashMap<String, String>;

/// Resource limits, checked before allocating.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest source object in bytes.
    pub max_source_bytes: u64,
    /// Largest source image in pixels (width × height, from the header).
    pub max_source_pixels: u64,
    /// Largest output image in pixels.
    pub max_output_pixels: u64,
    /// Most frames decoded from an animated source.
    pub max_frames: u32,
    /// Most operations in one chain.
    pub max_ops: usize,
    /// Largest `blur` cost: pixels × kernel taps (2r+1), checked from the header before
    /// decoding. The separable blur costs about 12 s per 10^9 (one core), so the default
    /// 10^9 keeps one blur within ~12 s (a 16 MP photo up to r_4, 9.9 MP up to r_50).
    pub max_filter_cost: u64,
    /// libwebp method (encoder effort, 0-6) for WebP outputs: CPU per WebP encode against
    /// bytes. See [`codec::DEFAULT_WEBP_METHOD`] for what each step costs and saves.
    pub webp_method: u8,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: 20 << 20,
            max_source_pixels: 250_000_000,
            max_output_pixels: 4096 * 4096 * 2,
            max_frames: 300,
            max_ops: 32,
            max_filter_cost: 1_000_000_000,
            webp_method: codec::DEFAULT_WEBP_METHOD,
        }
    }
}

/// Per-run context.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// Limits.
    pub limits: &'a Limits,
    /// Work past this instant is abandoned.
    pub deadline: Option<Instant>,
    /// Fonts for text watermarks (loaded once at start-up); `None` makes a text
    /// watermark a 500.
    pub fonts: Option<&'a Fonts>,
    /// Watermark objects named by the pipeline ([`Pipeline::watermark_objects`]),
    /// fetched by the caller from the same origin.
    pub overlays: Option<&'a Overlays>,
    /// Decoded-source cache shared across requests (`None`: always decode).
    pub decoded: Option<&'a DecodedCache>,
    /// Set when no client waits for the result any more: the run stops at the next
    /// check (between ops and every few rows inside long ops) with a cancelled error.
    pub cancel: Option<&'a AtomicBool>,
}

impl<'a> RunContext<'a> {
    /// A context with limits only: no deadline, fonts or watermark objects.
    pub fn new(limits: &'a Limits) -> Self {
        RunContext { limits, deadline: None, fonts: None, overlays: None, decoded: None, cancel: None }
    }

    /// Whether to go on: an error once every client left or the deadline passed. Cheap
    /// (one atomic load, one clock read), so long loops call it every few rows.
    pub(crate) fn check(&self) -> Result<(), ProcessError> {
        if self.cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(ProcessError::cancelled());
        }
        match self.deadline {
            Some(d) if Instant::now() >= d => Err(ProcessError::timeout()),
            _ => Ok(()),
        }
    }
}

/// A processed result.
#[derive(Debug)]
pub struct Output {
    /// Encoded bytes (image or JSON).
    pub bytes: Vec<u8>,
    /// MIME type of `bytes`.
    pub content_type: &'static str,
    /// Where the time went (metrics and `/explain`).
    pub trace: Trace,
}

/// How one run went: the shrink-on-load factor and per-stage times.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Trace {
    /// JPEG DCT scaling denominator used when decoding (1, 2, 4 or 8).
    pub shrink: u32,
    /// A progressive JPEG's AC refinement scans were skipped (a far smaller output).
    pub coarse_ac: bool,
    /// Header probe and decode.
    pub decode: std::time::Duration,
    /// Pixel operations.
    pub ops: std::time::Duration,
    /// Colour conversion and encoding.
    pub encode: std::time::Duration,
    /// The decode came from the decoded-source cache.
    pub decoded_cache_hit: bool,
}

/// How the log detail of a decode that panicked starts (see `codec::guard_decoder`):
/// such a request is a 4xx, but still worth a warning in the log.
pub const DECODER_PANIC: &str = "decoder panicked";

/// What kind of failure a [`ProcessError`] is. `error.rs` maps each kind to its HTTP
/// status and OSS `Code` (spec §5); this module only says what went wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProcessErrorKind {
    /// A parameter value is malformed or out of range.
    InvalidArgument,
    /// A required parameter is absent.
    MissingArgument,
    /// The request cannot be applied to this source (crop outside the image, base64).
    BadRequest,
    /// The source is not a decodable image (corrupt data, or a decoder that panicked).
    Undecodable,
    /// A source, output or cost limit was exceeded.
    ImageTooLarge,
    /// The watermark object is missing or unusable (spec §5.2).
    Watermark,
    /// A `style/<name>` that is not configured.
    NoSuchStyle,
    /// A feature the engine does not support yet.
    NotImplemented,
    /// An encoder or resizer failed on valid input (a bug).
    Internal,
    /// The deadline passed between two steps.
    Timeout,
    /// Every client waiting for the run went away (logged only; nobody receives it).
    Cancelled,
}

/// Why processing failed.
///
/// Carries a [`ProcessErrorKind`] (mapped to status and code by `error.rs`), the OSS `EC`
/// and the public message; parameter errors use the observed OSS message template
/// `The value: <v> of parameter: <p> is invalid.reason:<reason>`. `detail` is internal
/// text (decoder and encoder messages) that goes to the log only, never to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessError {
    kind: ProcessErrorKind,
    ec: Option<&'static str>,
    message: String,
    detail: Option<String>,
}

impl std::fmt::Display for ProcessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)?;
        match &self.detail {
            Some(d) => write!(f, " ({d})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for ProcessError {}

impl ProcessError {
    /// What kind of failure this is.
    pub fn kind(&self) -> ProcessErrorKind {
        self.kind
    }
    /// OSS EC, when known.
    pub fn ec(&self) -> Option<&'static str> {
        self.ec
    }
    /// Public message (for 4xx kinds; `error.rs` replaces it for 5xx).
    pub fn message(&self) -> String {
        self.message.clone()
    }
    /// Internal detail for the log, never sent.
    pub fn detail(&self) -> Option<&str> {
        self.detail.as_deref()
    }

    pub(crate) fn new(kind: ProcessErrorKind, ec: Option<&'static str>, message: impl Into<String>) -> Self {
        ProcessError { kind, ec, message: message.into(), detail: None }
    }

    /// Adds internal detail for the log.
    pub(crate) fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// 400 `InvalidArgument` with the OSS parameter message template.
    pub(crate) fn invalid(param: &str, value: &str, reason: &str, ec: Option<&'static str>) -> Self {
        Self::new(
            ProcessErrorKind::InvalidArgument,
            ec,
            format!("The value: {value} of parameter: {param} is invalid.reason:{reason}"),
        )
    }

    /// 400 `InvalidArgument` with a free message (unknown operation, bad chain shape).
    pub(crate) fn invalid_msg(msg: impl Into<String>, ec: Option<&'static str>) -> Self {
        Self::new(ProcessErrorKind::InvalidArgument, ec, msg)
    }

    /// 400 `MissingArgument`: a required parameter is absent.
    pub(crate) fn missing(op: &str, param: &str, ec: Option<&'static str>) -> Self {
        Self::new(
            ProcessErrorKind::MissingArgument,
            ec,
            format!("Missing argument: parameter {param} of operation {op} is required."),
        )
    }

    /// 400 `BadRequest`: crop outside the image, base64 errors.
    pub(crate) fn bad_request(msg: impl Into<String>, ec: Option<&'static str>) -> Self {
        Self::new(ProcessErrorKind::BadRequest, ec, msg)
    }

    /// 400 `BadRequest`: the source cannot be decoded; `detail` (the decoder's words)
    /// is logged, not sent.
    pub(crate) fn undecodable(detail: impl Into<String>) -> Self {
        Self::new(ProcessErrorKind::Undecodable, None, "The source image cannot be decoded.").with_detail(detail)
    }

    /// 400 `ImageTooLarge`: a source or output limit was exceeded.
    pub(crate) fn too_large(msg: impl Into<String>, ec: Option<&'static str>) -> Self {
        Self::new(ProcessErrorKind::ImageTooLarge, ec, msg)
    }

    /// 400 `ImageTooLarge`: decoding the source needs more working memory than the
    /// whole decode budget (`limits.decode_memory`).
    pub fn memory_too_large() -> Self {
        Self::too_large("The source image needs more memory to process than the server allows.", Some("0040-00000012"))
    }

    /// 400 `WatermarkError`: the watermark object is missing or unusable (spec §5.2).
    pub fn watermark(msg: impl Into<String>) -> Self {
        Self::new(ProcessErrorKind::Watermark, None, msg)
    }

    /// 404 `NoSuchStyle`.
    pub(crate) fn no_such_style() -> Self {
        Self::new(ProcessErrorKind::NoSuchStyle, None, "The specified style does not exist.")
    }

    /// 501 `NotImplemented`.
    #[allow(dead_code)] // kept for features the engine does not support yet
    pub(crate) fn not_implemented(msg: impl Into<String>) -> Self {
        Self::new(ProcessErrorKind::NotImplemented, None, msg)
    }

    /// 500 `InternalError`: an encoder or resizer failed on valid input (a bug). The
    /// text is detail for the log; the client sees only the code and request id.
    pub(crate) fn internal(detail: impl Into<String>) -> Self {
        Self::new(ProcessErrorKind::Internal, None, "Internal error.").with_detail(detail)
    }

    /// The deadline passed between two steps.
    pub(crate) fn timeout() -> Self {
        Self::new(ProcessErrorKind::Timeout, None, "Image processing exceeded its deadline.")
    }

    /// Every client waiting for the run went away; nobody receives this answer (the
    /// status is nginx's 499 "client closed request", for logs only).
    pub(crate) fn cancelled() -> Self {
        Self::new(ProcessErrorKind::Cancelled, None, "Every client waiting for the result went away.")
    }

    /// True for [`ProcessError::cancelled`].
    pub fn is_cancelled(&self) -> bool {
        self.kind == ProcessErrorKind::Cancelled
    }
}

/// Parses an `x-oss-process` value (already percent-decoded once).
///
/// # Errors
/// A 4xx `ProcessError` naming the operation and parameter (spec §1.2, §5).
pub fn parse(value: &str, styles: &Styles, limits: &Limits) -> Result<Pipeline, ProcessError> {
    parse::parse(value, styles, limits)
}

/// Runs a pipeline on source bytes.
///
/// # Errors
/// A `ProcessError` for undecodable sources, limits and failed operations.
pub fn run(src: &[u8], pipeline: &Pipeline, ctx: &RunContext<'_>) -> Result<Output, ProcessError> {
    pipeline::run(src, pipeline, ctx)
}

/// Peak working memory of [`run`] on `src` in bytes, estimated from the headers of the
/// source and the watermark objects before any pixel is decoded; the caller charges it
/// against the decode budget before queueing the run.
///
/// # Errors
/// The 4xx `run` would give from the header alone (unknown format, source or output
/// limits).
pub fn run_cost(
    src: &[u8],
    pipeline: &Pipeline,
    overlays: Option<&Overlays>,
    limits: &Limits,
) -> Result<u64, ProcessError> {
    cost::run_bytes(src, pipeline, overlays, limits)
}
