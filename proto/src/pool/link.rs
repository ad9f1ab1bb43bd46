//! One connection of a pool: a [`ClientConn`] that speaks in router ids.

use super::{Command, ConnEvent, PoolCallId};
use crate::client::{CallId, ClientConn, ClientEvent, ConnConfig};
use crate::error::ConnError;
use crate::idmap::IdMap;
use crate::transmit::Transmit;
use bytes::BytesMut;
use std::time::Instant;

/// One of a pool's connections, owned by the driver next to its transport.
///
/// It carries out the router's [`Command`]s and reports [`ConnEvent`]s
/// back; the bytes in between are [`ClientConn`]'s. Call order, for the
/// driver that owns it:
///
/// - bytes read: [`read_buf`](Self::read_buf) then
///   [`handle_read`](Self::handle_read) (or [`handle_input`](Self::handle_input));
///   a failed or ended transport: [`handle_transport_closed`](Self::handle_transport_closed);
/// - a command from the router: [`apply`](Self::apply);
/// - after either, write [`transmit`](Self::transmit) (then
///   [`advance_transmit`](Self::advance_transmit)) and hand every
///   [`poll_event`](Self::poll_event) to the router, in order.
///
/// A link has no timers of its own to drive: the router owns call
/// deadlines and sends [`Command::Expire`].
#[derive(Debug)]
pub struct Link {
    conn: ClientConn,
    /// Router id -> id on this connection, for cancels and expiries.
    by_router: IdMap<CallId>,
    /// Id on this connection -> router id, for results.
    by_conn: IdMap<PoolCallId>,
    /// Congestion as last reported to the router; `None` when the router
    /// asked for a report ([`Command::ReportCongestion`]).
    reported: Option<bool>,
}

impl Link {
    /// A link for a transport that was just opened; the version frame is
    /// queued at once.
    pub fn new(now: Instant, config: ConnConfig) -> Self {
        Link {
            conn: ClientConn::new(now, config),
            by_router: IdMap::default(),
            by_conn: IdMap::default(),
            reported: Some(false),
        }
    }

    // ---- getters ----

    /// The connection core underneath.
    pub fn conn(&self) -> &ClientConn {
        &self.conn
    }

    /// Whether the connection has failed or closed.
    pub fn is_failed(&self) -> bool {
        self.conn.failure().is_some()
    }

    // ---- inputs ----

    /// The buffer to read transport bytes into; see [`ClientConn::read_buf`].
    pub fn read_buf(&mut self, min_spare: usize) -> &mut BytesMut {
        self.conn.read_buf(min_spare)
    }

    /// Processes the bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant) {
        self.conn.handle_read(now);
    }

    /// Processes bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        self.conn.handle_input(now, data);
    }

    /// The transport failed or reached end of stream.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: impl Into<String>) {
        self.conn.handle_transport_closed(now, reason);
    }

    /// Carries out a command from the router.
    #[inline]
    pub fn apply(&mut self, now: Instant, command: Command) {
        match command {
            Command::Start {
                call,
                method,
                args,
                opts,
            } => {
                let id = self.conn.start_call(now, method, args, &opts);
                self.by_router.insert(call.0, id);
                self.by_conn.insert(id.0, call);
            }
            Command::Cancel { call } => {
                if let Some(&id) = self.by_router.get(&call.0) {
                    self.conn.cancel(now, id);
                }
            }
            Command::Expire { call } => match self.by_router.get(&call.0) {
                Some(&id) => {
                    self.conn.expire(now, id);
                }
                // It overtook its Start (commands from different threads
                // may be applied out of order, the Start's with an older
                // clock): move the clock past the deadline, so the Start
                // ends the call at once and sends nothing.
                None => self.conn.handle_timeout(now),
            },
            Command::ReportCongestion => self.reported = None,
        }
    }

    /// Closes the connection: every call on it ends. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.conn.close(now);
    }

    // ---- outputs ----

    /// Bytes waiting to be written.
    pub fn transmit(&self) -> &Transmit {
        self.conn.transmit()
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit)
    /// were written, at `now` (see [`ClientConn::advance_transmit`]).
    pub fn advance_transmit(&mut self, now: Instant, n: usize) {
        self.conn.advance_transmit(now, n);
    }

    /// Moves all pending bytes into `out` (in-memory transports, tests).
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        self.conn.drain_transmit(out);
    }

    /// The next event for the router.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<ConnEvent> {
        loop {
            let Some(event) = self.conn.poll_event() else {
                // Compared when asked rather than tracked, so whatever moved
                // the queue (a start, a write) is covered.
                let congested = self.conn.is_congested();
                if self.reported == Some(congested) || self.is_failed() {
                    return None;
                }
                self.reported = Some(congested);
                return Some(ConnEvent::Congested { congested });
            };
            return Some(match event {
                ClientEvent::Connected { version } => ConnEvent::Connected { version },
                ClientEvent::Done { id, result } => {
                    let Some(call) = self.by_conn.remove(&id.0) else {
                        continue;
                    };
                    self.by_router.remove(&call.0);
                    ConnEvent::Done { call, result }
                }
                ClientEvent::GoAway { reason, .. } => ConnEvent::GoAway { reason },
                ClientEvent::Failed(err) => ConnEvent::Failed(err),
            });
        }
    }

    /// Why the connection ended, if it has.
    pub fn failure(&self) -> Option<&ConnError> {
        self.conn.failure()
    }
}
