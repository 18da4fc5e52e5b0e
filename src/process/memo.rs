//! Parsed chains by their raw `x-oss-process` value, so a cache hit skips parsing and
//! canonicalising the chain it names (a hot URL repeats the same value).

use std::sync::Arc;

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
pub struct ChainMemo {
    parsed: moka::sync::Cache<String, Arc<ParsedChain>>,
    styles: Styles,
    limits: Limits,
}

impl std::fmt::Debug for ChainMemo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainMemo").field("entries", &self.parsed.entry_count()).finish()
    }
}

/// Longest value that is memoised; longer chains (big text watermarks) parse each time.
const MAX_MEMO_VALUE: usize = 512;

impl ChainMemo {
    /// A memo for chains parsed with these styles and limits.
    pub fn new(styles: Styles, limits: Limits, capacity: u64) -> Self {
        ChainMemo { parsed: moka::sync::Cache::new(capacity), styles, limits }
    }

    /// Parses `value` (percent-decoded once), or returns the earlier parse.
    ///
    /// # Errors
    /// As [`super::parse`].
    pub fn parse(&self, value: &str) -> Result<Arc<ParsedChain>, ProcessError> {
        if let Some(hit) = self.parsed.get(value) {
            return Ok(hit);
        }
        let parsed = Arc::new(ParsedChain::new(super::parse(value, &self.styles, &self.limits)?));
        if value.len() <= MAX_MEMO_VALUE {
            self.parsed.insert(value.to_owned(), Arc::clone(&parsed));
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
}
