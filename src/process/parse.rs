//! `x-oss-process` tokenizer and dispatcher (spec §1.2): no pixels, no I/O, no image crates.
//!
//! The value is split on `/` into operations and each operation on `,` into parameter
//! tokens; a token is split at its **first** `_` into key and value (base64url values
//! contain `_`), a token without `_` is a positional value. Typed parsing and range
//! checks live in `ops/<action>.rs::parse_args`; this file only provides the shared
//! helpers ([`Args`]) and the chain-level rules: `image/` prefix, `style/<name>`
//! expansion, unknown operations, empty segments ignored, `info`/`average-hue` last,
//! and the `max_ops` limit.

use super::ops::{self, Op};
use super::pipeline::{Pipeline, Terminal};
use super::{Limits, ProcessError, Styles};

/// The parameters of one operation, borrowed from the request value.
#[derive(Debug)]
pub(crate) struct Args<'a> {
    /// Operation name, used in error messages.
    pub op: &'a str,
    /// Tokens without `_`, in order.
    pub positional: Vec<&'a str>,
    /// `key_value` tokens, in order (duplicates kept; lookups take the last).
    pub keyed: Vec<(&'a str, &'a str)>,
}

/// Why a number token was rejected.
enum NumError {
    NotDigit,
    OutOfRange,
}

/// Parses an optionally negative decimal integer; huge values saturate (and then fail the
/// range check) rather than being reported as "not a digit".
fn parse_number(s: &str) -> Option<i64> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let neg = s.starts_with('-');
    Some(s.parse::<i64>().unwrap_or(if neg { i64::MIN } else { i64::MAX }))
}

fn check_range(s: &str, min: i64, max: i64) -> Result<i64, NumError> {
    let v = parse_number(s).ok_or(NumError::NotDigit)?;
    if v < min || v > max {
        return Err(NumError::OutOfRange);
    }
    Ok(v)
}

/// Builds the OSS-style message for a rejected number.
pub(crate) fn number_error(param: &str, value: &str, min: i64, max: i64, ec: Option<&'static str>) -> ProcessError {
    if parse_number(value).is_none() {
        ProcessError::invalid(param, value, "Value must be digit", ec)
    } else {
        ProcessError::invalid(param, value, &format!("Value must be between {min} and {max}"), ec)
    }
}

impl<'a> Args<'a> {
    /// Splits the tokens of one operation (the op name already removed).
    pub fn new(op: &'a str, tokens: impl Iterator<Item = &'a str>) -> Self {
        let mut positional = Vec::new();
        let mut keyed = Vec::new();
        for t in tokens {
            // [decision] spec §1.2 rule 7: empty parameter tokens are ignored.
            if t.is_empty() {
                continue;
            }
            match t.split_once('_') {
                Some((k, v)) => keyed.push((k, v)),
                None => positional.push(t),
            }
        }
        Args { op, positional, keyed }
    }

    /// The last value given for `key` (spec §1.2 rule 9: last one wins).
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.keyed.iter().rev().find(|(k, _)| *k == key).map(|(_, v)| *v)
    }

    /// An integer parameter in `[min, max]`, if present.
    pub fn int(&self, key: &str, min: i64, max: i64, ec: Option<&'static str>) -> Result<Option<i64>, ProcessError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => check_range(v, min, max).map(Some).map_err(|_| number_error(key, v, min, max, ec)),
        }
    }

    /// The single positional value of a one-value operation (spec §1.2 rule 5).
    ///
    /// `missing_ec` is used when no value is given, `extra_ec` when several are.
    pub fn single(&self, missing_ec: Option<&'static str>) -> Result<&'a str, ProcessError> {
        match self.positional.as_slice() {
            [] => Err(ProcessError::missing(self.op, "value", missing_ec)),
            [v] => Ok(v),
            [_, rest @ ..] => Err(ProcessError::invalid(
                self.op,
                &rest.join(","),
                "Too many values for this operation",
                Some("0040-00000203"),
            )),
        }
    }

    /// The single positional integer of a one-value operation, in `[min, max]`.
    pub fn single_int(
        &self,
        min: i64,
        max: i64,
        missing_ec: Option<&'static str>,
        invalid_ec: Option<&'static str>,
    ) -> Result<i64, ProcessError> {
        let v = self.single(missing_ec)?;
        check_range(v, min, max).map_err(|_| number_error(self.op, v, min, max, invalid_ec))
    }
}

