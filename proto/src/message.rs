//! Frames interpreted by type: what a connection core acts on.

use crate::error::DecodeError;
use crate::frame::{Frame, FrameDecoder, MessageType};
use crate::goaway::GoAway;
use crate::handshake::Version;
use crate::header::{RequestHeader, decode_request};
use bytes::Bytes;

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// The peer's protocol version.
    Version(Version),
    /// A call.
    Request {
        /// Call id.
        id: u64,
        /// Decoded request header.
        header: RequestHeader,
        /// Call arguments: a view into the read buffer.
        args: Bytes,
    },
    /// A successful result.
    Response {
        /// Call id.
        id: u64,
        /// Result bytes.
        payload: Bytes,
    },
    /// An error result, still encoded: a payload that cannot be decoded fails
    /// only its call, not the connection, so decoding is left to the caller.
    ErrorResponse {
        /// Call id.
        id: u64,
        /// Encoded error ([`crate::RemoteError::decode`]).
        payload: Bytes,
    },
    /// The client abandoned call `id`. Any payload is ignored.
    Cancel {
        /// Call id.
        id: u64,
    },
    /// The server starts no call above `last_id` (version 1 and later).
    GoAway(GoAway),
}

impl Message {
    /// Interprets a frame.
    pub fn parse(frame: Frame) -> Result<Message, DecodeError> {
        let id = frame.header.id;
        Ok(match frame.header.ty {
            MessageType::Version => Message::Version(Version::decode(id, &frame.payload)?),
            MessageType::Request => {
                let (header, args) =
                    decode_request(&frame.payload).map_err(|e| DecodeError::BadRequest {
                        id,
                        reason: Box::new(e),
                    })?;
                Message::Request { id, header, args }
            }
            MessageType::Response => Message::Response {
                id,
                payload: frame.payload,
            },
            MessageType::ErrorResponse => Message::ErrorResponse {
                id,
                payload: frame.payload,
            },
            MessageType::Cancel => Message::Cancel { id },
            MessageType::GoAway => Message::GoAway(GoAway::decode(id, &frame.payload)?),
        })
    }
}

impl Message {
    /// The frame type this message travels as.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Version(_) => MessageType::Version,
            Message::Request { .. } => MessageType::Request,
            Message::Response { .. } => MessageType::Response,
            Message::ErrorResponse { .. } => MessageType::ErrorResponse,
            Message::Cancel { .. } => MessageType::Cancel,
            Message::GoAway(_) => MessageType::GoAway,
        }
    }
}

impl FrameDecoder {
    /// The next complete frame, interpreted; `None` if more bytes are
    /// needed. Any error is the peer's and ends the connection.
    pub fn next_message(&mut self) -> Option<Result<Message, DecodeError>> {
        match self.decode() {
            Ok(Some(frame)) => Some(Message::parse(frame)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
