//! Content-Encoding for small text responses (JSON, XML) only: images are already
//! compressed, and re-compressing them would cost CPU for nothing.
//!
//! Brotli is preferred over gzip when the client accepts both (smaller for the
//! short, repetitive bodies here); `identity` otherwise. Bodies below
//! `MIN_BYTES` are left alone: the framing would outweigh the saving.

use bytes::Bytes;
use std::io::Write;

/// Smallest body worth compressing.
const MIN_BYTES: usize = 256;

/// Chosen coding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    /// `br`.
    Brotli,
    /// `gzip`.
    Gzip,
}

impl Coding {
    /// Header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Coding::Brotli => "br",
            Coding::Gzip => "gzip",
        }
    }
}

/// True for the content types we compress.
pub fn is_compressible(content_type: &str) -> bool {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    matches!(ct, "application/json" | "application/xml" | "text/xml")
}

/// Picks a coding from `Accept-Encoding` (q=0 means refused).
pub fn negotiate(accept_encoding: &str) -> Option<Coding> {
    let accepts = |name: &str| crate::request::list_accepts(accept_encoding, name);
    if accepts("br") {
        Some(Coding::Brotli)
    } else if accepts("gzip") {
        Some(Coding::Gzip)
    } else {
        None
    }
}

/// Compresses `body` when worthwhile; returns the coding used, if any.
pub fn compress(body: &[u8], coding: Coding) -> Option<Bytes> {
    if body.len() < MIN_BYTES {
        return None;
    }
    let out = match coding {
        Coding::Gzip => {
            let mut enc =
                flate2::write::GzEncoder::new(Vec::with_capacity(body.len() / 2), flate2::Compression::fast());
            enc.write_all(body).ok()?;
            enc.finish().ok()?
        }
        Coding::Brotli => {
            let mut out = Vec::with_capacity(body.len() / 2);
            {
                // Quality 5: most of brotli's gain at a small fraction of its top-level cost.
                let mut enc = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                enc.write_all(body).ok()?;
            }
            out
        }
    };
    (out.len() < body.len()).then(|| Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn negotiation_prefers_brotli_and_honours_q_zero() {
        assert_eq!(negotiate("gzip, deflate, br, zstd"), Some(Coding::Brotli));
        assert_eq!(negotiate("gzip"), Some(Coding::Gzip));
        assert_eq!(negotiate("br;q=0, gzip"), Some(Coding::Gzip));
        assert_eq!(negotiate("identity"), None);
        assert_eq!(negotiate(""), None);
    }

    #[test]
    fn round_trips_and_skips_small_bodies() {
        let body = "<Error><Code>NoSuchKey</Code></Error>\n".repeat(20);
        let gz = compress(body.as_bytes(), Coding::Gzip).unwrap();
        let mut out = String::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_string(&mut out).unwrap();
        assert_eq!(out, body);
        let br = compress(body.as_bytes(), Coding::Brotli).unwrap();
        let mut out = String::new();
        brotli::Decompressor::new(&br[..], 4096).read_to_string(&mut out).unwrap();
        assert_eq!(out, body);
        assert!(compress(b"{}", Coding::Gzip).is_none());
        assert!(is_compressible("application/json; charset=utf-8"));
        assert!(!is_compressible("image/jpeg"));
    }
}
