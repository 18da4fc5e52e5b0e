//! Parsed chains by their `x-oss-process` value, so a cache hit skips parsing and
//! canonicalising the chain it names (a hot URL repeats the same value).

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::{Limits, Pipeline, ProcessError, Styles};

/// A parsed chain and its canonical spelling (the cache key's).
#[derive(Debug)]
pub struct ParsedChain {
    /// The chain.
    pub pipeline: Pipeline,
    /// `pipeline.canonical()`, computed once.
    pub canonical: String,
}

impl ParsedChain {
    /// Wraps a pipeline, computing its canonical spelling.
    pub fn new(pipeline: Pipeline) -> Self {
        let canonical = pipeline.canonical();
        ParsedChain { pipeline, canonical }
    }
}

/// The memo: bounded by entry count; errors are not kept (they are cheap to redo and
/// would let junk URLs evict good chains).
///
/// A plain map behind a read-write lock, emptied when full, rather than an LRU cache:
/// every cache hit reads it, and a miss here only costs a parse, so the bookkeeping an
/// LRU does on each read (moka: a read log, a clock read, periodic maintenance on the
/// reading thread) is not worth it. A chain in use is back after one parse.
pub struct ChainMemo {
    parsed: RwLock<HashMap<Box<str>, Arc<ParsedChain>>>,
    capacity: usize,
    styles: Styles,
    limits: Limits,
    /// The configured OSS style delimiters (`style_delimiters`), kept with the styles
    /// they name so a path's style suffix and the style it expands to come from one
    /// configuration.
    delimiters: Box<str>,
}

impl std::fmt::Debug for ChainMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let entries = self.parsed.read().map_or(0, |m| m.len());
        f.debug_struct("ChainMemo").field("entries", &entries).finish()
    }
}

/// Longest value that is memoised; longer chains (big text watermarks) parse each time.
const MAX_MEMO_VALUE: usize = 512;

impl ChainMemo {
    /// A memo for chains parsed with these styles and limits.
    pub fn new(styles: Styles, limits: Limits, capacity: u64) -> Self {
        let capacity = usize::try_from(capacity).unwrap_or(usize::MAX).max(1);
        ChainMemo { parsed: RwLock::default(), capacity, styles, limits, delimiters: "".into() }
    }

    /// Turns on `<key><delimiter><style>` URLs for these delimiters (any of `-`, `_`,
    /// `/`, `!`, validated by the config; empty: off).
    #[must_use]
    pub fn with_style_delimiters(mut self, delimiters: &str) -> Self {
        self.delimiters = delimiters.into();
        self
    }

    /// The configured style delimiters (empty: style URLs are off).
    pub fn style_delimiters(&self) -> &str {
        &self.delimiters
    }

    /// True when `name` is a configured style.
    pub fn has_style(&self, name: &str) -> bool {
        self.styles.contains_key(name)
    }

    /// The styles chains are parsed with.
    pub fn styles(&self) -> &Styles {
        &self.styles
    }

    /// Parses `value` (percent-decoded once), or returns the earlier parse.
    ///
    /// # Errors
    /// As [`super::parse`].
    pub fn parse(&self, value: &str) -> Result<Arc<ParsedChain>, ProcessError> {
        self.parse_with(value, Cow::Borrowed)
    }

    /// [`ChainMemo::parse`] for the value as it stands in the query, still
    /// percent-encoded: a hit skips the decoding too (decoding a long chain on every
    /// cache hit was a visible share of the hit path's CPU).
    ///
    /// # Errors
    /// As [`super::parse`].
    pub fn parse_encoded(&self, encoded: &str) -> Result<Arc<ParsedChain>, ProcessError> {
        self.parse_with(encoded, crate::url::decode_component)
    }

    fn parse_with<'a>(
        &self,
        key: &'a str,
        decode: impl FnOnce(&'a str) -> Cow<'a, str>,
    ) -> Result<Arc<ParsedChain>, ProcessError> {
        // A poisoned lock only means a panic elsewhere mid-insert; the map is still whole.
        if let Some(hit) = self.parsed.read().unwrap_or_else(|p| p.into_inner()).get(key) {
            return Ok(Arc::clone(hit));
        }
        let parsed = Arc::new(ParsedChain::new(super::parse(&decode(key), &self.styles, &self.limits)?));
        if key.len() <= MAX_MEMO_VALUE {
            let mut map = self.parsed.write().unwrap_or_else(|p| p.into_inner());
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(key.into(), Arc::clone(&parsed));
        }
        Ok(parsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memoised_parse_equals_a_fresh_one() {
        let memo = ChainMemo::new(Styles::new(), Limits::default(), 16);
        let value = "image/resize,m_fill,w_200,h_100/format,webp/quality,q_80";
        let first = memo.parse(value).unwrap();
        let second = memo.parse(value).unwrap();
        assert!(Arc::ptr_eq(&first, &second), "second parse comes from the memo");
        let fresh = super::super::parse(value, &Styles::new(), &Limits::default()).unwrap();
        assert_eq!(first.pipeline, fresh);
        assert_eq!(first.canonical, fresh.canonical());
        assert!(memo.parse("image/resize,w_0").is_err());
        assert!(memo.parse("image/resize,w_0").is_err(), "errors are never memoised");
    }

    #[test]
    fn encoded_values_are_decoded_before_parsing_and_memoised_as_sent() {
        let memo = ChainMemo::new(Styles::new(), Limits::default(), 16);
        let encoded = "image%2Fresize%2Cm_fill%2Cw_200%2Ch_100";
        let first = memo.parse_encoded(encoded).unwrap();
        assert_eq!(first.pipeline, memo.parse("image/resize,m_fill,w_200,h_100").unwrap().pipeline);
        assert!(Arc::ptr_eq(&first, &memo.parse_encoded(encoded).unwrap()), "the encoded spelling is memoised");
        assert!(memo.parse_encoded("image%2Fresize%2Cw_0").is_err());
    }

    #[test]
    fn bounded_by_entry_count() {
        let memo = ChainMemo::new(Styles::new(), Limits::default(), 4);
        for w in 1..=50 {
            memo.parse(&format!("image/resize,w_{w}")).unwrap();
            assert!(memo.parsed.read().unwrap().len() <= 4);
        }
        let value = "image/resize,w_7";
        let first = memo.parse(value).unwrap();
        assert!(Arc::ptr_eq(&first, &memo.parse(value).unwrap()), "a chain in use is memoised again");
    }
}
