//! One server-side connection as a sans-IO state machine.

use crate::client::ConnConfig;
use crate::error::{ConnError, DecodeError, PeerError};
use crate::frame::FrameDecoder;
use crate::idmap::{SeededIdMap, SeededIds};
use crate::timer::{TimerQueue, later};
use crate::transmit::Transmit;
use crate::{Message, Metadata, MethodKey, RemoteError, TraceContext, Version};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

mod drain;

use drain::{Drain, HalfClose};

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
    /// The server is shutting down and its grace period ran out; the
    /// caller was answered with a cancellation error.
    Shutdown,
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
    /// [`ServerEvent::Cancel`] first. The driver closes the transport once
    /// [`ServerConn::is_finished`]. After a graceful shutdown the error is
    /// [`ConnError::Closed`].
    Failed(ConnError),
}

/// Limits and timeouts of one server connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerConfig {
    /// Payload limit and write flattening, as on the client.
    pub conn: ConnConfig,
    /// How long a connection may go without completing the version
    /// handshake before it is closed (default 10 s).
    pub handshake_timeout: Duration,
    /// How long a frame may take to arrive once it has begun (default
    /// 30 s): a request trickled in slower than that closes the connection
    /// instead of pinning its buffer forever.
    pub body_timeout: Duration,
    /// Bytes of responses queued for a client above which the connection
    /// is not read ([`ServerConn::wants_read`]), so a client that does not
    /// read its answers gets TCP backpressure instead of growing the server
    /// (default 4 MiB).
    pub max_queued_output: usize,
    /// How long a connection may stay open with nothing in flight before
    /// the server ends it: a goaway for a version-1 client (which closes
    /// it and dials again when it needs to), a close for a version-0 one.
    /// `None` (the default) keeps idle connections.
    pub idle_timeout: Option<Duration>,
    /// Keys the hash of the request table, whose keys the peer chooses.
    /// A driver draws one per connection from OS randomness; a fixed seed
    /// is for deterministic tests only.
    pub hash_seed: u64,
}

