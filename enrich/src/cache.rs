//! A bounded, sharded cache: each shard keeps two generations; when the young one is
//! full it becomes the old one and the previous old one is dropped. Hits in the old
//! generation are promoted, so hot keys survive; memory stays under the bound.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

struct Shard<K, V> {
    young: HashMap<K, Arc<V>>,
    old: HashMap<K, Arc<V>>,
}

/// A bounded concurrent cache of `Arc<V>` by key.
pub struct BoundedCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    per_generation: usize,
    hasher: RandomState,
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<K, V> std::fmt::Debug for BoundedCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoundedCache")
            .field("capacity", &(self.per_generation * 2 * SHARDS))
            .finish_non_exhaustive()
    }
}

impl<K: Hash + Eq + Clone, V> BoundedCache<K, V> {
    /// A cache holding at most about `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        young: HashMap::new(),
                        old: HashMap::new(),
                    })
                })
                .collect(),
            per_generation: (capacity / SHARDS / 2).max(1),
            hasher: RandomState::new(),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value for `key`, or `make()`'s, which is then cached.
    pub fn get_or_insert_with<Q>(&self, key: &Q, make: impl FnOnce() -> V) -> Arc<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(v) = s.young.get(key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Arc::clone(v);
            }
            if let Some((k, v)) = s.old.remove_entry(key) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Self::insert_into(&mut s, k, Arc::clone(&v), self.per_generation);
                return v;
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v = Arc::new(make());
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        Self::insert_into(&mut s, key.to_owned(), Arc::clone(&v), self.per_generation);
        v
    }

    /// Sets `key`'s value (replacing what was cached) and returns it.
    pub fn insert(&self, key: K, value: V) -> Arc<V> {
        let shard = &self.shards[(self.hasher.hash_one(&key) as usize) % SHARDS];
        let v = Arc::new(value);
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        s.old.remove(&key);
        Self::insert_into(&mut s, key, Arc::clone(&v), self.per_generation);
        v
    }

    fn insert_into(s: &mut Shard<K, V>, k: K, v: Arc<V>, limit: usize) {
        if s.young.len() >= limit {
            s.old = std::mem::take(&mut s.young);
        }
        s.young.insert(k, v);
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.young.len() + s.old.len()).unwrap_or(0))
            .sum()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_bounded_and_keeps_hot_keys() {
        let c: BoundedCache<String, usize> = BoundedCache::new(320);
        for i in 0..10_000 {
            c.get_or_insert_with(&format!("k{i}"), || i);
            c.get_or_insert_with("hot", || 0);
        }
        assert!(c.len() <= 320 + SHARDS, "{}", c.len());
        let mut made = false;
        c.get_or_insert_with("hot", || {
            made = true;
            1
        });
        assert!(!made, "a hot key is not evicted");
        let (hits, misses) = c.stats();
        assert!(hits >= 9_999 && misses >= 10_000);
    }
}
