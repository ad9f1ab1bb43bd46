//! Maps keyed by ids this side chooses.
//!
//! Ids this side hands out (call ids, connection ids) are dense, so a
//! multiplicative hash spreads them well. Unlike `RandomState` it needs no
//! OS randomness, which keeps every core deterministic: iteration order
//! depends only on the inputs. Not for keys a peer chooses: a fixed hash
//! can be flooded.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

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
