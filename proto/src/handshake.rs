//! The version handshake.
//!
//! The client sends its version first on every new connection; the server
//! answers every version frame it receives with its own. Both then speak
//! `min(mine, peer's)`. The payload may be longer than 4 bytes, leaving room
//! for fields a later version adds.
//!
//! Service Weaver's peers announce version 0 and accept any higher version
//! from the other side (they take the minimum too). weft announces
//! [`Version::LATEST`], 1, which adds one message, goaway
//! ([`GoAway`](crate::GoAway)); between weft and a Go peer both sides
//! speak 0 and the conversation is Service Weaver's, byte for byte, except
//! for the number in a weft client's own version frame.

use crate::error::DecodeError;

/// A protocol version number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Version(pub u32);

impl Version {
    /// Service Weaver's `currentVersion` (its `initialVersion`, 0): what
    /// every Go peer announces, and the protocol without goaway.
    pub const CURRENT: Version = Version(0);

    /// The first version with the goaway message (weft's extension).
    pub const GOAWAY: Version = Version(1);

    /// The version weft announces.
    pub const LATEST: Version = Version(1);

    /// Whether goaway may be sent on a connection that negotiated `self`.
    pub fn has_goaway(self) -> bool {
        self >= Version::GOAWAY
    }

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
