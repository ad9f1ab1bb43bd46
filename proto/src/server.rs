//! One server-side connection as a sans-IO state machine.

use crate::client::ConnConfig;
use crate::error::{ConnError, PeerError};
use crate::frame::FrameDecoder;
use crate::idmap::IdMap;
use crate::timer::TimerQueue;
use crate::transmit::Transmit;
use crate::{Message, Metadata, MethodKey, RemoteError, TraceContext, Version};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A request for a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Request id; pass it back to [`ServerConn::respond`].
    pub id: u64,
    /// The method called.
    pub method: MethodKey,
    /// When the caller gives up: arrival time plus the time left the client
    /// sent. `None` if the call has no deadline.
    pub deadline: Option<Instant>,
    /// The caller's span.
    pub trace: Option<TraceContext>,
    /// Metadata from the caller.
    pub metadata: Option<Metadata>,
    /// Call arguments: a view of the read buffer.
    pub args: Bytes,
}

/// Why a handler should stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// The client sent a cancel frame.
    Cancelled,
    /// The request's deadline passed.
    DeadlineExceeded,
    /// The connection failed; no response can be delivered.
    ConnectionLost,
}

/// What a [`ServerConn`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Run a handler.
    Request(Request),
    /// Signal a running handler to stop. Sent at most once per request, and
    /// only while it is in flight.
    Cancel {
        /// Request id.
        id: u64,
        /// Why.
        reason: CancelReason,
    },
    /// The connection is finished; every in-flight request got a
    /// [`ServerEvent::Cancel`] first. The driver closes the transport.
    Failed(ConnError),
}

#[derive(Debug)]
struct InFlight {
    deadline: Option<Instant>,
    cancelled: Option<CancelReason>,
}

/// The server side of one connection.
///
/// Same shape as [`ClientConn`](crate::client::ClientConn): getters,
/// `handle_*` inputs, commands ([`respond`](Self::respond) and friends,
/// [`close`](Self::close)), and `poll_*` outputs, drained after every input
/// until only the timeout is left.
///
/// ```
/// use bytes::Bytes;
/// use std::time::Instant;
/// use weft_proto::client::ConnConfig;
/// use weft_proto::server::{ServerConn, ServerEvent};
///
/// let now = Instant::now();
/// let mut conn = ServerConn::new(now, ConnConfig::default());
/// conn.handle_input(now, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// assert_eq!(conn.transmit().len(), 20); // our version in reply
/// assert_eq!(conn.poll_event(), None);
/// ```
#[derive(Debug)]
pub struct ServerConn {
    now: Instant,
    version: Option<Version>,
    failure: Option<ConnError>,
    decoder: FrameDecoder,
    tx: Transmit,
    in_flight: IdMap<InFlight>,
    deadlines: TimerQueue<u64>,
    events: VecDeque<ServerEvent>,
}

impl ServerConn {
    /// A connection whose transport was just accepted.
    pub fn new(now: Instant, config: ConnConfig) -> Self {
        ServerConn {
            now,
            version: None,
            failure: None,
            decoder: FrameDecoder::new(config.max_payload),
            tx: Transmit::new(config.flatten_limit),
            in_flight: IdMap::default(),
            deadlines: TimerQueue::default(),
            events: VecDeque::new(),
        }
    }

    // ---- getters ----

    /// The version negotiated with the client, once it sent one.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Why the connection ended, if it has.
    pub fn failure(&self) -> Option<&ConnError> {
        self.failure.as_ref()
    }

    /// Requests delivered and not yet responded to.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    // ---- inputs ----

    /// The buffer to read transport bytes into.
    pub fn read_buf(&mut self, min_spare: usize) -> &mut BytesMut {
        self.decoder.read_buf(min_spare)
    }

