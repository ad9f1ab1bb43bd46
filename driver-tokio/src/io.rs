//! Moving bytes between a Tokio stream and a core's buffers, one poll at a
//! time.

use crate::endpoint::BoxStream;
use bytes::BytesMut;
use std::future::Future;
use std::io::{self, IoSlice};
use std::pin::{Pin, pin};
use std::task::{Context, Poll};
use tokio::io::{AsyncReadExt, AsyncWrite};
use weft_driver::Transport;
use weft_proto::Transmit;

/// Slices per vectored write; the kernel's IOV_MAX is far above this.
const MAX_SLICES: usize = 64;

/// A Tokio byte stream as the shared driver layer sees it.
pub(crate) struct TokioStream(pub(crate) BoxStream);

impl Transport for TokioStream {
    fn poll_read(&mut self, cx: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        poll_read(&mut self.0, cx, buf)
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, tx: &Transmit) -> Poll<io::Result<usize>> {
        poll_write(&mut self.0, cx, tx)
    }

    fn poll_flush(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.0).poll_flush(cx)
    }
}

/// Reads once into `buf`. `Ok(0)` means end of stream.
pub(crate) fn poll_read(
    stream: &mut BoxStream,
    cx: &mut Context<'_>,
    buf: &mut BytesMut,
) -> Poll<io::Result<usize>> {
    // tokio's read_buf fills the spare capacity without zeroing it; the
    // future holds no state across polls, so polling a fresh one is sound.
    pin!(stream.read_buf(buf)).poll(cx)
}

/// One write of the pending bytes of `tx` (vectored when the stream
/// supports it). Returns how many bytes the stream took; the caller advances
/// the queue and calls again while bytes remain. `Pending` registers the
/// waker in `cx` for writability.
pub(crate) fn poll_write(
    stream: &mut BoxStream,
    cx: &mut Context<'_>,
    tx: &Transmit,
) -> Poll<io::Result<usize>> {
    let written = if stream.is_write_vectored() {
        let mut slices = [IoSlice::new(&[]); MAX_SLICES];
        let n = tx.io_slices(&mut slices);
        Pin::new(&mut *stream).poll_write_vectored(cx, &slices[..n])
    } else {
        Pin::new(&mut *stream).poll_write(cx, tx.first_chunk())
    };
    match written {
        Poll::Ready(Ok(0)) if !tx.is_empty() => Poll::Ready(Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "stream accepted no bytes",
        ))),
        other => other,
    }
}
