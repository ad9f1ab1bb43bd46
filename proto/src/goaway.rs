//! The goaway message: weft's extension of the protocol (version 1).
//!
//! A server that is shutting down tells a version-1 client to start no new
//! call on the connection. Like HTTP/2's GOAWAY it names the highest request
//! id the server received and will answer: requests above it that were
//! already on their way were never run, and the client sends them
//! elsewhere. A version-0 peer (every Service Weaver peer) never sees one.
//!
//! ```text
//! header  id 0, type 5, length 8 + reason length
//! 0..8    last_id, u64 little-endian
//! 8..     reason, UTF-8, at most MAX_GOAWAY_REASON bytes (may be empty)
//! ```

use crate::error::DecodeError;

/// The longest reason a goaway carries; a longer one is cut on encoding and
/// on decoding, so a peer cannot make the other side hold a large string.
pub const MAX_GOAWAY_REASON: usize = 256;

/// A decoded goaway frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoAway {
    /// The highest request id the server received and will answer. Requests
    /// with higher ids were not run.
    pub last_id: u64,
    /// Why, for logs ("server shutting down", "idle").
    pub reason: String,
}

impl GoAway {
    /// Validates a goaway frame (`id` from its header) and reads it.
    pub fn decode(id: u64, payload: &[u8]) -> Result<GoAway, DecodeError> {
        if id != 0 {
            return Err(DecodeError::GoAwayNonZeroId(id));
        }
        let Some((last, rest)) = payload.split_first_chunk::<8>() else {
            return Err(DecodeError::GoAwayTooShort(payload.len()));
        };
        let reason = &rest[..rest.len().min(MAX_GOAWAY_REASON)];
        Ok(GoAway {
            last_id: u64::from_le_bytes(*last),
            reason: String::from_utf8_lossy(reason).into_owned(),
        })
    }

    /// The reason as sent: cut to [`MAX_GOAWAY_REASON`] bytes, on a
    /// character boundary.
    pub(crate) fn wire_reason(reason: &str) -> &str {
        let mut end = reason.len().min(MAX_GOAWAY_REASON);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        &reason[..end]
    }
}
