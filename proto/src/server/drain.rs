//! Graceful shutdown of one server connection: the goaway, which requests
//! still run, the grace deadline, and when the connection closes.

use super::{CancelReason, IDLE_REASON, LINGER, SHUTDOWN_REASON, ServerConn};
use crate::error::ConnError;
use crate::timer::later;
use crate::{RemoteError, Version};
use std::time::Instant;

/// A graceful close: the transport's write half is shut once the output is
/// out, then input is read and dropped until the client closes too, for
/// up to [`LINGER`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum HalfClose {
    /// Waiting for the output to go, then for the driver to shut writes
    /// (under TLS that is a record to write, which a client that stopped
    /// reading never takes): given up at `until`.
    Pending { until: Instant },
    /// Writes are shut: reading until end of stream or this instant.
    WritesShut { until: Instant },
}

impl HalfClose {
    pub(super) fn until(self) -> Instant {
        match self {
            HalfClose::Pending { until } | HalfClose::WritesShut { until } => until,
        }
    }
}

/// A graceful shutdown in progress (see [`ServerConn::shutdown`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Drain {
    /// When handlers still running are cancelled and the connection
    /// closes; taken when it fires.
    pub(super) grace_due: Option<Instant>,
    /// Once nothing is in flight on a version-1 connection: when the
    /// server closes it if the client has not.
    pub(super) close_due: Option<Instant>,
}

impl ServerConn {
    /// Shuts the connection down gracefully, with handlers given until
    /// `grace_deadline` to finish.
    ///
    /// - Version 1 or later: a goaway naming the highest request id
    ///   received goes out; those requests are still served, later ones
    ///   are discarded unanswered (the client sends them elsewhere), and
    ///   the connection is still read for cancels. Once nothing is in
    ///   flight the server waits up to [`LINGER`] for the client to close.
    /// - Version 0 (Service Weaver's peers, which have no goaway): the
    ///   connection is not read any more; once the requests received are
    ///   answered it closes.
    /// - Before the handshake: it closes at once (nothing was received).
    ///
    /// At `grace_deadline` the handlers still running are cancelled
    /// ([`CancelReason::Shutdown`]), their callers answered with a
    /// cancellation error, and the connection closes once that is written.
    /// Calling it again can only bring the deadline closer: `now` stops at
    /// once, for a second signal. The end is reported by
    /// [`ServerEvent::Failed`](super::ServerEvent::Failed)`(`[`ConnError::Closed`]`)`.
    pub fn shutdown(&mut self, now: Instant, grace_deadline: Instant) {
        self.advance_time(now);
        if self.failure.is_some() {
            // Closing already: a stop at once does not wait for its
            // output or the client's end either.
            if grace_deadline <= self.now {
                self.abandon_close();
            }
            return;
        }
        match &mut self.drain {
            // Already draining (a shutdown, or idle, which has no grace):
            // the deadline can only come closer.
            Some(d) => {
                d.grace_due = Some(
                    d.grace_due
                        .map_or(grace_deadline, |due| due.min(grace_deadline)),
                );
            }
            None => self.begin_drain(Some(grace_deadline), SHUTDOWN_REASON),
        }
        self.advance_time(now);
        self.check_drained();
    }

    /// Starts draining: a goaway on version 1, nothing to send on version
    /// 0 (which is then no longer read), closed at once before the
    /// handshake.
    fn begin_drain(&mut self, grace_due: Option<Instant>, reason: &str) {
        self.drain = Some(Drain {
            grace_due,
            close_due: None,
        });
        self.idle_due = None;
        match self.version {
            None => self.close_gracefully(),
            Some(v) if v.has_goaway() => {
                tracing::debug!(last_id = self.last_request, reason, "sending goaway");
                self.tx.push_goaway(self.last_request, reason);
            }
            Some(_) => {}
        }
    }

    /// Restarts the idle timer after traffic: it runs while the connection
    /// is open, past its handshake, and has nothing in flight.
    pub(super) fn touch(&mut self) {
        self.idle_due = match self.config.idle_timeout {
            Some(t)
                if self.in_flight.is_empty()
                    && self.drain.is_none()
                    && self.failure.is_none()
                    && self.version.is_some() =>
            {
                Some(later(self.now, t))
            }
            _ => None,
        };
    }

