//! Fast, deterministic hashing for in-memory maps whose keys are not attacker-chosen
//! hash-flooding targets in practice (dictionary ids, pre-hashed strings, session keys).

use std::hash::{BuildHasherDefault, Hasher};

/// A multiply-rotate hasher (the scheme rustc uses), one word at a time.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct FastHasher(u64);

const SEED: u64 = 0x51_7c_c1_b7_27_22_0a_95;

impl FastHasher {
    #[inline(always)]
    fn add(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(SEED);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            self.add(u64::from_le_bytes([
                c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7],
            ]));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            self.add(tail(bytes, rest.len()));
        }
    }
    #[inline]
    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }
    #[inline]
    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// The last `n` (1 to 7) bytes of `bytes` as one word, read without copying them
/// into a buffer: a longer input's last 8 bytes (overlapping words already
/// hashed), or two overlapping halves of a short one. Copying the few bytes into
/// a zeroed buffer called `memcpy` and stalled the load that followed: it was
/// over half of the engine's time interning an event.
#[inline(always)]
fn tail(bytes: &[u8], n: usize) -> u64 {
    let len = bytes.len();
    let word = |at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&bytes[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let half = |at: usize| {
        let mut w = [0u8; 4];
        w.copy_from_slice(&bytes[at..at + 4]);
        u64::from(u32::from_le_bytes(w))
    };
    if len >= 8 {
        word(len - 8)
    } else if n >= 4 {
        half(0) | half(len - 4) << 32
    } else {
        u64::from(bytes[0]) | u64::from(bytes[n / 2]) << 8 | u64::from(bytes[n - 1]) << 16
    }
}

/// Builds [`FastHasher`]s.
pub(crate) type FastBuild = BuildHasherDefault<FastHasher>;

/// For keys that are already well-mixed 64-bit hashes.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }
    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// Builds [`IdentityHasher`]s.
pub(crate) type IdentityBuild = BuildHasherDefault<IdentityHasher>;

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(bytes: &[u8]) -> u64 {
        let mut h = FastHasher::default();
        h.write(bytes);
        h.finish()
    }

    #[test]
    fn every_byte_of_a_string_counts_at_every_length() {
        for len in 1..=40usize {
            let base: Vec<u8> = (0..len as u8).map(|i| b'a' + i % 26).collect();
            let h = hash(&base);
            for i in 0..len {
                let mut changed = base.clone();
                changed[i] ^= 0x20;
                assert_ne!(hash(&changed), h, "byte {i} of {len} ignored");
            }
        }
    }

    #[test]
    fn equal_bytes_hash_equal_wherever_they_sit() {
        let text = b"xxhello, world: a path /p/123?utm_source=x";
        for start in 0..4 {
            for len in 0..=text.len() - 4 {
                let a = &text[start..start + len];
                let b = a.to_vec();
                assert_eq!(hash(a), hash(&b));
            }
        }
    }
}
