//! The version handshake.
//!
//! The client sends its version first on every new connection; the server
//! answers every version frame it receives with its own. Both then speak
//! `min(mine, peer's)`. The payload may be longer than 4 bytes, leaving room
//! for fields a later version adds.

use crate::error::DecodeError;

/// A protocol version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32);

impl Version {
    /// The version this build speaks: Service Weaver's `initialVersion`.
    pub const CURRENT: Version = Version(0);

    /// The version both sides use: the lower of the two.
    pub fn negotiate(self, peer: Version) -> Version {
        self.min(peer)
    }

    /// The version frame's payload.
    pub fn encode(self) -> [u8; 4] {
        self.0.to_le_bytes()
    }

    /// Validates a version frame (`id` from its header) and reads the peer's
    /// version. Bytes after the first four are ignored.
    pub fn decode(id: u64, payload: &[u8]) -> Result<Version, DecodeError> {
        if id != 0 {
            return Err(DecodeError::VersionNonZeroId(id));
        }
        match payload.first_chunk::<4>() {
            Some(v) => Ok(Version(u32::from_le_bytes(*v))),
            None => Err(DecodeError::VersionTooShort(payload.len())),
        }
    }
}
