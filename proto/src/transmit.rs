//! The outgoing byte queue: frames encoded back to back, ready for one
//! vectored write.
//!
//! Small frames are copied into one growing buffer so that many of them leave
//! in a single write. A frame larger than the flatten limit keeps its payload
//! as a separate chunk, which the writer passes to `writev` without copying
//! (Service Weaver's `writeFlat` / `writeChunked` split, at the same limit).

use crate::frame::{FrameHeader, HEADER_LEN, MessageType};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use std::collections::VecDeque;
use std::io::IoSlice;

/// Default flatten limit: frames up to this size are written as one buffer.
pub const DEFAULT_FLATTEN_LIMIT: usize = 4096;

/// Encoded frames waiting to be written.
///
/// ```
/// use bytes::Bytes;
/// use weft_proto::MessageType;
/// use weft_proto::Transmit;
///
/// let mut tx = Transmit::new(4096);
/// tx.push_frame(MessageType::Response, 7, 0, |_| {}, &Bytes::from_static(b"world"));
/// let mut slices = [std::io::IoSlice::new(&[]); 4];
/// let n = tx.io_slices(&mut slices);
/// assert_eq!(slices[..n].iter().map(|s| s.len()).sum::<usize>(), 21);
/// tx.advance(21); // after the socket accepted 21 bytes
/// assert!(tx.is_empty());
/// ```
#[derive(Debug)]
pub struct Transmit {
    /// Frozen chunks, oldest first; `tail` logically follows them.
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
    /// Frames queued since the queue was last empty.
    frames: usize,
    flatten_limit: usize,
}

impl Transmit {
    /// An empty queue that flattens frames of at most `flatten_limit` bytes.
    pub fn new(flatten_limit: usize) -> Self {
        Transmit {
            chunks: VecDeque::new(),
            tail: BytesMut::new(),
            len: 0,
            frames: 0,
            flatten_limit,
        }
    }

    /// Bytes waiting to be written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Frames queued since the queue was last empty, a partly written one
    /// included: how large the batch waiting for a write has grown.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Whether nothing waits to be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Queues one frame. `extra_len` bytes written by `extra` precede
    /// `payload` inside the frame's payload (the request header, say).
    /// `extra` must write exactly `extra_len` bytes.
    pub fn push_frame(
        &mut self,
        ty: MessageType,
        id: u64,
        extra_len: usize,
        extra: impl FnOnce(&mut BytesMut),
        payload: &Bytes,
    ) {
        let body = extra_len + payload.len();
        let total = HEADER_LEN + body;
        let flat = total <= self.flatten_limit;
        self.tail
            .reserve(if flat { total } else { HEADER_LEN + extra_len });
        let header = FrameHeader {
            id,
            ty,
            len: body as u64,
        };
        self.tail.put_slice(&header.encode());
        let before = self.tail.len();
        extra(&mut self.tail);
        debug_assert_eq!(
            self.tail.len() - before,
            extra_len,
            "extra wrote the wrong length"
        );
        if flat {
            self.tail.put_slice(payload);
        } else {
            // Cut the tail here so the payload slots in after it unchanged.
            self.chunks.push_back(self.tail.split().freeze());
            self.chunks.push_back(payload.clone());
        }
        self.len += total;
        self.frames += 1;
    }

    /// Fills `dst` with the pending bytes in order and returns how many
    /// slices it used. Fewer bytes than [`len`](Self::len) are described when
    /// `dst` is too short.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let tail = (!self.tail.is_empty()).then_some(&self.tail[..]);
        let mut n = 0;
        for (slot, chunk) in dst
            .iter_mut()
            .zip(self.chunks.iter().map(|c| &c[..]).chain(tail))
        {
            *slot = IoSlice::new(chunk);
            n += 1;
        }
        n
    }

    /// The first contiguous run of pending bytes (for writers without
    /// vectored I/O).
    pub fn first_chunk(&self) -> &[u8] {
        match self.chunks.front() {
            Some(c) => c,
            None => &self.tail,
        }
    }

    /// Drops `n` bytes from the front after they were written.
    ///
    /// # Panics
    ///
    /// If `n` exceeds [`len`](Self::len): a driver that reports more bytes
    /// written than it was given has a bug no recovery can hide.
    pub fn advance(&mut self, mut n: usize) {
        assert!(n <= self.len, "advanced {n} past {} queued bytes", self.len);
        self.len -= n;
        if self.len == 0 {
            self.frames = 0;
        }
        while n > 0 {
            match self.chunks.front_mut() {
                Some(c) if c.len() <= n => {
                    n -= c.len();
                    self.chunks.pop_front();
                }
                Some(c) => {
                    c.advance(n);
                    return;
                }
                None => {
                    self.tail.advance(n);
                    return;
                }
            }
        }
    }

    /// Moves every pending byte into `out`, in order (for in-memory links and
    /// tests; real drivers use [`io_slices`](Self::io_slices)).
    pub fn drain_into(&mut self, out: &mut Vec<u8>) {
        for c in self.chunks.drain(..) {
            out.extend_from_slice(&c);
        }
        out.extend_from_slice(&self.tail);
        self.tail.clear();
        self.len = 0;
        self.frames = 0;
    }
}

/// Encoders for each message kind.
impl Transmit {
    /// Queues a version frame.
    pub fn push_version(&mut self, v: crate::Version) {
        let payload = v.encode();
        self.push_frame(
            MessageType::Version,
            0,
            4,
            |b| b.put_slice(&payload),
            &Bytes::new(),
        );
    }

    /// Queues a goaway (weft's version-1 extension, [`crate::GoAway`]):
    /// `u64 last_id | reason`, the reason cut to
    /// [`MAX_GOAWAY_REASON`](crate::MAX_GOAWAY_REASON) bytes.
    pub fn push_goaway(&mut self, last_id: u64, reason: &str) {
        let reason = crate::goaway::GoAway::wire_reason(reason);
        self.push_frame(
            MessageType::GoAway,
            0,
            8 + reason.len(),
            |b| {
                b.put_slice(&last_id.to_le_bytes());
                b.put_slice(reason.as_bytes());
            },
            &Bytes::new(),
        );
    }

    /// Queues a request: `u32 header length | header | args`.
    pub fn push_request(&mut self, id: u64, header: crate::header::HeaderFields<'_>, args: &Bytes) {
        let hlen = header.encoded_len();
        self.push_frame(
            MessageType::Request,
            id,
            4 + hlen,
            |b| {
                b.put_u32_le(hlen as u32);
                header.encode(b);
            },
            args,
        );
    }

    /// Queues a successful response.
    pub fn push_response(&mut self, id: u64, result: &Bytes) {
        self.push_frame(MessageType::Response, id, 0, |_| {}, result);
    }

    /// Queues an error response.
    pub fn push_error(&mut self, id: u64, err: &crate::RemoteError) {
        self.push_frame(
            MessageType::ErrorResponse,
            id,
            err.encoded_len(),
            |b| err.encode(b),
            &Bytes::new(),
        );
    }

    /// Queues a cancel frame for call `id`.
    pub fn push_cancel(&mut self, id: u64) {
        self.push_frame(MessageType::Cancel, id, 0, |_| {}, &Bytes::new());
    }
}
