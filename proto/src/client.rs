//! One client-side connection as a sans-IO state machine.

use crate::call::{CallError, CallOptions};
use crate::error::{ConnError, DecodeError, PeerError};
use crate::frame::{DEFAULT_MAX_PAYLOAD, FrameDecoder};
use crate::header::HeaderFields;
use crate::idmap::IdMap;
use crate::timer::TimerQueue;
use crate::transmit::{DEFAULT_FLATTEN_LIMIT, Transmit};
use crate::{Message, Metadata, MethodKey, RemoteError, TraceContext, Version};
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;

/// Limits of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnConfig {
    /// Largest payload accepted from the peer.
    pub max_payload: u64,
    /// Frames up to this size are copied into one buffer; larger payloads
    /// are written vectored, without copying.
    pub flatten_limit: usize,
    /// Client connections: bytes of requests queued for the transport above
    /// which later requests wait, unencoded, for it to take some (default
    /// [`DEFAULT_MAX_REQUEST_BACKLOG`]). One request is always let in, so
    /// the queue holds at most this plus one request; a server that stops
    /// reading then costs the client this much, not every request placed
    /// on the connection until their deadlines (and, unencoded, a waiting
    /// request holds only a reference to its caller's arguments). While
    /// the queue is over the bound the connection is congested
    /// ([`ClientConn::is_congested`]) and a pool places calls elsewhere.
    /// Servers bound their output with `ServerConfig::max_queued_output`.
    pub max_request_backlog: usize,
}

/// Default [`ConnConfig::max_request_backlog`]: the server's default bound
/// on queued output, so both sides buffer alike.
pub const DEFAULT_MAX_REQUEST_BACKLOG: usize = 4 << 20;

impl Default for ConnConfig {
    fn default() -> Self {
        ConnConfig {
            max_payload: DEFAULT_MAX_PAYLOAD,
            flatten_limit: DEFAULT_FLATTEN_LIMIT,
            max_request_backlog: DEFAULT_MAX_REQUEST_BACKLOG,
        }
    }
}

/// A call on one connection, named by its request id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub u64);

/// What a [`ClientConn`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// The server's version arrived; calls now go out.
    Connected {
        /// The negotiated version.
        version: Version,
    },
    /// A call ended. Every call started ends exactly once.
    Done {
        /// Which call.
        id: CallId,
        /// The response bytes or why there are none.
        result: Result<Bytes, CallError>,
    },
    /// The server is going away (protocol version 1): no call starts on
    /// this connection any more. Calls above `last_id` were not run and end
    /// next with [`CallError::Unprocessed`]; those at or below it are
    /// still answered. Reported once.
    GoAway {
        /// The highest request id the server will answer.
        last_id: u64,
        /// The server's reason.
        reason: String,
    },
    /// The connection is finished; every call on it has already ended.
    /// Nothing more will be written; the driver closes the transport.
    Failed(ConnError),
}

#[derive(Debug)]
enum State {
    Handshaking,
    Ready(Version),
    Failed(ConnError),
}

#[derive(Debug)]
struct Call {
    /// Set while the call waits for the handshake or for room in the
    /// transmit queue ([`ConnConfig::max_request_backlog`]).
    unsent: Option<Box<Unsent>>,
}

#[derive(Debug)]
struct Unsent {
    method: MethodKey,
    args: Bytes,
    deadline: Option<Instant>,
    trace: Option<TraceContext>,
    metadata: Option<Metadata>,
}

