//! Decoded-source cache: keeps the shrink-on-load decode of recently used originals,
//! bounded in bytes, so the other variants of one original (a `srcset`: several widths
//! and formats) skip the decode, which for a large JPEG is mostly Huffman decoding that
//! no DCT scaling avoids.
//!
//! An entry is keyed by the source bytes' hash (so a changed object never matches), the
//! EXIF orientation applied and the exact load scale (shrink-on-load factor and AC
//! precision). A request only ever uses a decode made at the very scale it would decode
//! at itself: a finer decode would resize to the same size from other pixels, and the
//! output (and its ETag) would then depend on what the cache happened to hold, so the
//! same URL could give different bytes across request orders, restarts and nodes (issue
//! 20 item 7). Variants of one original that share a scale (every format of one size,
//! and nearby sizes) share the decode. Only still pictures are kept: animations are
//! rarely re-rendered at several sizes and cost many frames of memory.
//!
//! The cache gives way to large decodes: before a decode that needs more working memory
//! than is free under its capacity (a 16 MP progressive JPEG holds a 48 MB coefficient
//! buffer), entries are dropped, so cached pixels plus the decode in progress stay
//! within the one budget. The figure is the same estimate (`codec::working_bytes`) the
//! process-wide decode budget (`limits.decode_memory`) charges for the decode, and an
//! entry larger than the whole cache is never stored. Cached pixels are not charged to
//! that budget: decodes in flight and cached pixels together stay under
//! `limits.decode_memory + cache.decoded_size`. (The allocator returns the decode's freed
//! memory to the kernel once decoding goes quiet: see `crate::memory`.)

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use moka::policy::EvictionPolicy;

use super::codec::LoadScale;
use super::picture::Picture;

/// What identifies a decoded source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct DecodedKey {
    source: u128,
    orientation: u8,
    scale: LoadScale,
}

impl DecodedKey {
    pub(crate) fn new(src: &[u8], orientation: u8, scale: LoadScale) -> Self {
        DecodedKey { source: xxhash_rust::xxh3::xxh3_128(src), orientation, scale }
    }
}

/// One decoded, oriented source and the scale and precision it was decoded at.
#[derive(Debug)]
pub(crate) struct Decoded {
    pub scale: LoadScale,
    pub pic: Picture,
}

impl Decoded {
    fn bytes(&self) -> u64 {
        self.pic.frames.iter().map(|f| f.img.as_bytes().len() as u64).sum()
    }

    fn weight(&self) -> u32 {
        u32::try_from(self.bytes()).unwrap_or(u32::MAX)
    }
}

/// The cache; cloning shares it.
#[derive(Clone)]
pub struct DecodedCache {
    entries: moka::sync::Cache<DecodedKey, Arc<Decoded>>,
    capacity: u64,
    hits: Arc<AtomicU64>,
    misses: Arc<AtomicU64>,
}

impl std::fmt::Debug for DecodedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedCache").field("bytes", &self.entries.weighted_size()).finish()
    }
}

impl DecodedCache {
    /// A cache holding at most `bytes` of pixels; `None` when `bytes` is 0 (disabled).
    pub fn new(bytes: u64) -> Option<Self> {
        (bytes > 0).then(|| DecodedCache {
            capacity: bytes,
            // LRU: a srcset's variants arrive close together, and TinyLFU would refuse
            // a new original's first decode once the cache is full.
            entries: moka::sync::Cache::builder()
                .max_capacity(bytes)
                .weigher(|_k: &DecodedKey, v: &Arc<Decoded>| v.weight())
                .eviction_policy(EvictionPolicy::lru())
                .build(),
            hits: Arc::default(),
            misses: Arc::default(),
        })
    }