    /// Processes the bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant) {
        self.advance_time(now);
        while self.failure.is_none() {
            match self.decoder.next_message() {
                Some(Ok(msg)) => self.on_message(msg),
                Some(Err(e)) => self.fail(PeerError::Decode(e).into()),
                None => break,
            }
        }
    }

    /// Processes bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.failure.is_none() {
            self.decoder.extend_from_slice(data);
        }
        self.handle_read(now);
    }

    /// Signals handlers whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_time(now);
    }

    /// The transport failed or reached end of stream.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: impl Into<String>) {
        self.advance_time(now);
        self.fail(ConnError::Transport(reason.into()));
    }

    // ---- commands ----

    /// Sends a handler's result. Responding to an id that is not in flight
    /// (never seen, or answered already) does nothing; a cancelled request
    /// is still answered, as Go's server does, and the client discards it.
    pub fn respond(&mut self, now: Instant, id: u64, result: Result<Bytes, RemoteError>) {
        // Out of flight first: a deadline that falls due now must not
        // signal a handler that has already answered.
        let was_in_flight = self.in_flight.remove(&id).is_some();
        self.advance_time(now);
        if self.failure.is_some() || !was_in_flight {
            return;
        }
        match result {
            Ok(payload) => self.tx.push_response(id, &payload),
            Err(err) => self.tx.push_error(id, &err),
        }
    }

    /// Sends a handler's result, whatever it was: the response, its error,
    /// or - for [`HandlerError::cancelled`](crate::HandlerError::cancelled) -
    /// the Go context error matching why the request was cancelled.
    pub fn finish(&mut self, now: Instant, id: u64, result: crate::HandlerResult) {
        use crate::handler::{Failure, HandlerError};
        match result {
            Ok(bytes) => self.respond(now, id, Ok(bytes)),
            Err(HandlerError(Failure::Remote(e))) => self.respond(now, id, Err(e)),
            Err(HandlerError(Failure::Cancelled)) => self.respond_cancelled(now, id),
        }
    }

    /// Answers a request whose handler stopped because it was cancelled,
    /// with the error Go's context would give: `context canceled` or
    /// `context deadline exceeded`, which a Go client's `errors.Is` knows.
    pub fn respond_cancelled(&mut self, now: Instant, id: u64) {
        let err = match self.in_flight.get(&id).and_then(|r| r.cancelled) {
            Some(CancelReason::DeadlineExceeded) => RemoteError::deadline_exceeded(),
            _ => RemoteError::canceled(),
        };
        self.respond(now, id, Err(err));
    }

    /// Answers a request for a method this server does not have, with the
    /// error Service Weaver's server sends.
    pub fn respond_unknown_method(&mut self, now: Instant, id: u64) {
        self.respond(
            now,
            id,
            Err(RemoteError::new("internal error: unknown function")),
        );
    }

    /// Closes the connection, cancelling every handler. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.advance_time(now);
        self.fail(ConnError::Closed);
    }

    // ---- outputs ----

    /// Bytes waiting to be written.
    pub fn transmit(&self) -> &Transmit {
        &self.tx
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit) were
    /// written.
    pub fn advance_transmit(&mut self, n: usize) {
        self.tx.advance(n);
    }

    /// Moves all pending bytes into `out` (in-memory transports, tests).
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        self.tx.drain_into(out);
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the last
    /// `now` while output is waiting, otherwise the earliest deadline of a
    /// request in flight.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.events.is_empty() || !self.tx.is_empty() {
            return Some(self.now);
        }
        self.deadlines.next()
    }

    /// The earliest request deadline, ignoring queued output: what a driver
    /// sleeps until while the transport cannot take more bytes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    // ---- internals ----

    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some((at, id)) = self.deadlines.pop_due(self.now) {
            // A client may reuse the id of a request already answered; the
            // old entry must not cancel the new request.
            if self
                .in_flight
                .get(&id)
                .is_some_and(|r| r.deadline == Some(at))
            {
                self.cancel(id, CancelReason::DeadlineExceeded);
            }
        }
    }

    fn cancel(&mut self, id: u64, reason: CancelReason) {
        if let Some(req) = self.in_flight.get_mut(&id)
            && req.cancelled.is_none()
        {
            req.cancelled = Some(reason);
            self.events.push_back(ServerEvent::Cancel { id, reason });
        }
    }

    fn on_message(&mut self, msg: Message) {
        match msg {
            Message::Version(peer) => {
                // Go's server answers every version frame, not just the first.
                self.version = Some(Version::CURRENT.negotiate(peer));
                self.tx.push_version(Version::CURRENT);
            }
            Message::Request { id, header, args } => {
                if self.in_flight.contains_key(&id) {
                    return self.fail(PeerError::DuplicateRequestId(id).into());
                }
                let deadline = match header.deadline_micros {
                    0 => None,
                    // Already past when sent: due at once.
                    m if m < 0 => Some(self.now),
                    // Too far to represent: as good as none.
                    m => self.now.checked_add(Duration::from_micros(m as u64)),
                };
                self.in_flight.insert(
                    id,
                    InFlight {
                        deadline,
                        cancelled: None,
                    },
                );
                if let Some(d) = deadline {
                    let live = &self.in_flight;
                    self.deadlines
                        .push(d, id, live.len(), |k| live.contains_key(k));
                }
                self.events.push_back(ServerEvent::Request(Request {
                    id,
                    method: header.method,
                    deadline,
                    trace: header.trace,
                    metadata: header.metadata,
                    args,
                }));
            }
            Message::Cancel { id } => self.cancel(id, CancelReason::Cancelled),
            other @ (Message::Response { .. } | Message::ErrorResponse { .. }) => {
                self.fail(PeerError::UnexpectedMessage(other.message_type()).into())
            }
        }
    }

    fn fail(&mut self, err: ConnError) {
        if self.failure.is_some() {
            return;
        }
        tracing::debug!(error = %err, in_flight = self.in_flight.len(), "server connection failed");
        let mut ids: Vec<u64> = self.in_flight.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.cancel(id, CancelReason::ConnectionLost);
        }
        self.in_flight.clear();
        self.deadlines.clear();
        self.tx.advance(self.tx.len());
        self.events.push_back(ServerEvent::Failed(err.clone()));
        self.failure = Some(err);
    }
}