/// The client side of one connection.
///
/// Methods fall into four groups, after quinn-proto:
///
/// - getters: [`version`](Self::version), [`in_flight`](Self::in_flight), ...
/// - inputs, each taking the current time: [`handle_input`](Self::handle_input)
///   (or [`read_buf`](Self::read_buf) + [`handle_read`](Self::handle_read)),
///   [`handle_timeout`](Self::handle_timeout),
///   [`handle_transport_closed`](Self::handle_transport_closed);
/// - commands: [`start_call`](Self::start_call), [`cancel`](Self::cancel),
///   [`close`](Self::close);
/// - outputs: [`transmit`](Self::transmit) / [`advance_transmit`](Self::advance_transmit),
///   [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout).
///
/// After any input or command the driver drains outputs - writes the
/// transmit queue, delivers every event - until only the timeout is left,
/// then calls [`handle_timeout`](Self::handle_timeout) when it comes.
/// `poll_timeout` returns the last `now` while output is queued, so a driver
/// that sleeps until it never strands anything; a driver whose transport is
/// backpressured sleeps until [`next_deadline`](Self::next_deadline) instead.
///
/// ```
/// use bytes::Bytes;
/// use std::time::Instant;
/// use weft_proto::{ClientConn, ClientEvent, ConnConfig};
/// use weft_proto::{CallOptions, MethodKey};
///
/// let now = Instant::now();
/// let mut conn = ClientConn::new(now, ConnConfig::default());
/// let id = conn.start_call(now, MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"), &CallOptions::default());
/// // The version frame is queued; the call waits for the server's version.
/// assert_eq!(conn.transmit().len(), 20);
/// // The server answers with its version, then the response for id 1.
/// conn.handle_input(now, &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
/// conn.handle_input(now, &[1, 0, 0, 0, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 0, 0, b'h', b'i']);
/// assert!(matches!(conn.poll_event(), Some(ClientEvent::Connected { .. })));
/// assert_eq!(
///     conn.poll_event(),
///     Some(ClientEvent::Done { id, result: Ok(Bytes::from_static(b"hi")) })
/// );
/// ```
#[derive(Debug)]
pub struct ClientConn {
    now: Instant,
    state: State,
    decoder: FrameDecoder,
    tx: Transmit,
    /// [`ConnConfig::max_request_backlog`].
    max_backlog: usize,
    last_id: u64,
    calls: IdMap<Call>,
    /// Calls started before the handshake or while the transmit queue was
    /// over its bound, in start order (ids of calls that ended since are
    /// skipped when their turn comes).
    waiting: VecDeque<u64>,
    deadlines: TimerQueue<u64>,
    events: VecDeque<ClientEvent>,
    /// Set by a goaway: the server's reason; no call starts any more.
    going_away: Option<String>,
}

impl ClientConn {
    /// A connection whose transport was just established. The version frame
    /// is queued at once: the client always speaks first.
    pub fn new(now: Instant, config: ConnConfig) -> Self {
        let mut tx = Transmit::new(config.flatten_limit);
        tx.push_version(Version::LATEST);
        ClientConn {
            now,
            state: State::Handshaking,
            decoder: FrameDecoder::skipping_oversize_responses(config.max_payload),
            tx,
            max_backlog: config.max_request_backlog,
            last_id: 0,
            calls: IdMap::default(),
            waiting: VecDeque::new(),
            deadlines: TimerQueue::default(),
            events: VecDeque::new(),
            going_away: None,
        }
    }

    // ---- getters ----

