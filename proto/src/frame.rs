//! Frames: the 16-byte header and the incremental decoder.
//!
//! ```text
//! 0..8   message id, u64 little-endian
//! 8..16  u64 little-endian: low 8 bits message type, high 56 bits payload length
//! 16..   payload
//! ```

use crate::error::DecodeError;
use crate::large_frames::{LARGE_FRAME, Pool};
use bytes::{Buf, Bytes, BytesMut};

/// Length of a frame header.
pub const HEADER_LEN: usize = 16;

/// Default maximum payload length, the same as Service Weaver's reader.
pub const DEFAULT_MAX_PAYLOAD: u64 = 100 << 20;

/// The longest payload the 56-bit length field can describe.
pub const MAX_ENCODABLE_PAYLOAD: u64 = (1 << 56) - 1;

/// How far ahead of the bytes that have arrived the decoder reserves room for
/// a frame in progress. A header is only a claim: reserving the whole
/// announced length up front would let a peer pin `max_payload` bytes per
/// connection with sixteen bytes of input.
const EAGER_RESERVE: usize = 64 * 1024;

/// The unit the read buffer is allocated in. Frames are handed out as views
/// of the buffer, so a buffer stays alive while any of its frames does; the
/// next read then needs fresh room. Taking it in large units means one
/// allocation serves hundreds of small frames, instead of one per read.
/// (`BytesMut` remembers its first capacity and allocates at least that
/// much whenever it cannot reuse its buffer in place.)
pub const READ_BUFFER_UNIT: usize = 64 * 1024;

/// The kind of a frame, from the low byte of its second word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// Version handshake; id is always 0.
    Version = 0,
    /// A call: request header plus arguments.
    Request = 1,
    /// A successful result.
    Response = 2,
    /// An error result in Service Weaver's error encoding.
    ErrorResponse = 3,
    /// The client abandoned the call with this id.
    Cancel = 4,
    /// weft's extension, only under version 1 or later: the server starts
    /// no call above the id it names ([`GoAway`](crate::GoAway)).
    GoAway = 5,
}

impl MessageType {
    /// Parses a type byte.
    pub fn from_u8(b: u8) -> Result<Self, DecodeError> {
        Ok(match b {
            0 => Self::Version,
            1 => Self::Request,
            2 => Self::Response,
            3 => Self::ErrorResponse,
            4 => Self::Cancel,
            5 => Self::GoAway,
            other => return Err(DecodeError::UnknownMessageType(other)),
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Message id: the call id, or 0 for version frames.
    pub id: u64,
    /// Message type.
    pub ty: MessageType,
    /// Payload length in bytes.
    pub len: u64,
}

impl FrameHeader {
    /// Encodes the header. `len` must not exceed [`MAX_ENCODABLE_PAYLOAD`];
    /// callers build headers from payloads they hold, which cannot.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        debug_assert!(self.len <= MAX_ENCODABLE_PAYLOAD);
        let mut out = [0; HEADER_LEN];
        out[..8].copy_from_slice(&self.id.to_le_bytes());
        out[8..].copy_from_slice(&((self.ty as u64) | (self.len << 8)).to_le_bytes());
        out
    }

    /// Decodes a header, rejecting a payload longer than `max_payload` before
    /// anything is allocated for it.
    pub fn decode(buf: &[u8; HEADER_LEN], max_payload: u64) -> Result<Self, DecodeError> {
        let (id, word) = buf.split_at(8);
        let id = u64::from_le_bytes(id.try_into().expect("8 bytes"));
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        let len = word >> 8;
        // Length first, as Go does, so an oversize frame of unknown type is
        // reported as oversize.
        if len > max_payload {
            return Err(DecodeError::PayloadTooLarge {
                len,
                max: max_payload,
            });
        }
        let ty = MessageType::from_u8(word as u8)?;
        Ok(FrameHeader { id, ty, len })
    }
}

/// A complete frame. The payload is a view into the decoder's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The frame header.
    pub header: FrameHeader,
    /// The payload, never copied out of the read buffer.
    pub payload: Bytes,
}

/// The oversize frames a decoder skips: those that concern one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Skip {
    Requests,
    Responses,
}

/// The longest response a client skips (64 GiB): a length past it is a
/// broken stream (a server out of step with its own frames), and skipping
/// it would swallow everything after it. (A server has its body timeout
/// for that.)
const MAX_RESPONSE_SKIP: u64 = 1 << 36;

impl Skip {
    fn skips(self, ty: u8, len: u64) -> bool {
        match self {
            Skip::Requests => ty == MessageType::Request as u8,
            Skip::Responses => {
                (ty == MessageType::Response as u8 || ty == MessageType::ErrorResponse as u8)
                    && len <= MAX_RESPONSE_SKIP
            }
        }
    }
}

