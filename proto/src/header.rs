//! Request headers, in Service Weaver's encoding.
//!
//! A request payload is `u32 header_len | header | args`; the header is
//!
//! ```text
//! [16]  method key
//! i64   deadline: microseconds left when sent; 0 = none
//! u8    trace present; if 1: [16] trace id, [8] span id, u8 flags
//! u8    metadata present; if 1: i32 count, then count x (string key, string value)
//!       string = u32 length + UTF-8 bytes
//! ```
//!
//! Bytes after these fields are ignored, as Go's decoder ignores them.

use crate::error::DecodeError;
use crate::{Metadata, MethodKey, TraceContext};
use bytes::{BufMut, Bytes};

/// The decoded header of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    /// The method being called.
    pub method: MethodKey,
    /// Microseconds left until the deadline when the request was sent; 0
    /// means no deadline. Negative values mean it had already passed.
    pub deadline_micros: i64,
    /// The caller's span, if it is traced.
    pub trace: Option<TraceContext>,
    /// Metadata, if the caller attached any (present-but-empty is distinct
    /// from absent on the wire).
    pub metadata: Option<Metadata>,
}

impl RequestHeader {
    /// A header with only a method key.
    pub fn new(method: MethodKey) -> Self {
        RequestHeader {
            method,
            deadline_micros: 0,
            trace: None,
            metadata: None,
        }
    }

    /// A borrowed view for encoding.
    pub fn fields(&self) -> HeaderFields<'_> {
        HeaderFields {
            method: self.method,
            deadline_micros: self.deadline_micros,
            trace: self.trace.as_ref(),
            metadata: self.metadata.as_ref(),
        }
    }

    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        self.fields().encoded_len()
    }

    /// Appends the encoded header (without its u32 length prefix).
    pub fn encode(&self, out: &mut impl BufMut) {
        self.fields().encode(out)
    }

    /// Decodes a header from exactly the header bytes of a request.
    pub fn decode(mut buf: &[u8]) -> Result<Self, DecodeError> {
        let r = &mut buf;
        let method = MethodKey(take::<16>(r, "method key")?);
        let deadline_micros = i64::from_le_bytes(take::<8>(r, "deadline")?);
        let trace = if take_bool(r, "trace context flag")? {
            Some(TraceContext {
                trace_id: take::<16>(r, "trace id")?,
                span_id: take::<8>(r, "span id")?,
                flags: take::<1>(r, "trace flags")?[0],
            })
        } else {
            None
        };
        let metadata = if take_bool(r, "metadata flag")? {
            let count = i32::from_le_bytes(take::<4>(r, "metadata count")?);
            // Each entry needs at least two 4-byte lengths, so a count the
            // remaining bytes cannot hold is rejected before allocating.
            if count < 0 || count as usize > r.len() / 8 {
                return Err(DecodeError::BadMetadataCount {
                    count: count.into(),
                    have: r.len(),
                });
            }
            // Each entry is 8 bytes on the wire at the least and 48 in
            // memory: without a cap, one request's metadata could take six
            // times the message limit.
            if count as usize > MAX_METADATA_ENTRIES {
                return Err(DecodeError::TooMuchMetadata {
                    count: count.into(),
                    max: MAX_METADATA_ENTRIES,
                });
            }
            let mut pairs = Vec::with_capacity(count as usize);
            for _ in 0..count {
                let k = take_string(r, "metadata key")?;
                let v = take_string(r, "metadata value")?;
                pairs.push((k, v));
            }
            Some(Metadata::from_wire_pairs(pairs))
        } else {
            None
        };
        Ok(RequestHeader {
            method,
            deadline_micros,
            trace,
            metadata,
        })
    }
}

