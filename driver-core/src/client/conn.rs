//! One open connection: its link and transport under their own lock.

use super::state::WorkList;
use super::{Client, Runtime};
use crate::{READ_SPARE, Transport};
use std::collections::VecDeque;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use weft_proto::{Command, ConnEvent, ConnId, Link};

/// Reads per turn of a connection's loop, so one busy connection cannot
/// starve the others sharing a thread.
const READS_PER_TURN: usize = 32;

/// A connection's [`Link`] and transport, locked together and apart from
/// the router.
pub struct ConnCell<S> {
    id: ConnId,
    inner: Mutex<Inner<S>>,
    /// The router's commands for this link, in the order it emitted them.
    /// Pushed under the router's lock, taken whole under `inner`'s, so that
    /// whichever thread applies them applies them in order: a cancel can
    /// never overtake the start of its own call. A leaf lock: nothing else
    /// is locked while it is held.
    commands: Mutex<VecDeque<Command>>,
}

struct Inner<S> {
    link: Link,
    /// Taken (and so closed) when the router lets the connection go.
    stream: Option<S>,
    /// Wakes the connection's loop.
    io: Option<Waker>,
    /// Callers left requests for the loop to write.
    flush_wanted: bool,
    /// The last write found the transport full; until a write completes,
    /// callers leave theirs to the loop, which waits for room.
    write_blocked: bool,
    /// The loop let the runtime run once before a batched write.
    deferred: bool,
    /// The poller reported a hang-up: read to the end, whatever
    /// [`Transport::drained_by_short_read`] says.
    hung_up: bool,
    /// Commands taken from the queue to apply, kept between turns so the
    /// queue's storage is swapped, never reallocated, per call.
    applying: VecDeque<Command>,
}

impl<S> std::fmt::Debug for ConnCell<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnCell")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl<S: Transport> ConnCell<S> {
    pub(super) fn new(id: ConnId, link: Link, stream: S) -> Self {
        ConnCell {
            id,
            inner: Mutex::new(Inner {
                link,
                stream: Some(stream),
                io: None,
                flush_wanted: false,
                write_blocked: false,
                deferred: false,
                hung_up: false,
                applying: VecDeque::new(),
            }),
            commands: Mutex::new(VecDeque::new()),
        }
    }

    /// Queues a router command; true if the queue was empty, so whoever
    /// queued it must see that it gets applied.
    pub(super) fn queue(&self, command: Command) -> bool {
        let mut q = self.commands.lock().expect("weft command queue poisoned");
        q.push_back(command);
        q.len() == 1
    }

    /// Applies every queued command, in order; the caller holds `inner`.
    fn apply_queued(&self, inner: &mut Inner<S>, now: Instant) {
        std::mem::swap(
            &mut *self.commands.lock().expect("weft command queue poisoned"),
            &mut inner.applying,
        );
        for command in inner.applying.drain(..) {
            inner.link.apply(now, command);
        }
    }

    /// The router's name for this connection.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Runs `f` on the transport, if the connection is still open: how a
    /// runtime registers it with its poller.
    pub fn with_stream<T>(&self, f: impl FnOnce(&mut S) -> T) -> Option<T> {
        self.lock().stream.as_mut().map(f)
    }

    /// Records that the runtime's poller reported the peer's hang-up (or an
    /// error) on this connection; see [`Transport::drained_by_short_read`].
    pub fn note_hang_up(&self) {
        self.lock().hung_up = true;
    }

    /// Whether the router let the connection go (its transport is closed).
    pub fn is_closed(&self) -> bool {
        self.lock().stream.is_none()
    }

    fn lock(&self) -> MutexGuard<'_, Inner<S>> {
        self.inner.lock().expect("weft connection state poisoned")
    }

    /// Closes the transport and wakes the loop, which then ends.
    pub(super) fn close(&self, now: Instant) {
        let mut inner = self.lock();
        inner.link.close(now);
        // Dropping the stream closes the socket.
        inner.stream = None;
        if let Some(io) = inner.io.take() {
            io.wake();
        }
    }
}

impl<S: Transport> ConnCell<S> {
    pub(super) fn fail<R: Runtime<Stream = S>>(
        &self,
        client: &Client<R>,
        reason: &str,
        now: Instant,
        work: &mut WorkList<R>,
    ) {
        let mut inner = self.lock();
        inner.link.handle_transport_closed(now, reason);
        client.deliver(self.id, &mut inner, now, work);
    }
}

impl<S: Transport> Inner<S> {
    /// Writes until the queue is empty and the transport holds nothing
    /// back, or the transport is full. A `Pending` write or flush
    /// registered `cx`'s waker.
    fn flush(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        let Some(stream) = self.stream.as_mut() else {
            return Poll::Ready(());
        };
        self.write_blocked = false;
        // Once the queue is empty, a TLS stream may still hold the last
        // bytes as records the full socket did not take: until they leave,
        // the request is not sent, and a caller's write registered no
        // waker that would send them.
        let written = loop {
            if self.link.transmit().is_empty() {
                break stream.poll_flush(cx);
            }
            match stream.poll_write(cx, self.link.transmit()) {
                Poll::Ready(Ok(n)) => self.link.advance_transmit(now, n),
                Poll::Ready(Err(e)) => break Poll::Ready(Err(e)),
                Poll::Pending => break Poll::Pending,
            }
        };
        match written {
            Poll::Ready(Ok(())) => Poll::Ready(()),
            Poll::Ready(Err(e)) => {
                self.link
                    .handle_transport_closed(now, format!("write: {e}"));
                Poll::Ready(())
            }
            Poll::Pending => {
                self.write_blocked = true;
                Poll::Pending
            }
        }
    }