    /// The negotiated version, once the handshake is done.
    pub fn version(&self) -> Option<Version> {
        match self.state {
            State::Ready(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the handshake is done and the connection has not failed.
    pub fn is_ready(&self) -> bool {
        matches!(self.state, State::Ready(_))
    }

    /// Why the connection ended, if it has.
    pub fn failure(&self) -> Option<&ConnError> {
        match &self.state {
            State::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Whether the server said goaway: no call starts here any more.
    pub fn is_going_away(&self) -> bool {
        self.going_away.is_some()
    }

    /// Calls started and not yet ended.
    pub fn in_flight(&self) -> usize {
        self.calls.len()
    }

    /// Whether more than [`ConnConfig::max_request_backlog`] bytes are
    /// queued for the transport: the server is not reading as fast as calls
    /// are started, and a request started now waits for room.
    pub fn is_congested(&self) -> bool {
        // Requests wait only while the queue is over its bound, since room
        // made sends them at once.
        self.is_ready() && self.tx.len() > self.max_backlog
    }

    // ---- inputs ----

    /// The buffer to read transport bytes into (see
    /// [`FrameDecoder::read_buf`]); call [`handle_read`](Self::handle_read)
    /// after appending.
    pub fn read_buf(&mut self, min_spare: usize) -> &mut BytesMut {
        self.decoder.read_buf(min_spare)
    }

    /// Processes the bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant) {
        self.advance_time(now);
        // Fail at once rather than wait for a frame that never comes (or
        // report a puzzling decode error).
        if matches!(self.state, State::Handshaking) && self.decoder.starts_like_tls() {
            self.fail(PeerError::SpokeTls.into());
        }
        while !matches!(self.state, State::Failed(_)) {
            match self.decoder.next_message() {
                Some(Ok(msg)) => self.on_message(msg),
                // That call's problem only: the decoder skips the payload.
                Some(Err(DecodeError::ResponseTooLarge { id, len, max })) => {
                    self.oversize_response(id, len, max);
                }
                Some(Err(e)) => self.fail(PeerError::Decode(e).into()),
                None => break,
            }
        }
    }

    /// Processes bytes read from the transport.
    pub fn handle_input(&mut self, now: Instant, data: &[u8]) {
        if !matches!(self.state, State::Failed(_)) {
            self.decoder.extend_from_slice(data);
        }
        self.handle_read(now);
    }

    /// Ends calls whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_time(now);
    }

    /// The transport failed or reached end of stream.
    pub fn handle_transport_closed(&mut self, now: Instant, reason: impl Into<String>) {
        self.advance_time(now);
        self.fail(ConnError::Transport(reason.into()));
    }

    // ---- commands ----

    /// Starts a call. Its end is reported by a [`ClientEvent::Done`] with
    /// the returned id: at once if the deadline has already passed, the
    /// connection has failed, or the server said goaway
    /// ([`CallError::Unprocessed`]); nothing is sent then.
    pub fn start_call(
        &mut self,
        now: Instant,
        method: MethodKey,
        args: Bytes,
        opts: &CallOptions,
    ) -> CallId {
        self.advance_time(now);
        self.last_id += 1;
        let id = self.last_id;
        // The request's payload: header length, header, arguments.
        let size = 4
            + HeaderFields {
                method,
                deadline_micros: 0,
                trace: opts.trace.as_ref(),
                metadata: opts.metadata.as_ref(),
            }
            .encoded_len() as u64
            + args.len() as u64;
        let limit = self.decoder.max_payload();
        let early_end = match &self.state {
            State::Failed(e) => Some(CallError::Connection(e.clone())),
            _ if let Some(reason) = &self.going_away => {
                Some(CallError::Unprocessed(reason.clone()))
            }
            _ if opts.deadline.is_some_and(|d| d <= self.now) => Some(CallError::DeadlineExceeded),
            // Sent, it would break the connection for every call on it.
            _ if size > limit => Some(CallError::RequestTooLarge { size, limit }),
            _ => None,
        };
        if let Some(err) = early_end {
            self.done(id, Err(err));
            return CallId(id);
        }
        let unsent = match self.state {
            State::Ready(_) if self.waiting.is_empty() && self.tx.len() <= self.max_backlog => {
                let micros = micros_left(opts.deadline, self.now);
                self.tx.push_request(
                    id,
                    HeaderFields {
                        method,
                        deadline_micros: micros,
                        trace: opts.trace.as_ref(),
                        metadata: opts.metadata.as_ref(),
                    },
                    &args,
                );
                None
            }
            _ => {
                self.waiting.push_back(id);
                Some(Box::new(Unsent {
                    method,
                    args,
                    deadline: opts.deadline,
                    trace: opts.trace,
                    metadata: opts.metadata.clone(),
                }))
            }
        };
        self.calls.insert(id, Call { unsent });
        if let Some(d) = opts.deadline {
            let live = &self.calls;
            self.deadlines
                .push(d, id, live.len(), |k| live.contains_key(k));
        }
        CallId(id)
    }

    /// Abandons a call before its deadline: it ends at once with
    /// [`CallError::Cancelled`], and if its request went out a cancel frame
    /// tells the server. Returns false if the call had already ended.
    pub fn cancel(&mut self, now: Instant, id: CallId) -> bool {
        self.advance_time(now);
        let Some(call) = self.calls.remove(&id.0) else {
            return false;
        };
        if call.unsent.is_none() {
            self.tx.push_cancel(id.0);
        }
        self.done(id.0, Err(CallError::Cancelled));
        true
    }

    /// Ends a call whose deadline passed by someone else's clock (a pool
    /// that owns the deadlines): it ends with
    /// [`CallError::DeadlineExceeded`] and no cancel frame, since the
    /// server's own deadline stops the handler. Returns false if it had
    /// already ended.
    pub fn expire(&mut self, now: Instant, id: CallId) -> bool {
        self.advance_time(now);
        if self.calls.remove(&id.0).is_none() {
            return false;
        }
        self.done(id.0, Err(CallError::DeadlineExceeded));
        true
    }

    /// Closes the connection: every call ends with a communication error
    /// saying the connection is closed. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.advance_time(now);
        self.fail(ConnError::Closed);
    }

    // ---- outputs ----

    /// Bytes waiting to be written (see [`Transmit::io_slices`]).
    pub fn transmit(&self) -> &Transmit {
        &self.tx
    }

    /// Reports that the first `n` bytes of [`transmit`](Self::transmit) were
    /// written, at `now`. Requests waiting for room are queued as it frees,
    /// their deadline headers saying what is left of their time at `now`
    /// (one whose deadline has passed ends instead).
    pub fn advance_transmit(&mut self, now: Instant, n: usize) {
        self.tx.advance(n);
        if !self.waiting.is_empty() && self.is_ready() {
            self.advance_time(now);
            self.send_waiting();
        }
    }

    /// Moves all pending bytes into `out` (in-memory transports, tests).
    /// Such a transport takes everything, so requests waiting for room
    /// follow.
    pub fn drain_transmit(&mut self, out: &mut Vec<u8>) {
        self.tx.drain_into(out);
        while !self.waiting.is_empty() && self.is_ready() {
            self.send_waiting();
            self.tx.drain_into(out);
        }
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the last
    /// `now` if output is waiting, otherwise the earliest call deadline.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.events.is_empty() || !self.tx.is_empty() {
            return Some(self.now);
        }
        self.deadlines.next()
    }

    /// The earliest call deadline, ignoring queued output: what a driver
    /// sleeps until while the transport cannot take more bytes.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    // ---- internals ----

    /// Moves the clock forward (never back) and expires deadlines, so that a
    /// deadline wins over a response that arrives after it whatever order the
    /// driver reports them in.
    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
        // Client ids are never reused, so an entry for a live id is its own.
        while let Some((_, id)) = self.deadlines.pop_due(self.now) {
            if self.calls.remove(&id).is_some() {
                // No cancel frame: the server's own deadline ends the handler.
                self.done(id, Err(CallError::DeadlineExceeded));
            }
        }
    }