/// Decodes a base64url value (spec §4.15): `-`/`_` alphabet, padding optional; any other
/// character is rejected.
pub(crate) fn base64url(value: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    use base64::Engine as _;
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new()
            .with_decode_padding_mode(DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    if value.is_empty() {
        return None;
    }
    ENGINE.decode(value).ok()
}

/// A style name: 1–63 of letters, digits, `_`, `-`, `.` (spec §4.18).
fn is_style_name(name: &str) -> bool {
    (1..=63).contains(&name.len()) && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Entry point behind [`super::parse`].
pub(crate) fn parse(value: &str, styles: &Styles, limits: &Limits) -> Result<Pipeline, ProcessError> {
    if let Some(name) = value.strip_prefix("style/") {
        // [decision] spec §4.18: `style/<name>` must be the whole value.
        if !is_style_name(name) {
            return Err(ProcessError::invalid("style", name, "Invalid style name", None));
        }
        let Some(chain) = styles.get(name) else {
            return Err(ProcessError::no_such_style());
        };
        // A style's content uses the same grammar but may not refer to another style.
        if !chain.starts_with("image/") && chain != "image" {
            return Err(ProcessError::invalid("style", name, "Style content must be an image/ chain", None));
        }
        return parse_image_chain(chain, limits);
    }
    parse_image_chain(value, limits)
}

fn parse_image_chain(value: &str, limits: &Limits) -> Result<Pipeline, ProcessError> {
    let mut segments = value.split('/');
    let first = segments.next().unwrap_or_default();
    if first != "image" {
        // [decision] spec §1.2 rule 1: empty value or another prefix → 400 InvalidArgument.
        return Err(ProcessError::invalid_msg(
            format!("The x-oss-process value must start with image/ or style/ (got: {first})."),
            None,
        ));
    }
    let mut pipeline = Pipeline::default();
    let mut count = 0usize;
    for seg in segments {
        // [decision] spec §1.2 rule 7: empty segments are ignored.
        if seg.is_empty() {
            continue;
        }
        count += 1;
        if count > limits.max_ops {
            return Err(ProcessError::invalid_msg(
                format!("Too many operations in one chain (limit {}).", limits.max_ops),
                None,
            ));
        }
        if pipeline.terminal.is_some() {
            // [decision] spec §1.3: info/average-hue must be the last operation.
            return Err(ProcessError::invalid_msg("info and average-hue must be the last operation.", None));
        }
        let mut tokens = seg.split(',');
        let name = tokens.next().unwrap_or_default();
        let args = Args::new(name, tokens);
        match name {
            "resize" => pipeline.ops.push(Op::Resize(ops::resize::parse_args(&args)?)),
            "crop" => pipeline.ops.push(Op::Crop(ops::crop::parse_args(&args)?)),
            "indexcrop" => pipeline.ops.push(Op::IndexCrop(ops::indexcrop::parse_args(&args)?)),
            "circle" => pipeline.ops.push(Op::Circle(ops::circle::parse_args(&args)?)),
            "rounded-corners" => pipeline.ops.push(Op::RoundedCorners(ops::rounded_corners::parse_args(&args)?)),
            "rotate" => pipeline.ops.push(Op::Rotate(ops::rotate::parse_args(&args)?)),
            "blur" => pipeline.ops.push(Op::Blur(ops::blur::parse_args(&args)?)),
            "bright" => pipeline.ops.push(Op::Bright(ops::bright::parse_args(&args)?)),
            "contrast" => pipeline.ops.push(Op::Contrast(ops::contrast::parse_args(&args)?)),
            "sharpen" => pipeline.ops.push(Op::Sharpen(ops::sharpen::parse_args(&args)?)),
            "watermark" => pipeline.ops.push(Op::Watermark(ops::watermark::parse_args(&args)?)),
            // Encoder settings: wherever they appear, the last one wins (spec §1.3).
            "auto-orient" => pipeline.auto_orient = ops::auto_orient::parse_args(&args)?,
            "format" => pipeline.format = Some(ops::format::parse_args(&args)?),
            "quality" => pipeline.quality = Some(ops::quality::parse_args(&args)?),
            "interlace" => pipeline.interlace = Some(ops::interlace::parse_args(&args)?),
            "info" => pipeline.terminal = Some(Terminal::Info),
            "average-hue" => pipeline.terminal = Some(Terminal::AverageHue),
            _ => {
                return Err(ProcessError::invalid_msg(
                    format!("The operation: {name} does not exist."),
                    Some("0040-00000213"),
                ))
            }
        }
    }
    if count == 0 {
        return Err(ProcessError::invalid_msg("operator not specified", Some("0040-00000212")));
    }
    // Spec §4.15: at most 3 image watermarks per request ([decision] 400 InvalidArgument).
    let images = pipeline.ops.iter().filter(|o| matches!(o, Op::Watermark(w) if w.image.is_some())).count();
    if images > 3 {
        return Err(ProcessError::invalid_msg("At most 3 image watermarks are allowed in one request.", None));
    }
    Ok(pipeline)
}