    /// Reads until the transport would block or the turn's budget is spent;
    /// `Ready` means the budget ran out with bytes still coming.
    fn read(&mut self, cx: &mut Context<'_>, now: Instant) -> Poll<()> {
        for _ in 0..READS_PER_TURN {
            if self.link.is_failed() {
                return Poll::Pending;
            }
            let Some(stream) = self.stream.as_mut() else {
                return Poll::Pending;
            };
            let buf = self.link.read_buf(READ_SPARE);
            let spare = buf.capacity() - buf.len();
            match stream.poll_read(cx, buf) {
                Poll::Ready(Ok(0)) => {
                    self.link
                        .handle_transport_closed(now, "peer closed the connection");
                }
                Poll::Ready(Ok(n)) => {
                    self.link.handle_read(now);
                    if !self.hung_up && stream.drained_by_short_read(spare, n) {
                        return Poll::Pending;
                    }
                }
                Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::Interrupted => {}
                Poll::Ready(Err(e)) => {
                    self.link.handle_transport_closed(now, format!("read: {e}"));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(())
    }
}

impl<R: Runtime> Client<R> {
    /// Carries out the router's queued commands on a connection; the
    /// caller writes them unless they make a batch of fewer than `batch_at`
    /// frames or the transport is full, when the loop writes them (the
    /// caller writes anyway before the loop's first turn).
    pub(super) fn commands(
        self: &Arc<Self>,
        cell: &ConnCell<R::Stream>,
        batch_at: usize,
        now: Instant,
        work: &mut WorkList<R>,
    ) {
        let mut inner = cell.lock();
        if inner.stream.is_none() {
            return;
        }
        cell.apply_queued(&mut inner, now);
        if inner.link.transmit().is_empty() || inner.write_blocked {
            // Nothing to write (a cancel of an unsent call, an expiry), or
            // no room: the loop, woken when there is, writes it all.
        } else if inner.link.transmit().frames() < batch_at && inner.io.is_some() {
            // A batch still filling: the loop writes it, unless a later
            // caller fills it first.
            if !inner.flush_wanted {
                inner.flush_wanted = true;
                inner.io.as_ref().expect("checked").wake_by_ref();
            }
        } else {
            // The caller's own write: no waker of its own to register, so a
            // full transport hands the rest to the loop.
            let mut noop = Context::from_waker(Waker::noop());
            if inner.flush(&mut noop, now).is_pending()
                && let Some(io) = &inner.io
            {
                io.wake_by_ref();
            }
        }
        self.deliver(cell.id, &mut inner, now, work);
    }

    /// One turn of a connection's I/O loop: read what arrived, write what
    /// is queued, hand the link's events to the router. `Ready` when the
    /// connection is finished and the loop should end; `Pending` when the
    /// transport (or `cx`'s waker) will call again.
    pub fn drive_conn(
        self: &Arc<Self>,
        cell: &ConnCell<R::Stream>,
        cx: &mut Context<'_>,
    ) -> Poll<()> {
        let now = Instant::now();
        let mut inner = cell.lock();
        if inner.stream.is_none() {
            return Poll::Ready(());
        }
        if !inner.io.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            inner.io = Some(cx.waker().clone());
        }
        if inner.flush_wanted {
            // Let the callers that are ready run first, then write all they
            // queued at once (a self-wake goes to the back of the queue).
            if R::DEFER_BATCHED_FLUSH && !inner.deferred {
                inner.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            inner.flush_wanted = false;
            inner.deferred = false;
        }
        cell.apply_queued(&mut inner, now);
        let more = inner.read(cx, now);
        // Deliver before the last write so a response that frees a caller
        // does not wait for it; write last so `cx` is registered.
        let mut work = WorkList::new();
        self.deliver(cell.id, &mut inner, now, &mut work);
        let _ = inner.flush(cx, now);
        self.deliver(cell.id, &mut inner, now, &mut work);
        // Read before unlocking: once the work below wakes a caller, the
        // caller takes this lock to write its next request, and looking
        // again would wait for it. A close the work makes wakes this loop.
        let closed = inner.stream.is_none();
        drop(inner);
        self.carry_out(work, now);
        if closed {
            return Poll::Ready(());
        }
        if more.is_ready() {
            // Out of budget with bytes still arriving: come back after the
            // runtime has run others.
            cx.waker().wake_by_ref();
        }
        Poll::Pending
    }

    /// Hands the link's events to the router, in order, holding the
    /// connection's lock so no other thread's events for it overtake them.
    fn deliver(
        &self,
        conn: ConnId,
        inner: &mut Inner<R::Stream>,
        now: Instant,
        work: &mut WorkList<R>,
    ) {
        let Some(first) = inner.link.poll_event() else {
            return;
        };
        let mut state = self.lock();
        let mut event = Some(first);
        while let Some(e) = event {
            // Only the end of a call leaves every replica's state as it was.
            state.replicas_moved |= state.metrics_live && !matches!(e, ConnEvent::Done { .. });
            state.router.handle_conn_event(now, conn, e);
            event = inner.link.poll_event();
        }
        state.drain(now, work);
    }
}
