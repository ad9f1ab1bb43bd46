//! Errors raised while decoding bytes that came from the peer.
//!
//! Every variant names the problem precisely enough to be logged as the reason
//! a connection was closed. None of them is ever produced by a panic path: the
//! decoders check every length before they read.

/// Why bytes received from the peer could not be decoded.
///
/// These are always the *peer's* fault; the connection that carried them is
/// closed and no other connection is affected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The low byte of the frame header is not one of the six message types.
    #[error("unknown message type {0}")]
    UnknownMessageType(u8),
    /// The frame header announces a payload above the configured limit.
    #[error("overly large message length {len} (limit {max})")]
    PayloadTooLarge {
        /// Payload length announced by the header.
        len: u64,
        /// Configured maximum payload length.
        max: u64,
    },
    /// A request announced a payload above the configured limit. Unlike
    /// every other variant this one is not fatal for a decoder made with
    /// [`FrameDecoder::skipping_oversize_requests`](crate::frame::FrameDecoder::skipping_oversize_requests):
    /// it discards the payload as it arrives and decodes the next frame.
    #[error("request {id} of {len} bytes exceeds the limit of {max} bytes")]
    RequestTooLarge {
        /// The request's id.
        id: u64,
        /// Payload length announced by the header.
        len: u64,
        /// Configured maximum payload length.
        max: u64,
    },
    /// A response announced a payload above the configured limit: not
    /// fatal for a decoder made with
    /// [`FrameDecoder::skipping_oversize_responses`](crate::frame::FrameDecoder::skipping_oversize_responses),
    /// which discards it as it arrives.
    #[error("response {id} of {len} bytes exceeds the limit of {max} bytes")]
    ResponseTooLarge {
        /// The call's request id.
        id: u64,
        /// Payload length announced by the header.
        len: u64,
        /// Configured maximum payload length.
        max: u64,
    },
    /// A version frame carried a non-zero id.
    #[error("invalid ID {0} in handshake")]
    VersionNonZeroId(u64),
    /// A version frame's payload is shorter than the 4-byte version number.
    #[error("bad version message length {0}, must be >= 4")]
    VersionTooShort(usize),
    /// A goaway frame carried a non-zero id.
    #[error("invalid ID {0} in goaway")]
    GoAwayNonZeroId(u64),
    /// A goaway frame's payload is shorter than its 8-byte last id.
    #[error("bad goaway message length {0}, must be >= 8")]
    GoAwayTooShort(usize),
    /// A request payload is too short to hold its own 4-byte header length.
    #[error("request payload of {0} bytes has no room for the header length")]
    MissingHeaderLength(usize),
    /// The request header length points past the end of the payload.
    #[error("request header length {header_len} runs past the end of the {available}-byte payload")]
    HeaderPastEnd {
        /// Header length announced in the payload.
        header_len: u64,
        /// Bytes left in the payload after the length field.
        available: usize,
    },
    /// A request header field is cut short.
    #[error("truncated request header: {field} needs {need} bytes, {have} left")]
    Truncated {
        /// Which field was being read.
        field: &'static str,
        /// Bytes the field needs.
        need: usize,
        /// Bytes that were left.
        have: usize,
    },
    /// A presence flag was neither 0 nor 1.
    #[error("bad bool byte {byte} for {field}")]
    BadBool {
        /// Which flag was being read.
        field: &'static str,
        /// The byte found.
        byte: u8,
    },
    /// More metadata entries than [`MAX_METADATA_ENTRIES`](crate::MAX_METADATA_ENTRIES).
    #[error("metadata count {count} exceeds the limit of {max} entries")]
    TooMuchMetadata {
        /// Count announced by the header.
        count: i64,
        /// The limit.
        max: usize,
    },
    /// A request whose frame arrived whole but whose header does not
    /// decode. Not fatal to a server: the request is answered with this
    /// error and the connection goes on.
    #[error("request {id}: {reason}")]
    BadRequest {
        /// The request id.
        id: u64,
        /// What is wrong with its header.
        reason: Box<DecodeError>,
    },
    /// The metadata entry count is negative or cannot fit in the header.
    #[error("metadata count {count} does not fit in the {have} header bytes left")]
    BadMetadataCount {
        /// Count announced by the header.
        count: i64,
        /// Header bytes left after the count.
        have: usize,
    },
}

/// A connection broke the protocol: always the peer's doing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// Bytes that do not decode.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The server's first frame was not its version.
    #[error("wrong message type {0:?} during handshake, expecting Version")]
    NotVersion(crate::frame::MessageType),
    /// A frame type this side never receives (a request sent to a client,
    /// a response sent to a server).
    #[error("invalid {0:?} message for this side of the connection")]
    UnexpectedMessage(crate::frame::MessageType),
    /// A request reused the id of a request still in flight.
    #[error("request id {0} is already in flight")]
    DuplicateRequestId(u64),
    /// The client did not complete the version handshake in time.
    #[error("no version handshake within {0:?}")]
    NoHandshake(std::time::Duration),
    /// A frame began to arrive and did not finish in time.
    #[error("a frame took longer than {0:?} to arrive")]
    FrameTimeout(std::time::Duration),
    /// The connection began with a TLS record where a plaintext version
    /// frame belongs: one side uses TLS and the other does not.
    #[error(
        "the peer speaks TLS and this side expects plaintext: use TLS on both sides or neither"
    )]
    SpokeTls,
}

/// Why a connection ended.
///
/// Split by who is responsible: the peer ([`ConnError::Peer`]), the byte
/// stream underneath ([`ConnError::Transport`]), or the local application
/// ([`ConnError::Closed`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnError {
    /// The peer sent something the protocol forbids.
    #[error("protocol error from peer: {0}")]
    Peer(#[from] PeerError),
    /// The byte stream failed or ended; the text is the driver's report.
    #[error("transport failed: {0}")]
    Transport(String),
    /// The local application closed the connection.
    #[error("connection closed")]
    Closed,
}