/// Turns a byte stream, delivered in chunks of any size, into frames.
///
/// Bytes go in through [`read_buf`](Self::read_buf) (read straight into it)
/// or [`extend_from_slice`](Self::extend_from_slice); frames come out of
/// [`decode`](Self::decode) until it returns `Ok(None)`. After an error the
/// stream is unusable: framing is lost and the connection must close.
///
/// ```
/// use weft_proto::{FrameDecoder, MessageType, DEFAULT_MAX_PAYLOAD};
/// let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
/// dec.extend_from_slice(&[7, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0]);
/// assert!(dec.decode()?.is_none()); // header alone: the payload is still due
/// dec.extend_from_slice(b"ok");
/// let frame = dec.decode()?.unwrap();
/// assert_eq!((frame.header.id, frame.header.ty), (7, MessageType::Response));
/// assert_eq!(&frame.payload[..], b"ok");
/// # Ok::<(), weft_proto::DecodeError>(())
/// ```
#[derive(Debug)]
pub struct FrameDecoder {
    buf: BytesMut,
    max_payload: u64,
    /// Header of the frame whose payload is still arriving.
    pending: Option<FrameHeader>,
    /// Which oversize frames are skipped rather than fatal: requests (a
    /// server's decoder) or responses (a client's).
    skip_oversize: Option<Skip>,
    /// Bytes of an oversize request's payload still to discard.
    skipping: u64,
    /// While a large frame is read into a buffer of its own (`buf`), the
    /// read buffer it set aside.
    set_aside: Option<BytesMut>,
    /// Large frames' buffers, back from the application for the next one.
    large: Pool,
}

impl FrameDecoder {
    /// A decoder that rejects payloads longer than `max_payload`.
    pub fn new(max_payload: u64) -> Self {
        FrameDecoder {
            buf: BytesMut::new(),
            max_payload,
            pending: None,
            skip_oversize: None,
            skipping: 0,
            set_aside: None,
            large: Pool::default(),
        }
    }

    /// A decoder for a server: a *request* longer than `max_payload` is
    /// reported as [`DecodeError::RequestTooLarge`], which is not fatal:
    /// its payload is discarded as it arrives, never buffered, and decoding
    /// carries on with the next frame. Any other oversize frame is fatal.
    pub fn skipping_oversize_requests(max_payload: u64) -> Self {
        FrameDecoder {
            skip_oversize: Some(Skip::Requests),
            ..Self::new(max_payload)
        }
    }

    /// A decoder for a client: a *response* (or error response) longer
    /// than `max_payload` is reported as [`DecodeError::ResponseTooLarge`]
    /// and skipped like an oversize request at a server, so that one call
    /// fails and the connection's others go on. Any other oversize frame
    /// is fatal, and so is a response claiming more than 64 GiB (a stream
    /// out of step, whose skip would swallow the rest).
    pub fn skipping_oversize_responses(max_payload: u64) -> Self {
        FrameDecoder {
            skip_oversize: Some(Skip::Responses),
            ..Self::new(max_payload)
        }
    }

    /// Whether a frame has begun to arrive and not finished: part of a
    /// header, a payload still due, or an oversize payload being discarded.
    pub fn is_mid_frame(&self) -> bool {
        self.pending.is_some() || self.skipping > 0 || !self.buf.is_empty()
    }

    /// Whether the bytes buffered begin like a TLS record (a content type
    /// 20-23, then major version 3): a TLS hello or alert where a plaintext
    /// peer's first frame belongs. Meaningful only before the first frame
    /// was taken out. A weft version frame's id is 0, so its first byte is
    /// always 0 and never mistaken.
    pub fn starts_like_tls(&self) -> bool {
        matches!(self.buf.get(..3), Some([20..=23, 3, 0..=4]))
    }

    /// The configured payload limit.
    pub fn max_payload(&self) -> u64 {
        self.max_payload
    }

    /// Bytes received but not yet handed out as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes the buffer currently holds room for (with the read buffer
    /// set aside while a large frame has one of its own).
    pub fn capacity(&self) -> usize {
        self.buf.capacity() + self.set_aside.as_ref().map_or(0, BytesMut::capacity)
    }

