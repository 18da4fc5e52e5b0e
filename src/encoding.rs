//! Content-Encoding for small text responses (JSON, XML) only: images are already
//! compressed, and re-compressing them would cost CPU for nothing.
//!
//! Brotli is preferred over gzip when the client accepts both (smaller for the
//! short, repetitive bodies here); `identity` otherwise. Bodies below
//! `MIN_BYTES` are left alone: the framing would outweigh the saving.
//!
//! Cached responses are compressed once, when they are filled ([`precompress`], on the
//! worker pool for large bodies), and the coded copies are kept with the entry, as
//! Varnish keeps its gzip copy and nginx serves `gzip_static` files: a hit only picks
//! a copy, so no hit ever compresses (a 31 MB JSON with `br` cost 1.7 s per hit on the
//! reactor before). Range requests are answered from the identity body.

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

/// Bodies compressed at fill time on the calling task; larger ones go to the worker pool.
pub const INLINE_MAX: usize = 64 << 10;
/// Largest body compressed at all (cached bodies are bounded by `cache.max_object_size`,
/// 32 MiB by default, already; this caps the CPU one fill can spend here).
pub const MAX_PRECOMPRESS: usize = 64 << 20;

/// True when a body of this type and size gets coded copies at fill time.
pub fn wants_precompress(content_type: &str, len: usize) -> bool {
    is_compressible(content_type) && (MIN_BYTES..=MAX_PRECOMPRESS).contains(&len)
}

/// The coded copies of `body` kept with a cache entry: brotli and gzip, each only
/// when it is smaller than the body. CPU-heavy for large bodies: run it off the reactor.
pub fn precompress(body: &[u8]) -> Vec<(&'static str, Bytes)> {
    [Coding::Brotli, Coding::Gzip].into_iter().filter_map(|c| compress(body, c).map(|b| (c.as_str(), b))).collect()
}

/// True when `Accept-Encoding` accepts `coding` (q=0 means refused).
pub fn accepts(accept_encoding: &str, coding: Coding) -> bool {
    crate::request::list_accepts(accept_encoding, coding.as_str())
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

    #[test]
    fn precompress_makes_both_copies_once_and_skips_what_does_not_shrink() {
        let body = "{\"k\": [1, 2, 3]}\n".repeat(100);
        let copies = precompress(body.as_bytes());
        assert_eq!(copies.iter().map(|(c, _)| *c).collect::<Vec<_>>(), ["br", "gzip"]);
        assert!(precompress(b"{}").is_empty());
        assert!(wants_precompress("application/json", 1000));
        assert!(!wants_precompress("application/json", 10));
        assert!(!wants_precompress("image/png", 1 << 20));
        assert!(accepts("gzip, br;q=0", Coding::Gzip) && !accepts("gzip, br;q=0", Coding::Brotli));
    }
}
