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
///
/// A transport of one's own (here an in-memory echo, as a test might use;
/// the drivers' are `driver-tokio/src/io.rs` and `driver-mio/src/stream.rs`):
///
/// ```
/// use bytes::{BufMut, BytesMut};
/// use std::io;
/// use std::task::{Context, Poll};
/// use weft_driver::Transport;
/// use weft_proto::Transmit;
///
/// /// Whatever is written comes back to be read.
/// struct Echo(Vec<u8>);
///
/// impl Transport for Echo {
///     fn poll_read(&mut self, _: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
///         if self.0.is_empty() {
///             // A real stream arranges to be polled again (a waker or a
///             // registration) before saying so.
///             return Poll::Pending;
///         }
///         let n = self.0.len().min(buf.capacity() - buf.len());
///         buf.put_slice(&self.0[..n]);
///         self.0.drain(..n);
///         Poll::Ready(Ok(n))
///     }
///
///     fn poll_write(&mut self, _: &mut Context<'_>, tx: &Transmit) -> Poll<io::Result<usize>> {
///         // One chunk per write, as a stream without vectored writes does.
///         let chunk = tx.first_chunk();
///         self.0.extend_from_slice(chunk);
///         Poll::Ready(Ok(chunk.len()))
///     }
/// }
///
/// let mut t = Echo(Vec::new());
/// let mut tx = Transmit::new(weft_proto::DEFAULT_FLATTEN_LIMIT);
/// tx.push_cancel(7);
/// let waker = std::task::Waker::noop();
/// let mut cx = Context::from_waker(&waker);
/// let Poll::Ready(Ok(n)) = t.poll_write(&mut cx, &tx) else { unreachable!() };
/// tx.advance(n);
/// let mut buf = BytesMut::with_capacity(64);
/// assert!(matches!(t.poll_read(&mut cx, &mut buf), Poll::Ready(Ok(16))));
/// ```
pub trait Transport: Send + 'static {
    /// Reads once into the spare room of `buf`; `Ok(0)` is end of stream.
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>>;

    /// Writes once from the pending bytes of `tx` (vectored where the
    /// stream supports it); returns how many bytes the stream took.
    fn poll_write(&mut self, cx: &mut Context<'_>, tx: &Transmit) -> Poll<io::Result<usize>>;

    /// Pushes out bytes the stream took but still holds: TLS records
    /// encrypted from plaintext it accepted while the socket was full.
    /// Called whenever the queue is empty after writing; `Pending`
    /// registers `cx` as for a write. A stream that holds nothing (a plain
    /// socket) keeps the default; one whose poller reports writability
    /// without a waker (mio) may flush on its next read or write instead.
    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let _ = cx;
        Poll::Ready(Ok(()))
    }

    /// Whether a read of `n` bytes, offered `spare` bytes of room, proves
    /// the stream drained, so the loop may stop reading as if it had seen
    /// `Pending`, without the extra system call that would only say "would
    /// block". True only for a plain socket whose readiness fires again on
    /// new bytes (edge-triggered); never for a stream that buffers inside
    /// (TLS), where a short read proves nothing. The default says no. A
    /// runtime whose poller reported a hang-up must say so with
    /// [`ConnCell::note_hang_up`](crate::client::ConnCell::note_hang_up):
    /// a hang-up is reported once, so after it the stream is read to the end.
    fn drained_by_short_read(&self, spare: usize, n: usize) -> bool {
        let _ = (spare, n);
        false
    }
}
