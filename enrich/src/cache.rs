//! A bounded, sharded cache: each shard keeps two generations; when the young one is
//! full it becomes the old one and the previous old one is dropped. Hits in the old
//! generation are promoted, so hot keys survive; memory stays under the bound.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const SHARDS: usize = 16;

struct Shard<K, V> {
    young: HashMap<K, Arc<V>>,
    old: HashMap<K, Arc<V>>,
}

/// Picks a key's shard: a multiply-rotate hash, one word at a time. The maps inside
/// keep the standard keyed hash (keys such as user agents come from clients); the
/// shard only needs spreading, and hashing a long key twice with SipHash was a
/// tenth of a cached enrichment.
#[derive(Default)]
struct ShardHasher(u64);

impl Hasher for ShardHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut word = [0u8; 8];
            word.copy_from_slice(c);
            self.write_u64(u64::from_le_bytes(word));
        }
        let mut word = [0u8; 8];
        word[..chunks.remainder().len()].copy_from_slice(chunks.remainder());
        self.write_u64(u64::from_le_bytes(word));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
    fn finish(&self) -> u64 {
        // The high bits are the well-mixed ones.
        self.0 >> 32
    }
}

fn shard_of<Q: Hash + ?Sized>(key: &Q) -> usize {
    let mut h = ShardHasher::default();
    key.hash(&mut h);
    (h.finish() as usize) % SHARDS
}

/// A bounded concurrent cache of `Arc<V>` by key.
pub struct BoundedCache<K, V> {
    shards: Vec<Mutex<Shard<K, V>>>,
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
                        young: HashMap::new(),
                        old: HashMap::new(),
                    })
                })
                .collect(),
            per_generation: (capacity / SHARDS / 2).max(1),
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
        let shard = &self.shards[shard_of(key)];
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
        let shard = &self.shards[shard_of(&key)];
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
    fn keys_spread_over_every_shard() {
        let mut per_shard = [0usize; SHARDS];
        for i in 0..1600 {
            per_shard[shard_of(&format!("Mozilla/5.0 agent {i}"))] += 1;
            per_shard[shard_of(&std::net::IpAddr::from([10, 0, (i / 256) as u8, i as u8]))] += 1;
        }
        assert!(per_shard.iter().all(|&n| n > 100), "{per_shard:?}");
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
}