    /// The buffer to read into, with room for at least `min_spare` more bytes
    /// (and more if the frame in progress is known to need it, up to a bound).
    /// Append with `BufMut` methods or `tokio::io::AsyncReadExt::read_buf`.
    ///
    /// Room is made in units of [`READ_BUFFER_UNIT`], and only when the spare
    /// room falls below what is asked, so a driver that asks for a few KiB
    /// per read allocates about once per unit of input, not once per read.
    pub fn read_buf(&mut self, min_spare: usize) -> &mut BytesMut {
        let want = self
            .remaining_for_pending()
            .min(EAGER_RESERVE)
            .max(min_spare);
        if self.buf.capacity() == 0 {
            self.buf = BytesMut::with_capacity(want.max(READ_BUFFER_UNIT));
        } else {
            self.buf.reserve(want);
        }
        &mut self.buf
    }

    /// Drops everything received and not yet handed out, the frame in
    /// progress included: for input read only to be thrown away (a server
    /// closing gracefully reads until the client closes).
    pub fn discard_buffered(&mut self) {
        if let Some(read_buf) = self.set_aside.take() {
            self.buf = read_buf;
        }
        self.buf.clear();
        self.pending = None;
        self.skipping = 0;
    }

    /// Appends received bytes.
    pub fn extend_from_slice(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Reads the rest of a `len`-byte frame into a buffer of its own: an
    /// idle one of about its size if its connection has one, else a new
    /// one with room for what arrived and the usual reserve ahead (a header
    /// is only a claim; the buffer grows as the bytes come). The read
    /// buffer is set aside, or, when the frame needs a new buffer, let go
    /// (it holds nothing else: the frame is not complete), so that a header
    /// alone holds no more memory than before. Reading resumes into the
    /// read buffer, or a new one, once the frame is complete.
    fn read_large_frame(&mut self, len: usize) {
        let (mut own, pooled) = match self.large.take(len) {
            Some(own) => (own, true),
            None => {
                let room = len.min(self.buf.len() + EAGER_RESERVE);
                (BytesMut::with_capacity(room), false)
            }
        };
        own.extend_from_slice(&self.buf);
        let mut read_buf = std::mem::replace(&mut self.buf, own);
        read_buf.clear();
        self.set_aside = Some(if pooled { read_buf } else { BytesMut::new() });
    }

    /// The large frame now complete in `buf` (the first `len` bytes), as
    /// a view that returns its buffer when dropped; `read_buf` becomes the
    /// read buffer again, with any bytes read past the frame.
    fn lend_large_frame(&mut self, len: usize, read_buf: BytesMut) -> Bytes {
        let mut own = std::mem::replace(&mut self.buf, read_buf);
        if own.len() > len {
            self.buf.extend_from_slice(&own[len..]);
            own.truncate(len);
        }
        Bytes::from_owner(self.large.lend(own))
    }

    /// Bytes still missing from the frame whose header has been read.
    fn remaining_for_pending(&self) -> usize {
        match self.pending {
            // len <= max_payload, which a caller picked to fit in memory.
            Some(h) => (h.len as usize).saturating_sub(self.buf.len()),
            None => HEADER_LEN.saturating_sub(self.buf.len()),
        }
    }

    /// The next complete frame, `Ok(None)` if more bytes are needed.
    pub fn decode(&mut self) -> Result<Option<Frame>, DecodeError> {
        if self.skipping > 0 {
            let n = self.skipping.min(self.buf.len() as u64);
            self.buf.advance(n as usize);
            self.skipping -= n;
            if self.skipping > 0 {
                return Ok(None);
            }
        }
        let header = match self.pending {
            Some(h) => h,
            None => {
                let Some(raw) = self.buf.first_chunk::<HEADER_LEN>() else {
                    return Ok(None);
                };
                let h = match FrameHeader::decode(raw, self.max_payload) {
                    Err(DecodeError::PayloadTooLarge { len, max })
                        if self.skip_oversize.is_some_and(|s| s.skips(raw[8], len)) =>
                    {
                        let id = u64::from_le_bytes(*raw.first_chunk::<8>().expect("16 bytes"));
                        self.buf.advance(HEADER_LEN);
                        self.skipping = len;
                        return Err(match self.skip_oversize {
                            Some(Skip::Requests) => DecodeError::RequestTooLarge { id, len, max },
                            _ => DecodeError::ResponseTooLarge { id, len, max },
                        });
                    }
                    other => other?,
                };
                self.buf.advance(HEADER_LEN);
                self.pending = Some(h);
                h
            }
        };
        let len = header.len as usize;
        if self.buf.len() < len {
            if len >= LARGE_FRAME && self.set_aside.is_none() {
                self.read_large_frame(len);
            }
            let missing = len - self.buf.len();
            self.buf.reserve(missing.min(EAGER_RESERVE));
            return Ok(None);
        }
        self.pending = None;
        let payload = match self.set_aside.take() {
            Some(read_buf) => self.lend_large_frame(len, read_buf),
            None => self.buf.split_to(len).freeze(),
        };
        Ok(Some(Frame { header, payload }))
    }
}