    /// The entry decoded at exactly the key's scale and precision.
    pub(crate) fn get(&self, key: &DecodedKey) -> Option<Arc<Decoded>> {
        let found = self.entries.get(key);
        let counter = if found.is_some() { &self.hits } else { &self.misses };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Stores a fresh decode and hands it back shared. A
    /// decode larger than the whole cache is handed back without being stored: moka
    /// would admit it and evict it only later, holding more than its capacity meanwhile.
    pub(crate) fn insert(&self, key: DecodedKey, decoded: Decoded) -> Arc<Decoded> {
        let decoded = Arc::new(decoded);
        if decoded.bytes() <= self.capacity {
            self.entries.insert(key, Arc::clone(&decoded));
        }
        decoded
    }

    /// Drops entries until `need` more bytes of working memory fit under the capacity.
    /// moka does not expose its LRU order, so victims are taken in iteration order;
    /// this only runs before decodes that are large against the whole budget.
    pub(crate) fn make_room(&self, need: u64) {
        self.entries.run_pending_tasks();
        let mut held = self.entries.weighted_size();
        if held.saturating_add(need) <= self.capacity {
            return;
        }
        // One by one: the housekeeping below then frees these, whereas `invalidate_all`
        // only marks entries, to be swept over later calls.
        for (key, entry) in &self.entries {
            if held.saturating_add(need) <= self.capacity {
                break;
            }
            held = held.saturating_sub(u64::from(entry.weight()));
            self.entries.invalidate(key.as_ref());
        }
        self.entries.run_pending_tasks();
    }

    /// Lookups that found a usable decode.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Lookups that had to decode.
    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    /// Bytes of pixels held now (after pending evictions run).
    pub fn weighted_size(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.weighted_size()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::DynamicImage;

    fn decoded(shrink: u32, w: u32) -> Decoded {
        Decoded { scale: at(shrink), pic: Picture::still(DynamicImage::new_rgb8(w, 10)) }
    }

    fn at(shrink: u32) -> LoadScale {
        LoadScale { shrink, coarse_ac: false }
    }

    fn key(src: &[u8], shrink: u32) -> DecodedKey {
        DecodedKey::new(src, 1, at(shrink))
    }

    #[test]
    fn serves_the_exact_scale_only() {
        let cache = DecodedCache::new(1 << 20).unwrap();
        cache.insert(key(b"source", 4), decoded(4, 100));
        assert!(cache.get(&key(b"source", 4)).is_some());
        // A finer decode would resize to the same size from other pixels: the bytes of
        // one URL would depend on what the cache held (issue 20 item 7).
        assert!(cache.get(&key(b"source", 8)).is_none(), "a finer decode never serves a coarser need");
        assert!(cache.get(&key(b"source", 2)).is_none(), "a coarser decode cannot serve a finer need");
        assert_eq!((cache.hits(), cache.misses()), (1, 2));
        // Both scales can be held side by side.
        cache.insert(key(b"source", 8), decoded(8, 50));
        assert!(cache.get(&key(b"source", 4)).is_some() && cache.get(&key(b"source", 8)).is_some());
    }

    #[test]
    fn coarse_and_full_precision_are_different_entries() {
        let cache = DecodedCache::new(1 << 20).unwrap();
        let coarse = LoadScale { shrink: 4, coarse_ac: true };
        let k = DecodedKey::new(b"progressive", 1, coarse);
        cache.insert(k, Decoded { scale: coarse, pic: Picture::still(DynamicImage::new_rgb8(100, 10)) });
        assert!(cache.get(&k).is_some());
        assert!(cache.get(&key(b"progressive", 4)).is_none(), "a nearer-size output needs every refinement scan");
        cache.insert(key(b"progressive", 4), decoded(4, 100));
        assert!(cache.get(&key(b"progressive", 4)).is_some());
    }

    #[test]
    fn keys_differ_by_bytes_and_orientation() {
        let cache = DecodedCache::new(1 << 20).unwrap();
        cache.insert(key(b"a", 1), decoded(1, 10));
        assert!(cache.get(&key(b"b", 1)).is_none());
        assert!(cache.get(&DecodedKey::new(b"a", 6, at(1))).is_none());
    }

    #[test]
    fn bounded_in_bytes() {
        let cache = DecodedCache::new(100_000).unwrap();
        for i in 0..20u32 {
            cache.insert(key(&i.to_le_bytes(), 1), decoded(1, 1000));
            // 30 kB each
        }
        assert!(cache.weighted_size() <= 100_000);
        assert!(DecodedCache::new(0).is_none());
    }

    #[test]
    fn never_holds_an_entry_larger_than_itself() {
        let cache = DecodedCache::new(20_000).unwrap();
        let k = key(b"big", 1);
        let handed = cache.insert(k, decoded(1, 1000)); // 30 kB
        assert_eq!(handed.pic.dims(), (1000, 10), "the decode is still handed back");
        assert!(cache.get(&k).is_none());
        assert_eq!(cache.weighted_size(), 0);
    }

    #[test]
    fn gives_way_to_a_large_decode() {
        let cache = DecodedCache::new(100_000).unwrap();
        for i in 0..3u32 {
            cache.insert(key(&i.to_le_bytes(), 1), decoded(1, 1000));
            // 30 kB each
        }
        cache.make_room(10_000);
        assert_eq!(cache.weighted_size(), 90_000, "enough room already: nothing dropped");
        cache.make_room(50_000);
        assert!(cache.weighted_size() <= 50_000, "{}", cache.weighted_size());
        assert!(cache.weighted_size() > 0, "only as much as needed is dropped");
        cache.make_room(200_000);
        assert_eq!(cache.weighted_size(), 0);
    }
}
