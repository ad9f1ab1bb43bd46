//! Shard keys for routed methods: Service Weaver's `codegen.Hasher`.

use super::{Encode, Encoder};
use sha2::{Digest, Sha256};

/// The shard key of a routing key: SHA-256 of its encoding, the first 8
/// bytes read little-endian, with 0 and `u64::MAX` moved inwards (0 means
/// "not routed" to the balancer).
///
/// ```
/// // Service Weaver's simple.RoutedRecord routes by the string "file".
/// assert_eq!(weft_proto::codec::shard_key(&"file"), 0xae4418f0a5d280de);
/// ```
pub fn shard_key<T: Encode + ?Sized>(routing_key: &T) -> u64 {
    let mut h = Hasher::new();
    h.write(routing_key);
    h.sum64()
}

/// Go's `codegen.Hasher`: feed values, then take the 64-bit sum.
#[derive(Debug, Default)]
pub struct Hasher {
    enc: Encoder,
}

impl Hasher {
    /// A hasher with nothing written.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes a value in the ordinary encoding (a struct key: each field).
    pub fn write<T: Encode + ?Sized>(&mut self, value: &T) {
        value.encode(&mut self.enc);
    }

    /// The sum.
    pub fn sum64(&self) -> u64 {
        let digest = Sha256::digest(self.enc.as_slice());
        let v = u64::from_le_bytes(digest[..8].try_into().expect("32-byte digest"));
        v.clamp(1, u64::MAX - 1)
    }
}
