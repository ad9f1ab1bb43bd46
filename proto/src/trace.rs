//! Trace context carried by a request.

/// A W3C-style span context: the part of a trace that crosses the wire.
///
/// Encoded as Service Weaver does: trace id, span id, then the flags byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TraceContext {
    /// The 16-byte trace id.
    pub trace_id: [u8; 16],
    /// The 8-byte id of the calling span.
    pub span_id: [u8; 8],
    /// Trace flags (bit 0: sampled).
    pub flags: u8,
}

impl TraceContext {
    /// Bytes this context occupies on the wire.
    pub const ENCODED_LEN: usize = 16 + 8 + 1;
}
