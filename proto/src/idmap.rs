//! Maps keyed by ids this side chooses.
//!
//! Ids this side hands out (call ids, connection ids) are dense, so a
//! multiplicative hash spreads them well. Unlike `RandomState` it needs no
//! OS randomness, which keeps every core deterministic: iteration order
//! depends only on the inputs. Not for keys a peer chooses: a fixed hash
//! can be flooded.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

/// A `HashMap` from locally chosen `u64` ids with a fixed, fast hash.
pub type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

/// Fibonacci hashing of a single `u64` (see [`IdMap`]).
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A `HashMap` from `u64` ids the *peer* chooses, with a keyed hash: ids
/// crafted to collide under one key spread under another, so a peer that
/// cannot learn the key cannot make lookups slow. Make one with
/// `HashMap::with_hasher(SeededIds::new(seed))`.
pub type SeededIdMap<V> = HashMap<u64, V, SeededIds>;

/// Builds [`SeededIdHasher`]s for one key.
#[derive(Debug, Clone, Copy, Default)]
pub struct SeededIds {
    k0: u64,
    k1: u64,
}

impl SeededIds {
    /// A hash keyed by `seed` (spread into two words, so nearby seeds give
    /// unrelated keys).
    pub fn new(seed: u64) -> Self {
        let k0 = splitmix(seed);
        SeededIds {
            k0,
            k1: splitmix(k0),
        }
    }
}

impl BuildHasher for SeededIds {
    type Hasher = SeededIdHasher;
    fn build_hasher(&self) -> SeededIdHasher {
        SeededIdHasher {
            k1: self.k1,
            state: self.k0,
        }
    }
}

/// A keyed hash of `u64`s: each word is mixed in with a folded 128-bit
/// multiply by a secret key (the construction foldhash and ahash use).
#[derive(Debug)]
pub struct SeededIdHasher {
    k1: u64,
    state: u64,
}

impl Hasher for SeededIdHasher {
    fn finish(&self) -> u64 {
        folded_mul(self.state, self.k1 ^ 0x9e37_79b9_7f4a_7c15)
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.state = folded_mul(self.state ^ n, self.k1);
    }
}

fn folded_mul(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
