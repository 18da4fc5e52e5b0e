//! The bounded, byte-weighted store (moka) plus a path index for purges.
//!
//! moka holds `key hash → entry`, weighted by body bytes, with LRU eviction: a CDN
//! node must admit what it just filled (moka's default TinyLFU admission refuses
//! new keys without history once full, so a fresh fill could vanish at once).
//!
//! Beside it, an ordered index `path → {key hash → host, url}` lets a directory
//! purge walk only the paths under its prefix and an ignore-params purge touch
//! only the variants of one path, so purge cost follows the entries touched, not
//! the cache size. The eviction listener keeps the index in step; a generation
//! number stops a late eviction notice from removing a re-inserted key.

use super::key::CacheKey;
use super::meta::Entry;
use moka::notification::RemovalCause;
use moka::policy::EvictionPolicy;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

#[derive(Clone)]
struct Stored {
    entry: Arc<Entry>,
    generation: u64,
}

#[derive(Debug, Clone)]
struct Indexed {
    generation: u64,
    key: CacheKey,
}

type PathIndex = BTreeMap<String, HashMap<[u8; 16], Indexed>>;

/// The store.
pub struct Store {
    cache: moka::sync::Cache<[u8; 16], Stored>,
    index: Arc<Mutex<PathIndex>>,
    generation: AtomicU64,
    evictions: Arc<AtomicU64>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("entries", &self.cache.entry_count()).finish()
    }
}

impl Store {
    /// A store holding at most `capacity` bytes.
    pub fn new(capacity: u64) -> Store {
        let index: Arc<Mutex<PathIndex>> = Arc::default();
        let evictions = Arc::new(AtomicU64::new(0));
        let listener_index = Arc::clone(&index);
        let listener_evictions = Arc::clone(&evictions);
        let cache = moka::sync::Cache::builder()
            .max_capacity(capacity)
            .weigher(|_k: &[u8; 16], v: &Stored| v.entry.weight())
            .eviction_policy(EvictionPolicy::lru())
            .eviction_listener(move |k: Arc<[u8; 16]>, v: Stored, cause| {
                crate::memory::note_freed();
                if cause == RemovalCause::Replaced {
                    return;
                }
                if cause == RemovalCause::Size {
                    listener_evictions.fetch_add(1, Ordering::Relaxed);
                }
                let mut index = listener_index.lock().unwrap_or_else(|p| p.into_inner());
                unindex(&mut index, v.entry.key.path(), &k, v.generation);
            })
            .build();
        Store { cache, index, generation: AtomicU64::new(1), evictions }
    }

    /// The entry for a key.
    pub fn get(&self, hash: &[u8; 16]) -> Option<Arc<Entry>> {
        self.cache.get(hash).map(|s| s.entry)
    }

    /// Stores an entry (replacing any previous one for its key).
    pub fn insert(&self, entry: Arc<Entry>) {
        let generation = self.generation.fetch_add(1, Ordering::Relaxed);
        let key = entry.key.clone();
        {
            let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            index.entry(key.path().to_owned()).or_default().insert(key.hash, Indexed { generation, key: key.clone() });
        }
        self.cache.insert(key.hash, Stored { entry, generation });
    }

    /// Removes one key.
    pub fn remove(&self, hash: &[u8; 16]) -> bool {
        self.cache.remove(hash).is_some()
    }

    /// Keys of every cached variant of exactly `path`.
    pub fn keys_at_path(&self, path: &str) -> Vec<CacheKey> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.get(path).map(|m| m.values().map(|i| i.key.clone()).collect()).unwrap_or_default()
    }

    /// Keys of every cached URL whose path starts with `prefix`.
    pub fn keys_under(&self, prefix: &str) -> Vec<CacheKey> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index
            .range(prefix.to_owned()..)
            .take_while(|(p, _)| p.starts_with(prefix))
            .flat_map(|(_, m)| m.values().map(|i| i.key.clone()))
            .collect()
    }

    /// Every indexed key (for regex purges, which cannot use the ordering).
    pub fn all_keys(&self) -> Vec<CacheKey> {
        let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        index.values().flat_map(|m| m.values().map(|i| i.key.clone())).collect()
    }

    /// Entry count after pending maintenance.
    pub fn entry_count(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.entry_count()
    }

    /// Weighted size in bytes after pending maintenance.
    pub fn weighted_size(&self) -> u64 {
        self.cache.run_pending_tasks();
        self.cache.weighted_size()
    }

    /// Entries evicted for size so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }
}

fn unindex(index: &mut PathIndex, path: &str, hash: &[u8; 16], generation: u64) {
    let Some(variants) = index.get_mut(path) else {
        return;
    };
    if variants.get(hash).is_some_and(|i| i.generation == generation) {
        variants.remove(hash);
    }
    if variants.is_empty() {
        index.remove(path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::StatusCode;
    use std::time::Duration;

    fn entry(path: &str, query: Option<&str>, size: usize) -> Arc<Entry> {
        let key = CacheKey::new("h", path, query, None, None, &[]);
        Arc::new(Entry::new(
            key,
            StatusCode::OK,
            Bytes::from(vec![0u8; size]),
            "image/jpeg".into(),
            None,
            None,
            None,
            Duration::from_secs(60),
        ))
    }

    #[test]
    fn index_finds_variants_and_prefixes() {
        let s = Store::new(1 << 20);
        s.insert(entry("/a/1.jpg", None, 10));
        s.insert(entry("/a/1.jpg", Some("v=2"), 10));
        s.insert(entry("/a/b/2.jpg", None, 10));
        s.insert(entry("/ab.jpg", None, 10));
        assert_eq!(s.keys_at_path("/a/1.jpg").len(), 2);
        assert_eq!(s.keys_under("/a/").len(), 3);
        assert_eq!(s.all_keys().len(), 4);
    }

    #[test]
    fn removal_and_eviction_clean_the_index_but_reinsert_survives() {
        let s = Store::new(1 << 20);
        let e = entry("/x.jpg", None, 10);
        s.insert(Arc::clone(&e));
        assert!(s.remove(&e.key.hash));
        s.insert(Arc::clone(&e));
        s.entry_count();
        assert_eq!(s.keys_at_path("/x.jpg").len(), 1);
        assert!(s.get(&e.key.hash).is_some());
    }

    #[test]
    fn capacity_is_bytes_and_lru_keeps_the_newest() {
        let s = Store::new(100_000);
        for i in 0..50 {
            s.insert(entry(&format!("/{i}.jpg"), None, 10_000));
        }
        assert!(s.weighted_size() <= 100_000);
        assert!(s.get(&CacheKey::new("h", "/49.jpg", None, None, None, &[]).hash).is_some());
        assert!(s.evictions() > 0);
        assert!(s.all_keys().len() <= 10);
    }
}