    fn on_message(&mut self, msg: Message) {
        match (&self.state, msg) {
            (State::Handshaking, Message::Version(peer)) => {
                let version = Version::LATEST.negotiate(peer);
                self.state = State::Ready(version);
                self.events.push_back(ClientEvent::Connected { version });
                self.send_waiting();
            }
            // Validated by parsing; later versions carry nothing for us.
            (_, Message::Version(_)) => {}
            (State::Handshaking, other) => {
                self.fail(PeerError::NotVersion(other.message_type()).into())
            }
            (_, Message::Response { id, payload }) => {
                if self.calls.remove(&id).is_some() {
                    self.done(id, Ok(payload));
                }
            }
            (_, Message::ErrorResponse { id, payload }) => {
                if self.calls.remove(&id).is_some() {
                    let err = match RemoteError::decode(&payload) {
                        Ok(e) => CallError::Remote(e),
                        Err(e) => CallError::BadErrorPayload(e),
                    };
                    self.done(id, Err(err));
                }
            }
            (State::Ready(v), Message::GoAway(goaway)) if v.has_goaway() => {
                self.go_away(goaway.last_id, goaway.reason)
            }
            (
                _,
                other @ (Message::Request { .. } | Message::Cancel { .. } | Message::GoAway(_)),
            ) => self.fail(PeerError::UnexpectedMessage(other.message_type()).into()),
        }
    }

