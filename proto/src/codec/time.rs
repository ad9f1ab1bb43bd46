//! Go's `time.Time`, which generated code sends through its
//! `MarshalBinary`: a length, then version 1 (or 2 for a zone offset that
//! is not whole minutes), seconds since 0001-01-01 UTC as a big-endian
//! `i64`, nanoseconds as a big-endian `i32`, and the zone offset in minutes
//! as a big-endian `i16` where -1 means UTC. The zone's name is not sent.

use super::{CodecError, Decode, Decoder, Encode, Encoder};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds from 0001-01-01 to 1970-01-01, both UTC.
const YEAR1_TO_UNIX: i64 = 62_135_596_800;

/// A Go `time.Time` as it travels: an instant and the zone offset it was
/// written in.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use weft_proto::codec::{self, GoTime};
/// let t = GoTime::from(UNIX_EPOCH + Duration::from_secs(1_731_090_576));
/// let back: GoTime = codec::decode(&codec::encode(&t))?;
/// assert_eq!(back.to_system_time(), Some(UNIX_EPOCH + Duration::from_secs(1_731_090_576)));
/// # Ok::<(), codec::CodecError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct GoTime {
    /// Seconds since 0001-01-01 00:00:00 UTC (Go's zero time is 0).
    pub seconds: i64,
    /// Nanoseconds within the second, below 10^9 (more is carried into
    /// `seconds` when encoded, where Go would refuse the value).
    pub nanos: u32,
    /// The zone offset in seconds east of UTC; `None` is Go's UTC location.
    /// An offset of exactly -60 s cannot be said in Go's format (-1
    /// minute is its UTC marker): such a time reads back in UTC, the same
    /// instant (Go's own `MarshalBinary` refuses it).
    pub offset: Option<i32>,
}

impl GoTime {
    /// The instant, if `SystemTime` can hold it.
    pub fn to_system_time(&self) -> Option<SystemTime> {
        let unix = self.seconds.checked_sub(YEAR1_TO_UNIX)?;
        let nanos = Duration::from_nanos(u64::from(self.nanos));
        if unix >= 0 {
            UNIX_EPOCH.checked_add(Duration::from_secs(unix as u64) + nanos)
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_secs(unix.unsigned_abs()))?
                .checked_add(nanos)
        }
    }
}

impl From<SystemTime> for GoTime {
    /// The instant in UTC.
    fn from(t: SystemTime) -> Self {
        let (seconds, nanos) = match t.duration_since(UNIX_EPOCH) {
            Ok(d) => (d.as_secs() as i64, d.subsec_nanos()),
            Err(e) => {
                let d = e.duration();
                let (s, n) = (d.as_secs() as i64, d.subsec_nanos());
                if n == 0 {
                    (-s, 0)
                } else {
                    (-s - 1, 1_000_000_000 - n)
                }
            }
        };
        GoTime {
            seconds: seconds.saturating_add(YEAR1_TO_UNIX),
            nanos,
            offset: None,
        }
    }
}

impl Encode for GoTime {
    fn encode(&self, enc: &mut Encoder) {
        // Offsets beyond an i16 of minutes cannot be written (Go refuses
        // them too); real zones stay within ±18 hours.
        let (minutes, seconds) = match self.offset {
            None => (-1i16, None),
            Some(s) => {
                let m = i16::try_from(s / 60).unwrap_or(if s < 0 { i16::MIN } else { i16::MAX });
                let rem = s % 60;
                (m, (rem != 0).then_some(rem as i8))
            }
        };
        // Go refuses nanoseconds past a second: carry them.
        let carried = i64::from(self.nanos / 1_000_000_000);
        let nanos = self.nanos % 1_000_000_000;
        let mut body = [0u8; 16];
        body[0] = if seconds.is_some() { 2 } else { 1 };
        body[1..9].copy_from_slice(&self.seconds.saturating_add(carried).to_be_bytes());
        body[9..13].copy_from_slice(&(nanos as i32).to_be_bytes());
        body[13..15].copy_from_slice(&minutes.to_be_bytes());
        let len = match seconds {
            Some(s) => {
                body[15] = s as u8;
                16
            }
            None => 15,
        };
        enc.put_str(&body[..len]);
    }
    fn encode_zero(enc: &mut Encoder) {
        GoTime::default().encode(enc);
    }
}

impl Decode for GoTime {
    fn decode(dec: &mut Decoder<'_>) -> Result<Self, CodecError> {
        let b = dec.str_bytes()?;
        let want = match b.first() {
            Some(1) => 15,
            Some(2) => 16,
            Some(_) => return Err(CodecError::InvalidTime("unsupported version")),
            None => return Err(CodecError::InvalidTime("no data")),
        };
        if b.len() != want {
            return Err(CodecError::InvalidTime("invalid length"));
        }
        let seconds = i64::from_be_bytes(b[1..9].try_into().expect("8 bytes"));
        let nanos = i32::from_be_bytes(b[9..13].try_into().expect("4 bytes"));
        let minutes = i16::from_be_bytes(b[13..15].try_into().expect("2 bytes"));
        let nanos = u32::try_from(nanos)
            .ok()
            .filter(|n| *n < 1_000_000_000)
            .ok_or(CodecError::InvalidTime("nanoseconds out of range"))?;
        let mut offset = i32::from(minutes) * 60;
        if want == 16 {
            offset += i32::from(b[15] as i8);
        }
        // As Go reads it: an offset of exactly -1 minute is the UTC marker.
        let offset = (offset != -60).then_some(offset);
        Ok(GoTime {
            seconds,
            nanos,
            offset,
        })
    }
}
