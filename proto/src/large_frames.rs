//! Buffers for large frames, kept for the next one.
//!
//! A frame is handed out as a view of the buffer it was read into, so the
//! buffer lives as long as the application holds the frame. For small
//! frames that is a share of a read buffer unit. A large frame needs a
//! buffer of its own, and allocating a fresh one per frame, only to free
//! it when the application drops the frame, costs far more than the bytes
//! suggest: glibc gives memory of that size back to the kernel on free and
//! takes new pages on the next allocation, a page fault per 4 KiB (the
//! tokio client at 1 MiB x 16 in flight spent ~15 % of its time in them
//! and did half the calls of the same client with malloc told to keep its
//! memory). So a large frame's buffer returns here when its last view is
//! dropped, and the decoder reads the next large frame into it.
//!
//! Bounded: a connection keeps at most [`POOL_BYTES`] of idle buffers, and
//! all connections of the process together at most [`PROCESS_POOL_BYTES`],
//! so that a server with many connections pins little. What a connection
//! keeps is what its peak of large frames held at once needed (1 MiB x 16
//! in flight keeps ~32 MiB: each buffer grew to twice its frame), so one
//! busy connection may hold half the process's budget for as long as it
//! lives; past the bounds buffers are freed as before.

use bytes::BytesMut;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// Frames of at least this many payload bytes get a buffer of their own,
/// taken from the pool when it has one.
pub(crate) const LARGE_FRAME: usize = 256 * 1024;

/// How much more than twice a frame's length a buffer it is read into may
/// hold (buffers grow by doubling).
const FIT_SLACK: usize = 64 * 1024;

/// Idle buffer capacity a connection keeps at most.
pub(crate) const POOL_BYTES: usize = 32 * 1024 * 1024;

/// Idle buffer capacity all connections of the process keep at most.
pub(crate) const PROCESS_POOL_BYTES: usize = 64 * 1024 * 1024;

/// Idle buffer capacity kept now, by every pool of the process.
static POOLED: AtomicUsize = AtomicUsize::new(0);

/// Counts `bytes` more idle in the process if the bound allows.
fn admit(bytes: usize) -> bool {
    POOLED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
            (now + bytes <= PROCESS_POOL_BYTES).then_some(now + bytes)
        })
        .is_ok()
}

/// One connection's idle large-frame buffers.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    shared: Arc<Mutex<Idle>>,
}

#[derive(Debug, Default)]
struct Idle {
    bufs: Vec<BytesMut>,
    /// Sum of the idle buffers' capacities.
    bytes: usize,
}

impl Drop for Idle {
    /// The connection is gone: its idle buffers are freed.
    fn drop(&mut self) {
        POOLED.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

impl Pool {
    /// An idle buffer (empty, with the capacity it had) for a frame of
    /// `len` bytes, if there is one of about that size: not much larger,
    /// since a driver reads into all of a buffer's room and what it reads
    /// past the frame is copied back out.
    pub(crate) fn take(&self, len: usize) -> Option<BytesMut> {
        let mut idle = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        let fits = |b: &BytesMut| b.capacity() <= 2 * len + FIT_SLACK;
        let i = idle.bufs.iter().rposition(fits)?;
        let buf = idle.bufs.swap_remove(i);
        idle.bytes -= buf.capacity();
        POOLED.fetch_sub(buf.capacity(), Ordering::Relaxed);
        Some(buf)
    }

    /// The frame `buf` holds, as a value that gives the buffer back to this
    /// pool when dropped (if the pool still exists and has room).
    pub(crate) fn lend(&self, buf: BytesMut) -> Lent {
        Lent {
            buf,
            pool: Arc::downgrade(&self.shared),
        }
    }

    /// Idle buffers and their total capacity (tests).
    #[cfg(test)]
    fn idle(&self) -> (usize, usize) {
        let idle = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        (idle.bufs.len(), idle.bytes)
    }
}

/// A large frame's bytes, owned by the `Bytes` handed to the application.
pub(crate) struct Lent {
    buf: BytesMut,
    pool: Weak<Mutex<Idle>>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        &self.buf[..]
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        let Some(shared) = self.pool.upgrade() else {
            return;
        };
        let cap = self.buf.capacity();
        let mut idle = shared.lock().unwrap_or_else(|e| e.into_inner());
        if idle.bytes + cap <= POOL_BYTES && admit(cap) {
            let mut buf = std::mem::take(&mut self.buf);
            buf.clear();
            idle.bytes += cap;
            idle.bufs.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    /// The process-wide count is shared by every test of this binary:
    /// the tests that pool buffers take turns.
    fn turn() -> std::sync::MutexGuard<'static, ()> {
        static TURN: Mutex<()> = Mutex::new(());
        TURN.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Lends `n` frames of half a connection's bound from `pool` and drops
    /// them.
    fn lend_halves(pool: &Pool, n: usize) {
        let frames: Vec<Bytes> = (0..n)
            .map(|_| Bytes::from_owner(pool.lend(BytesMut::zeroed(POOL_BYTES / 2))))
            .collect();
        drop(frames);
    }

    #[test]
    fn a_dropped_frame_returns_its_buffer_within_the_bound() {
        let _turn = turn();
        let pool = Pool::default();
        let frame = Bytes::from_owner(pool.lend(BytesMut::zeroed(LARGE_FRAME)));
        let view = frame.slice(10..20);
        drop(frame);
        assert_eq!(pool.idle().0, 0, "a view still holds it");
        drop(view);
        let (n, bytes) = pool.idle();
        assert_eq!(n, 1);
        assert!(bytes >= LARGE_FRAME);
        // Not for a frame of a quarter of its size: too much room to read
        // past the frame into.
        assert!(pool.take(LARGE_FRAME / 4 - FIT_SLACK).is_none());
        let buf = pool.take(LARGE_FRAME).unwrap();
        assert!(buf.is_empty() && buf.capacity() >= LARGE_FRAME);
        assert_eq!(pool.idle(), (0, 0));

        // Past the bound a buffer is freed instead of kept.
        lend_halves(&pool, 3);
        assert_eq!(pool.idle(), (2, POOL_BYTES));

        // The process-wide bound: a second connection fills the rest, a
        // third keeps nothing until the first is gone.
        let second = Pool::default();
        lend_halves(&second, 2);
        assert_eq!(second.idle().1 + POOL_BYTES, PROCESS_POOL_BYTES);
        let third = Pool::default();
        lend_halves(&third, 1);
        assert_eq!(third.idle(), (0, 0), "over the process bound");
        drop(pool);
        lend_halves(&third, 1);
        assert_eq!(third.idle(), (1, POOL_BYTES / 2));
    }

    #[test]
    fn a_frame_outliving_its_connection_frees_its_buffer() {
        let _turn = turn();
        let pool = Pool::default();
        let frame = Bytes::from_owner(pool.lend(BytesMut::from(&[1u8; 1024][..])));
        drop(pool);
        assert_eq!(&frame[..3], &[1, 1, 1]);
        drop(frame);
    }
}
