//! A bounded, sharded cache: each shard keeps two generations; when the young one is
//! full it becomes the old one and the previous old one is dropped. Hits in the old
//! generation are promoted, so hot keys survive; memory stays under the bound.
//!
//! A key is hashed once per lookup (foldhash, seeded per cache): the hash picks the
//! shard and then the slot in that shard's tables. foldhash's `quality` variant: the
//! `fast` one left the bits that pick the shard uneven on addresses and agents (one
//! shard with 4x another's keys).

use foldhash::quality::RandomState;
use hashbrown::HashTable;
use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

type Entry<K, V> = (K, Arc<V>);

struct Shard<K, V> {
    young: HashTable<Entry<K, V>>,
    old: HashTable<Entry<K, V>>,
}

/// The shard of a hash: bits the tables' slot choice (low bits) and tags (top seven)
/// do not use, so keys within a shard still spread over its slots.
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize % SHARDS
}

/// A bounded concurrent cache of `Arc<V>` by key.
pub struct BoundedCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
    hasher: RandomState,
    per_generation: usize,
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
                        young: HashTable::new(),
                        old: HashTable::new(),
                    })
                })
                .collect(),
            hasher: RandomState::default(),
            per_generation: (capacity / SHARDS / 2).max(1),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// The cached value for `key`, or `make()`'s, cached. `make` runs outside the lock
    /// (two threads missing the same key may both run it; one value is kept).
    pub fn get_or_insert_with<Q>(&self, key: &Q, make: impl FnOnce() -> V) -> Arc<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = K> + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let shard = &self.shards[shard_of(hash)];
        let eq = |e: &Entry<K, V>| e.0.borrow() == key;
        {
            let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = s.young.find(hash, eq) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                return Arc::clone(&e.1);
            }
            if let Ok(found) = s.old.find_entry(hash, eq) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                let ((k, v), _) = found.remove();
                self.put(&mut s, hash, k, Arc::clone(&v));
                return v;
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let v = Arc::new(make());
        let mut s = shard.lock().unwrap_or_else(|e| e.into_inner());
        self.put(&mut s, hash, key.to_owned(), Arc::clone(&v));
        v
    }

    /// Caches `value` for `key`, replacing what was there; returns it as cached.
    pub fn insert(&self, key: K, value: V) -> Arc<V> {
        let hash = self.hasher.hash_one(&key);
        let v = Arc::new(value);
        let mut s = self.shards[shard_of(hash)]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Ok(found) = s.old.find_entry(hash, |e| e.0 == key) {
            found.remove();
        }
        self.put(&mut s, hash, key, Arc::clone(&v));
        v
    }

    /// Puts an entry in the young generation (replacing one with the same key),
    /// first retiring the young generation when it is full.
    fn put(&self, s: &mut Shard<K, V>, hash: u64, k: K, v: Arc<V>) {
        if let Some(e) = s.young.find_mut(hash, |e| e.0 == k) {
            e.1 = v;
            return;
        }
        if s.young.len() >= self.per_generation {
            s.old = std::mem::take(&mut s.young);
        }
        let hasher = &self.hasher;
        s.young
            .insert_unique(hash, (k, v), |e| hasher.hash_one(&e.0));
    }

    /// (hits, misses) so far.
    pub fn stats(&self) -> (u64, u64) {
        (
            self.hits.load(Ordering::Relaxed),
            self.misses.load(Ordering::Relaxed),
        )
    }

    /// Entries held now.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|s| s.young.len() + s.old.len()).unwrap_or(0))
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_spread_over_every_shard() {
        // 3,200 keys over 16 shards: 200 each on average, a standard deviation of 14.
        // Over 100 seeds no shard falls below 125, more than 5 deviations short.
        for _ in 0..100 {
            let h = RandomState::default();
            let mut per_shard = [0usize; SHARDS];
            for i in 0..1600 {
                per_shard[shard_of(h.hash_one(format!("Mozilla/5.0 agent {i}")))] += 1;
                per_shard[shard_of(h.hash_one(std::net::IpAddr::from([
                    10,
                    0,
                    (i / 256) as u8,
                    i as u8,
                ])))] += 1;
            }
            assert!(per_shard.iter().all(|&n| n > 125), "{per_shard:?}");
        }
    }

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

    #[test]
    fn insert_replaces_and_a_key_is_held_once() {
        let c: BoundedCache<String, usize> = BoundedCache::new(320);
        assert_eq!(*c.get_or_insert_with("a", || 1), 1);
        assert_eq!(*c.insert("a".to_owned(), 2), 2);
        assert_eq!(*c.get_or_insert_with("a", || 3), 2);
        assert_eq!(c.len(), 1);
        // Retire "a" to the old generation, then replace it there.
        for i in 0..10 {
            c.insert(format!("{i}"), i);
        }
        c.insert("a".to_owned(), 4);
        assert_eq!(*c.get_or_insert_with("a", || 5), 4);
        assert_eq!(c.len(), 11);
    }
}