    /// Nothing happened for the idle timeout: a version-1 client is told
    /// to go away (and closes), a version-0 one is closed.
    pub(super) fn idle_expired(&mut self) {
        tracing::debug!(timeout = ?self.config.idle_timeout, "closing an idle connection");
        self.begin_drain(None, IDLE_REASON);
        self.check_drained();
    }

    /// A draining connection with nothing left in flight: version 0
    /// closes now; version 1 waits a little for the client to close it
    /// (closing first could reset the connection under a goaway the client
    /// has not read yet, if a request crossed it).
    pub(super) fn check_drained(&mut self) {
        if self.failure.is_some() || !self.in_flight.is_empty() {
            return;
        }
        let Some(d) = &mut self.drain else { return };
        if !self.version.is_some_and(Version::has_goaway) {
            return self.close_gracefully();
        }
        if d.close_due.is_none() {
            d.close_due = Some(self.now + LINGER);
        }
    }

    /// The grace period ran out: every request still in flight is
    /// cancelled, answered with Go's `context canceled`, and the connection
    /// closes once that is written.
    pub(super) fn grace_expired(&mut self) {
        let mut ids: Vec<u64> = self.in_flight.keys().copied().collect();
        ids.sort_unstable();
        tracing::debug!(in_flight = ids.len(), "shutdown grace period over");
        for &id in &ids {
            self.cancel(id, CancelReason::Shutdown);
            self.tx.push_error(id, &RemoteError::canceled());
        }
        self.in_flight.clear();
        self.close_gracefully();
    }

    /// Ends a drained connection: like [`fail`](Self::fail) with
    /// [`ConnError::Closed`], but what is queued (goaway, last answers) is
    /// still written, for up to [`LINGER`], and then the connection is
    /// half-closed ([`wants_close_write`](Self::wants_close_write)).
    pub(super) fn close_gracefully(&mut self) {
        if self.failure.is_some() {
            return;
        }
        if !self.tx.is_empty() || self.output_held {
            self.linger_until = Some(self.now + LINGER);
        }
        self.half_close = Some(HalfClose::Pending {
            until: self.now + LINGER,
        });
        self.fail_keeping_output(ConnError::Closed, true);
    }

    /// Whether the driver should shut the transport's write half now
    /// (`shutdown(Write)`; under TLS a close_notify first), then report it
    /// with [`handle_write_closed`](Self::handle_write_closed). A graceful
    /// close asks for it once its last output is out. Closing outright
    /// with the client's bytes unread (a Go client goes on sending while
    /// the server drains: it has no goaway) would reset the connection,
    /// and the client could lose answers it had not read yet; so the
    /// server says it is done writing, and reads (and drops) what comes
    /// until the client closes its end, for up to [`LINGER`]. Then
    /// [`is_finished`](Self::is_finished).
    pub fn wants_close_write(&self) -> bool {
        matches!(self.half_close, Some(HalfClose::Pending { .. }))
            && self.tx.is_empty()
            && !self.output_held
    }

    /// The transport's write half is shut (see
    /// [`wants_close_write`](Self::wants_close_write)): input is read and
    /// dropped until end of stream, or for [`LINGER`].
    pub fn handle_write_closed(&mut self, now: Instant) {
        self.advance_time(now);
        if matches!(self.half_close, Some(HalfClose::Pending { .. })) {
            self.half_close = Some(HalfClose::WritesShut {
                until: self.now + LINGER,
            });
        }
    }

    /// A connection already closing stops waiting: its output is dropped
    /// and it does not half-close.
    pub(super) fn abandon_close(&mut self) {
        self.half_close = None;
        self.linger_until = None;
        self.tx.advance(self.tx.len());
        self.output_held = false;
    }

    /// Reading only to drop what arrives, so that the close is not a reset.
    pub(super) fn reads_to_discard(&self) -> bool {
        matches!(self.half_close, Some(HalfClose::WritesShut { .. }))
    }
}