    /// A response larger than this client accepts: that call fails, and
    /// the decoder discards the payload as it arrives. Before the
    /// handshake it is garbage like any other.
    fn oversize_response(&mut self, id: u64, len: u64, max: u64) {
        if matches!(self.state, State::Handshaking) {
            let e = DecodeError::PayloadTooLarge { len, max };
            return self.fail(PeerError::Decode(e).into());
        }
        if self.calls.remove(&id).is_some() {
            tracing::debug!(id, len, max, "response over the size limit");
            self.done(
                id,
                Err(CallError::ResponseTooLarge {
                    size: len,
                    limit: max,
                }),
            );
        }
    }

    /// The server starts nothing above `last_id`: calls above it end as
    /// unprocessed, in id order, and so does every later start. Only the
    /// first goaway counts: what it promised to answer stays promised.
    fn go_away(&mut self, last_id: u64, reason: String) {
        if self.going_away.is_some() {
            return;
        }
        tracing::debug!(
            last_id,
            reason,
            calls = self.calls.len(),
            "server going away"
        );
        self.events.push_back(ClientEvent::GoAway {
            last_id,
            reason: reason.clone(),
        });
        let mut unrun: Vec<u64> = self
            .calls
            .keys()
            .copied()
            .filter(|&id| id > last_id)
            .collect();
        unrun.sort_unstable();
        for id in unrun {
            self.calls.remove(&id);
            self.done(id, Err(CallError::Unprocessed(reason.clone())));
        }
        self.going_away = Some(reason);
    }

    /// Queues waiting requests, in start order, while the queue has room.
    fn send_waiting(&mut self) {
        while self.tx.len() <= self.max_backlog
            && let Some(id) = self.waiting.pop_front()
        {
            let Some(unsent) = self.calls.get_mut(&id).and_then(|c| c.unsent.take()) else {
                continue; // cancelled or expired while waiting
            };
            let micros = micros_left(unsent.deadline, self.now);
            self.tx.push_request(
                id,
                HeaderFields {
                    method: unsent.method,
                    deadline_micros: micros,
                    trace: unsent.trace.as_ref(),
                    metadata: unsent.metadata.as_ref(),
                },
                &unsent.args,
            );
        }
    }

    fn done(&mut self, id: u64, result: Result<Bytes, CallError>) {
        self.events.push_back(ClientEvent::Done {
            id: CallId(id),
            result,
        });
    }

    fn fail(&mut self, err: ConnError) {
        if matches!(self.state, State::Failed(_)) {
            return;
        }
        tracing::debug!(error = %err, calls = self.calls.len(), "client connection failed");
        let mut ids: Vec<u64> = self.calls.drain().map(|(id, _)| id).collect();
        ids.sort_unstable();
        // Requests still waiting were never encoded, let alone sent.
        let mut unsent: Vec<u64> = self.waiting.drain(..).collect();
        unsent.sort_unstable();
        for id in ids {
            let error = if unsent.binary_search(&id).is_ok() {
                CallError::NotSent(err.clone())
            } else {
                CallError::Connection(err.clone())
            };
            self.done(id, Err(error));
        }
        self.deadlines.clear();
        self.tx.advance(self.tx.len());
        self.events.push_back(ClientEvent::Failed(err.clone()));
        self.state = State::Failed(err);
    }
}

/// Microseconds left until `deadline`, as the request header carries them.
/// A deadline less than a microsecond away is sent as 1, because 0 would
/// mean "no deadline" to the server.
pub(crate) fn micros_left(deadline: Option<Instant>, now: Instant) -> i64 {
    deadline.map_or(0, |d| {
        let left = d.saturating_duration_since(now).as_micros();
        i64::try_from(left).unwrap_or(i64::MAX).max(1)
    })
}