/// A request header by reference: what the encoder needs, so a call's
/// metadata is encoded from where it already lives instead of being cloned.
#[derive(Debug, Clone, Copy)]
pub struct HeaderFields<'a> {
    /// The method being called.
    pub method: MethodKey,
    /// Microseconds left until the deadline; 0 means none.
    pub deadline_micros: i64,
    /// Trace context, if any.
    pub trace: Option<&'a TraceContext>,
    /// Metadata, if any.
    pub metadata: Option<&'a Metadata>,
}

impl HeaderFields<'_> {
    /// Bytes [`encode`](Self::encode) writes.
    pub fn encoded_len(&self) -> usize {
        16 + 8
            + 1
            + self.trace.map_or(0, |_| TraceContext::ENCODED_LEN)
            + 1
            + self.metadata.map_or(0, |md| {
                4 + md.iter().map(|(k, v)| 8 + k.len() + v.len()).sum::<usize>()
            })
    }

    /// Appends the encoded header (without its u32 length prefix).
    pub fn encode(&self, out: &mut impl BufMut) {
        out.put_slice(&self.method.0);
        out.put_i64_le(self.deadline_micros);
        match self.trace {
            None => out.put_u8(0),
            Some(t) => {
                out.put_u8(1);
                out.put_slice(&t.trace_id);
                out.put_slice(&t.span_id);
                out.put_u8(t.flags);
            }
        }
        match self.metadata {
            None => out.put_u8(0),
            Some(md) => {
                out.put_u8(1);
                out.put_i32_le(md.len() as i32);
                for (k, v) in md.iter() {
                    put_string(out, k);
                    put_string(out, v);
                }
            }
        }
    }
}

/// Splits a request payload into its decoded header and the arguments, which
/// stay a view of `payload`.
pub fn decode_request(payload: &Bytes) -> Result<(RequestHeader, Bytes), DecodeError> {
    let Some(len) = payload.first_chunk::<4>() else {
        return Err(DecodeError::MissingHeaderLength(payload.len()));
    };
    let header_len = u32::from_le_bytes(*len) as usize;
    let available = payload.len() - 4;
    if header_len > available {
        return Err(DecodeError::HeaderPastEnd {
            header_len: header_len as u64,
            available,
        });
    }
    let header = RequestHeader::decode(&payload[4..4 + header_len])?;
    Ok((header, payload.slice(4 + header_len..)))
}

fn put_string(out: &mut impl BufMut, s: &str) {
    out.put_u32_le(s.len() as u32);
    out.put_slice(s.as_bytes());
}

fn take<const N: usize>(r: &mut &[u8], field: &'static str) -> Result<[u8; N], DecodeError> {
    match r.split_first_chunk::<N>() {
        Some((head, rest)) => {
            *r = rest;
            Ok(*head)
        }
        None => Err(DecodeError::Truncated {
            field,
            need: N,
            have: r.len(),
        }),
    }
}

/// The most metadata entries a request may carry; a request with more is
/// refused with [`DecodeError::TooMuchMetadata`] (its connection goes on).
/// Go sets no limit, but an entry costs at least 8 bytes on the wire and 48
/// in memory, so without one a request near the message limit could take
/// six times that limit while it runs.
pub const MAX_METADATA_ENTRIES: usize = 64 * 1024;

fn take_bool(r: &mut &[u8], field: &'static str) -> Result<bool, DecodeError> {
    match take::<1>(r, field)?[0] {
        0 => Ok(false),
        1 => Ok(true),
        byte => Err(DecodeError::BadBool { field, byte }),
    }
}

/// A metadata key or value. Go's strings need not be UTF-8 and Go's server
/// takes any bytes: bytes that are not UTF-8 become U+FFFD rather than
/// failing the request.
fn take_string(r: &mut &[u8], field: &'static str) -> Result<String, DecodeError> {
    let len = u32::from_le_bytes(take::<4>(r, field)?) as usize;
    if len > r.len() {
        return Err(DecodeError::Truncated {
            field,
            need: len,
            have: r.len(),
        });
    }
    let (s, rest) = r.split_at(len);
    *r = rest;
    Ok(String::from_utf8_lossy(s).into_owned())
}
