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
//! - [`ProcessError`]: `status()`, `code()`, `ec()`, `message()` for `error.rs`.

use std::collections::HashMap;
use std::time::Instant;

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: 20 << 20,
            max_source_pixels: 250_000_000,
            max_output_pixels: 4096 * 4096 * 2,
            max_frames: 300,
            max_ops: 32,
        }
    }
}

/// A parsed processing chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    raw: String,
}

impl Pipeline {
    /// Canonical spelling, used in the cache key.
    pub fn canonical(&self) -> String {
        self.raw.clone()
    }
}

/// Per-run context.
#[derive(Debug, Clone, Copy)]
pub struct RunContext<'a> {
    /// Limits.
    pub limits: &'a Limits,
    /// Work past this instant is abandoned.
    pub deadline: Option<Instant>,
}

/// A processed result.
#[derive(Debug)]
pub struct Output {
    /// Encoded bytes (image or JSON).
    pub bytes: Vec<u8>,
    /// MIME type of `bytes`.
    pub content_type: &'static str,
}

/// Why processing failed.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ProcessError {
    status: u16,
    code: &'static str,
    ec: Option<&'static str>,
    message: String,
}

impl ProcessError {
    /// HTTP status.
    pub fn status(&self) -> u16 {
        self.status
    }
    /// OSS error Code.
    pub fn code(&self) -> &'static str {
        self.code
    }
    /// OSS EC, when known.
    pub fn ec(&self) -> Option<&'static str> {
        self.ec
    }
    /// Public message.
    pub fn message(&self) -> String {
        self.message.clone()
    }
}

/// Parses an `x-oss-process` value.
///
/// # Errors
/// A 4xx `ProcessError` naming the operation and parameter.
pub fn parse(value: &str, _styles: &Styles, _limits: &Limits) -> Result<Pipeline, ProcessError> {
    Err(ProcessError {
        status: 501,
        code: "NotImplemented",
        ec: None,
        message: format!("image processing is not implemented yet ({value})"),
    })
}

/// Runs a pipeline on source bytes.
///
/// # Errors
/// A `ProcessError` for undecodable sources, limits and failed operations.
pub fn run(_src: &[u8], _pipeline: &Pipeline, _ctx: &RunContext<'_>) -> Result<Output, ProcessError> {
    Err(ProcessError { status: 501, code: "NotImplemented", ec: None, message: "not implemented".into() })
}