/// Default [`ServerConfig::handshake_timeout`].
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ServerConfig::body_timeout`].
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Default [`ServerConfig::max_queued_output`].
pub const DEFAULT_MAX_QUEUED_OUTPUT: usize = 4 << 20;
/// How long a connection the peer broke keeps trying to deliver what was
/// already queued for it (the version reply, an error) before it is closed.
/// Also how long a drained version-1 connection waits for its client to
/// close it (which the client does once its calls have ended) before the
/// server closes it.
pub const LINGER: Duration = Duration::from_secs(1);

/// The reason a shutdown's goaway carries.
pub const SHUTDOWN_REASON: &str = "server shutting down";

/// The reason an idle connection's goaway carries
/// ([`ServerConfig::idle_timeout`]).
pub const IDLE_REASON: &str = "idle";

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            conn: ConnConfig::default(),
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            max_queued_output: DEFAULT_MAX_QUEUED_OUTPUT,
            idle_timeout: None,
            hash_seed: 0,
        }
    }
}

impl From<ConnConfig> for ServerConfig {
    fn from(conn: ConnConfig) -> Self {
        ServerConfig {
            conn,
            ..ServerConfig::default()
        }
    }
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
/// use weft_proto::ConnConfig;
/// use weft_proto::{ServerConn, ServerEvent};
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
    config: ServerConfig,
    version: Option<Version>,
    failure: Option<ConnError>,
    decoder: FrameDecoder,
    tx: Transmit,
    in_flight: SeededIdMap<InFlight>,
    deadlines: TimerQueue<u64>,
    events: VecDeque<ServerEvent>,
    /// When the connection must have completed the handshake.
    handshake_due: Option<Instant>,
    /// When the frame in progress must have arrived whole. It counts only
    /// while the server reads: a pause of the server's making (see
    /// [`handle_read_paused`](Self::handle_read_paused)) restarts it.
    frame_due: Option<Instant>,
    /// The driver does not read (its handlers' waiting requests hold all
    /// they may): the body timeout does not run.
    read_paused: bool,
    /// Queued output fell back under its limit since the last input: the
    /// frame in progress gets its whole time from the next `now`.
    frame_restart: bool,
    /// After a failure, when queued output is dropped if still unwritten.
    linger_until: Option<Instant>,
    /// The transport took every queued byte but still holds some (TLS
    /// records the socket had no room for); see
    /// [`handle_output_held`](Self::handle_output_held).
    output_held: bool,
    /// The highest request id received: what a goaway promises to answer.
    last_request: u64,
    drain: Option<Drain>,
    /// When the connection counts as idle ([`ServerConfig::idle_timeout`]).
    idle_due: Option<Instant>,
    /// A graceful close in progress (see [`wants_close_write`](Self::wants_close_write)).
    half_close: Option<HalfClose>,
}

impl ServerConn {
    /// A connection whose transport was just accepted.
    pub fn new(now: Instant, config: impl Into<ServerConfig>) -> Self {
        let config = config.into();
        ServerConn {
            now,
            config,
            version: None,
            failure: None,
            decoder: FrameDecoder::skipping_oversize_requests(config.conn.max_payload),
            tx: Transmit::new(config.conn.flatten_limit),
            in_flight: SeededIdMap::with_hasher(SeededIds::new(config.hash_seed)),
            deadlines: TimerQueue::default(),
            events: VecDeque::new(),
            handshake_due: Some(later(now, config.handshake_timeout)),
            frame_due: None,
            read_paused: false,
            frame_restart: false,
            linger_until: None,
            output_held: false,
            last_request: 0,
            drain: None,
            idle_due: None,
            half_close: None,
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

    /// Whether the driver should read the transport now: not after a
    /// failure, not while more than [`ServerConfig::max_queued_output`]
    /// bytes wait to be written, and not while a version-0 connection
    /// drains (it has no goaway, so new requests are simply left unread; a
    /// version-1 connection is read on, for cancels and the client's
    /// close).
    pub fn wants_read(&self) -> bool {
        let v0_draining = self.drain.is_some() && !self.version.is_some_and(Version::has_goaway);
        let serving = self.failure.is_none()
            && self.tx.len() <= self.config.max_queued_output
            && !v0_draining;
        serving || self.reads_to_discard()
    }

    /// Whether a graceful shutdown has begun ([`shutdown`](Self::shutdown)).
    pub fn is_draining(&self) -> bool {
        self.drain.is_some()
    }

    /// Whether the driver is done with the connection: it failed or was
    /// closed, and nothing queued is left to write, in the core or held by
    /// the transport. Close the transport.
    pub fn is_finished(&self) -> bool {
        self.failure.is_some()
            && self.tx.is_empty()
            && !self.output_held
            && self.half_close.is_none()
    }

    // ---- inputs ----

    /// The buffer to read transport bytes into.
    pub fn read_buf(&mut self, min_spare: usize) -> &mut BytesMut {
        self.decoder.read_buf(min_spare)
    }

    /// Processes the bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant) {
        self.advance_time(now);
        if self.half_close.is_some() {
            // Closing: read only so that the close is not a reset.
            return self.decoder.discard_buffered();
        }
        let mut completed = false;
        // A TLS hello would otherwise be read as a frame header and fail
        // with a puzzling decode error, or wait out the body timeout.
        if self.version.is_none() && self.failure.is_none() && self.decoder.starts_like_tls() {
            self.fail(PeerError::SpokeTls.into());
        }
        while self.failure.is_none() {
            match self.decoder.next_message() {
                Some(Ok(msg)) => {
                    completed = true;
                    self.on_message(msg);
                }
                Some(Err(DecodeError::RequestTooLarge { id, len, max })) => {
                    completed = true;
                    self.refuse_oversize(id, len, max);
                }
                // Past the handshake, one request's header is that
                // request's problem; before it, garbage like any other.
                Some(Err(e @ DecodeError::BadRequest { id, .. })) if self.version.is_some() => {
                    completed = true;
                    self.refuse(id, &e);
                }
                Some(Err(e)) => self.fail(PeerError::Decode(e).into()),
                None => break,
            }
        }
        // Each frame gets the body timeout from when it began to arrive.
        if self.failure.is_some() || !self.decoder.is_mid_frame() {
            self.frame_due = None;
        } else if completed || self.frame_due.is_none() {
            self.frame_due = Some(later(self.now, self.config.body_timeout));
        }
    }

    /// Processes bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if self.failure.is_none() {
            self.decoder.extend_from_slice(data);
        }
        self.handle_read(now);
    }

    /// Signals handlers whose deadline has passed; closes a connection
    /// whose handshake or frame is overdue, and gives up on output a broken
    /// connection could not deliver in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_time(now);
    }

    /// The transport failed or reached end of stream.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: impl Into<String>) {
        self.advance_time(now);
        self.half_close = None;
        self.fail(ConnError::Transport(reason.into()));
    }

    /// Reports whether the transport, having taken every byte queued so
    /// far, still holds some it could not send yet: TLS records encrypted
    /// while the socket was full. Bytes held are output like the queue's: a
    /// failed connection is not finished until they are out, or until its
    /// [`LINGER`] runs out (then they are dropped with the connection: a
    /// failure while bytes are held starts the linger as queued bytes do).
    /// A plain socket never holds any, and a driver for one need not call.
    pub fn handle_output_held(&mut self, now: Instant, held: bool) {
        if self.output_held != held {
            self.advance_time(now);
            // After a failure that dropped the output (or whose linger ran
            // out), what the transport holds is dropped with it.
            let kept = self.failure.is_none() || self.linger_until.is_some();
            self.output_held = held && kept;
        }
    }

    /// Reports that the driver stopped reading (`true`: at its handler
    /// limit the requests waiting hold all they may) or reads again
    /// (`false`). A frame does not arrive meanwhile because of the server,
    /// not the client, so the body timeout does not blame the client for
    /// it: as
    /// while the queued output is over its limit, the timeout is restarted
    /// whole once the server reads again. A no-op when unchanged.
    pub fn handle_read_paused(&mut self, now: Instant, paused: bool) {
        if self.read_paused != paused {
            self.advance_time(now);
            self.read_paused = paused;
            if !paused {
                self.restart_frame_timer();
            }
        }
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
        self.touch();
        self.check_drained();
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
        // Also a connection that was closing gracefully.
        self.abandon_close();
    }

    // ---- outputs ----

    /// Bytes waiting to be written.
    pub fn transmit(&self) -> &Transmit {
        &self.tx
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit) were
    /// written.
    pub fn advance_transmit(&mut self, n: usize) {
        let over = self.tx.len() > self.config.max_queued_output;
        self.tx.advance(n);
        // Reading again: the frame in progress gets its whole time.
        self.frame_restart |= over && self.tx.len() <= self.config.max_queued_output;
    }

    /// Moves all pending bytes into `out` (in-memory transports, tests).
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        let over = self.tx.len() > self.config.max_queued_output;
        self.tx.drain_into(out);
        self.frame_restart |= over;
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the last
    /// `now` while output is waiting, otherwise the earliest timer (a
    /// request's deadline, the handshake, a frame in progress).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.events.is_empty() || !self.tx.is_empty() {
            return Some(self.now);
        }
        self.next_deadline()
    }

    /// The earliest timer, ignoring queued output: what a driver sleeps
    /// until while the transport cannot take more bytes.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.deadlines.next(),
            self.handshake_due,
            self.frame_due,
            // Only while there is output left for it to drop.
            self.linger_until
                .filter(|_| !self.tx.is_empty() || self.output_held),
            self.half_close.map(HalfClose::until),
            self.drain.and_then(|d| d.grace_due),
            self.drain.and_then(|d| d.close_due),
            self.idle_due,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    // ---- internals ----

    /// The frame in progress, if any, gets the whole body timeout from now.
    fn restart_frame_timer(&mut self) {
        if self.frame_due.is_some() {
            self.frame_due = Some(later(self.now, self.config.body_timeout));
        }
    }

    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Each fires once: `take` so that a timer never stays due.
        if self.handshake_due.take_if(|t| *t <= self.now).is_some() {
            let timeout = self.config.handshake_timeout;
            self.fail(PeerError::NoHandshake(timeout).into());
        }
        if std::mem::take(&mut self.frame_restart) {
            self.restart_frame_timer();
        }
        if self.frame_due.take_if(|t| *t <= self.now).is_some() {
            let timeout = self.config.body_timeout;
            if !self.read_paused && self.wants_read() {
                self.fail(PeerError::FrameTimeout(timeout).into());
            } else {
                // The server was not reading: nothing to blame the client
                // for. The frame's time runs again from when it does.
                self.frame_due = Some(later(self.now, timeout));
            }
        }
        if self.linger_until.is_some_and(|t| t <= self.now) {
            self.linger_until = None;
            if !self.tx.is_empty() || self.output_held {
                // A client that did not take it will not read a close
                // either.
                self.half_close = None;
            }
            self.tx.advance(self.tx.len());
            self.output_held = false;
        }
        if self.half_close.is_some_and(|h| h.until() <= self.now) {
            tracing::debug!("closing: the half-close did not finish within the linger");
            self.half_close = None;
        }
        if let Some(d) = &mut self.drain {
            if d.grace_due.take_if(|t| *t <= self.now).is_some() {
                self.grace_expired();
            } else if d.close_due.take_if(|t| *t <= self.now).is_some() {
                tracing::debug!("drained connection not closed by the client; closing");
                self.close_gracefully();
            }
        }
        if self.idle_due.take_if(|t| *t <= self.now).is_some() {
            self.idle_expired();
        }
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
        self.on_message_inner(msg);
        self.touch();
    }

    fn on_message_inner(&mut self, msg: Message) {
        match msg {
            Message::Version(peer) => {
                // Go's server answers every version frame, not just the
                // first. It answers with the version in use, which is what
                // a Go server sends a Go client (0), so a Go client sees
                // Service Weaver's bytes exactly.
                let version = *self.version.get_or_insert(Version::LATEST.negotiate(peer));
                self.handshake_due = None;
                self.tx.push_version(version);
            }
            // Sent after our goaway: the client learns from it that the
            // request was not run and sends it elsewhere.
            Message::Request { id, .. } if self.drain.is_some() => {
                tracing::trace!(id, "discarded a request that crossed the goaway");
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
                self.last_request = self.last_request.max(id);
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
            other @ (Message::Response { .. }
            | Message::ErrorResponse { .. }
            | Message::GoAway(_)) => {
                self.fail(PeerError::UnexpectedMessage(other.message_type()).into())
            }
        }
    }

    /// A request over the payload limit: its body is being discarded as it
    /// arrives; the caller gets an error naming the limit, and the
    /// connection carries on (Go's server closes it instead).
    fn refuse_oversize(&mut self, id: u64, len: u64, max: u64) {
        self.refuse(id, &DecodeError::RequestTooLarge { id, len, max });
    }

    /// Answers a request the server cannot take (too large, a header that
    /// does not decode) with an error naming why; the connection goes on.
    fn refuse(&mut self, id: u64, err: &DecodeError) {
        if self.drain.is_some() {
            return; // crossed the goaway, like any request
        }
        if self.in_flight.contains_key(&id) {
            return self.fail(PeerError::DuplicateRequestId(id).into());
        }
        tracing::debug!(error = %err, "refused a request");
        self.tx.push_error(id, &RemoteError::new(err.to_string()));
    }

    fn fail(&mut self, err: ConnError) {
        // What was queued before the peer broke the protocol still goes
        // out (the version reply, as Go sends it before it reads on), for a
        // short while.
        let keep = matches!(err, ConnError::Peer(_)) && (!self.tx.is_empty() || self.output_held);
        if keep && self.failure.is_none() {
            self.linger_until = Some(self.now + LINGER);
        }
        self.fail_keeping_output(err, keep);
    }

    pub(super) fn fail_keeping_output(&mut self, err: ConnError, keep_output: bool) {
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
        self.handshake_due = None;
        self.frame_due = None;
        self.drain = None;
        if !keep_output {
            self.tx.advance(self.tx.len());
            self.output_held = false;
        }
        self.events.push_back(ServerEvent::Failed(err.clone()));
        self.failure = Some(err);
    }
}
