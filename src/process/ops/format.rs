//! `format,<fmt>` (spec §4.12): the output encoder. Also the list of image formats the
//! engine knows, with their OSS names and MIME types (spec §3).

use crate::process::parse::Args;
use crate::process::ProcessError;

/// An image format (source or output).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// JPEG
    Jpg,
    /// PNG
    Png,
    /// WebP
    Webp,
    /// BMP
    Bmp,
    /// GIF
    Gif,
    /// TIFF
    Tiff,
    /// AVIF: output only, and only through auto-format (`format,avif` is refused as
    /// OSS's region-limited advanced compression, spec §1.1).
    Avif,
}

impl Format {
    /// OSS name (`info` Format value, `format,` value).
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Jpg => "jpg",
            Format::Png => "png",
            Format::Webp => "webp",
            Format::Bmp => "bmp",
            Format::Gif => "gif",
            Format::Tiff => "tiff",
            Format::Avif => "avif",
        }
    }
    /// Content-Type.
    pub fn mime(self) -> &'static str {
        match self {
            Format::Jpg => "image/jpeg",
            Format::Png => "image/png",
            Format::Webp => "image/webp",
            Format::Bmp => "image/bmp",
            Format::Gif => "image/gif",
            Format::Tiff => "image/tiff",
            Format::Avif => "image/avif",
        }
    }
}

/// Parses `format,<fmt>`. [decision] `jpeg` is an alias of `jpg`; `heic`/`avif` are
/// region-limited in OSS and not supported here (400, EC `-206`).
pub(crate) fn parse_args(a: &Args<'_>) -> Result<Format, ProcessError> {
    let v = a.single(Some("0040-00000207"))?;
    Ok(match v {
        "jpg" | "jpeg" => Format::Jpg,
        "png" => Format::Png,
        "webp" => Format::Webp,
        "bmp" => Format::Bmp,
        "gif" => Format::Gif,
        "tiff" => Format::Tiff,
        _ => {
            return Err(ProcessError::invalid(
                "format",
                v,
                "Value must be one of jpg, png, webp, bmp, gif, tiff",
                Some("0040-00000206"),
            ))
        }
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    #[test]
    fn values() {
        let p = |s: &str| parse_args(&Args::new("format", s.split(',').filter(|t| !t.is_empty())));
        assert_eq!(p("jpeg"), Ok(Format::Jpg));
        assert_eq!(p("tiff"), Ok(Format::Tiff));
        assert_eq!(p("dng").unwrap_err().ec(), Some("0040-00000206"));
        assert_eq!(p("heic").unwrap_err().ec(), Some("0040-00000206"));
        assert_eq!(p("").unwrap_err().ec(), Some("0040-00000207"));
        assert_eq!(p("png,jpg").unwrap_err().ec(), Some("0040-00000203"));
    }
}
