//! Method keys: how a request names the method it calls.

use sha2::{Digest, Sha256};
use std::fmt;

/// The 16-byte fingerprint that identifies a method on the wire.
///
/// It is the first 16 bytes of SHA-256 of `component + "." + method`, exactly
/// as Service Weaver's `MakeMethodKey`, so weft and Go agree on every key.
///
/// ```
/// use weft_proto::MethodKey;
/// let key = MethodKey::new("weft.Test", "Echo");
/// assert_eq!(key.to_string(), "2c1be9eac29e340a0ead09f46fb80d5b");
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MethodKey(pub [u8; 16]);

impl MethodKey {
    /// Computes the key of `method` on `component`.
    pub fn new(component: &str, method: &str) -> Self {
        let mut h = Sha256::new();
        h.update(component.as_bytes());
        h.update(b".");
        h.update(method.as_bytes());
        let digest = h.finalize();
        let mut key = [0; 16];
        key.copy_from_slice(&digest[..16]);
        MethodKey(key)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl fmt::Display for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl fmt::Debug for MethodKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MethodKey({self})")
    }
}
