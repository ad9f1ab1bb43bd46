//! One byte stream, as both drivers see it.

use bytes::BytesMut;
use std::io;
use std::task::{Context, Poll};
use weft_proto::Transmit;

/// The least spare room a read is offered. The core's read buffer is only
/// grown (by a whole [`READ_BUFFER_UNIT`](weft_proto::READ_BUFFER_UNIT))
/// when its spare room falls below this, so frames still held by callers
/// (views into the buffer) do not force a fresh allocation on every read.
/// Every driver reads with it, client and server.
pub const READ_SPARE: usize = 4 * 1024;

/// A connected byte stream driven by polls.
///
/// `Pending` means the stream will signal readiness later: Tokio through
/// the waker in `cx`, mio through its registration (edge-triggered, so a
/// `Pending` must only be returned after the socket said `WouldBlock`).
pub trait Transport: Send + 'static {
    /// Reads once into the spare room of `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;

    /// Writes once from the pending bytes of `tx` (vectored where the
    /// stream supports it); returns how many bytes the stream took.
    fn poll_write(&mut self, cx: &mut Context<'_>, tx: &Transmit) -> Poll<io::Result<usize>>;
}
