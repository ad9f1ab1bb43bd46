//! One connection's requests, from the core's events to handlers and back.

use super::cancel::CancelToken;
use super::{HandlerMap, PeerAddr, Request, ServerOptions};
use crate::observe::{KeyHex, MethodMetrics, ServerError, handle_ended, handle_span};
use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Instant;
use tracing::Span;
use weft_proto::{CancelReason, HandlerError, HandlerResult, SeededIds, ServerConn, ServerEvent};

/// The message of the error a request gets when the server has no thread
/// for it and its queue is full.
pub const OVERLOADED: &str = "overloaded";

/// What requests waiting for a handler may hold (their arguments, and
/// 256 bytes each) before a connection at its handler limit is
/// not read on: enough that a cancel or a hang-up sent behind a few
/// waiting requests is seen (a handler waiting for its own cancellation
/// must get it), not enough to hold much memory.
pub const READ_AHEAD: usize = 64 * 1024;

/// What a waiting request counts against [`READ_AHEAD`] besides its
/// arguments and metadata: about what it takes in memory here and in the
/// core.
const WAITING_OVERHEAD: usize = 256;

/// Bytes read while every handler slot of a connection is taken, past
/// which it is not read until one frees: the requests that wait keep
/// views into those reads' buffers, whatever else arrived with them.
const AT_LIMIT_READS: usize = 4 * READ_AHEAD;

/// A request to hand to its handler.
///
/// Run `handler` with `request`, wherever the driver runs handlers, and
/// pass the result to [`Dispatcher::finish`] with `id`, exactly once.
pub struct Dispatch<H: ?Sized> {
    /// The request id on the connection.
    pub id: u64,
    /// The handler `request.method` names.
    pub handler: Arc<H>,
    /// What the handler gets.
    pub request: Request,
    /// The request's `weft.handle` span: run the handler inside it.
    pub span: Span,
}

/// What the dispatcher keeps of a request until its handler finishes.
struct InFlight {
    cancel: Arc<CancelToken>,
    span: Span,
    started: Instant,
    /// Only when a recorder records them (no reference count to move
    /// otherwise).
    metrics: Option<Arc<MethodMetrics>>,
}

impl InFlight {
    fn end(&self, now: Instant, outcome: Result<usize, ServerError>) {
        // Nothing records them: skip even the clock arithmetic.
        if let Some(metrics) = &self.metrics {
            let elapsed = now.saturating_duration_since(self.started);
            metrics.ended(elapsed, outcome.map_err(ServerError::kind));
        }
        if !self.span.is_disabled() {
            handle_ended(&self.span, outcome.map(drop));
        }
    }
}

/// The requests of one connection that are with their handlers or waiting
/// for one: what a driver does with each [`ServerEvent`] and with each
/// read, written once.
///
/// It holds the cancel token of each request in flight, so a cancel from
/// the core reaches the right handler and a broken connection reaches all
/// of them. At most
/// [`max_concurrent_handlers_per_connection`](ServerOptions::max_concurrent_handlers_per_connection)
/// handlers run at once; requests past it wait here, decoded, so that
/// cancels (and a hang-up) behind them still reach the handlers, and the
/// connection is not read on once they hold [`READ_AHEAD`]. The driver
/// owns the [`ServerConn`] and lends it to each call.
pub struct Dispatcher<H: ?Sized> {
    /// Keyed by the client's request ids: a hash the client cannot aim at.
    cancels: HashMap<u64, InFlight, SeededIds>,
    /// Tokens of finished requests that nobody else holds, reset for the
    /// next ones: a token per request would otherwise be an allocation
    /// per call. At most twice the handler limit are kept (requests past
    /// the limit wait with tokens too).
    spare_tokens: Vec<Arc<CancelToken>>,
    /// Requests past the limit, in arrival order.
    waiting: VecDeque<Dispatch<H>>,
    /// Requests handed out by [`next_dispatch`](Self::next_dispatch) and
    /// not yet finished.
    running: usize,
    limit: usize,
    /// What the waiting requests count against [`READ_AHEAD`].
    waiting_bytes: usize,
    /// Bytes read while every handler slot was taken: what arrives then
    /// (frames that are not waiting requests too) may keep read buffers
    /// alive, so it has a bound of its own, [`AT_LIMIT_READS`].
    read_at_limit: usize,
    closed: bool,
    /// Who is on the other end: each request gets a reference.
    peer: Option<Arc<PeerAddr>>,
}

/// A connection dropped without its `Failed` event (its task aborted when
/// the server's future was dropped, or a panic): its requests end here as
/// that event would end them, so their handlers stop, their spans close
/// and the in-flight gauge comes back down.
impl<H: ?Sized> Drop for Dispatcher<H> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // Unwinding from a bug: the handlers are still told, but no
            // span or metric code runs, where a second panic would abort.
            for (_, r) in self.cancels.drain() {
                r.cancel.cancel(CancelReason::ConnectionLost);
            }
        } else if !self.cancels.is_empty() {
            self.end_all(Instant::now());
        }
    }
}

impl<H: ?Sized> fmt::Debug for Dispatcher<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("running", &self.running)
            .field("waiting", &self.waiting.len())
            .field("limit", &self.limit)
            .field("waiting_bytes", &self.waiting_bytes)
            .field("closed", &self.closed)
            .finish()
    }
}

impl<H: ?Sized> Dispatcher<H> {
    /// A connection with nothing in flight, under `opts`' handler limit.
    pub fn new(opts: &ServerOptions) -> Self {
        Dispatcher {
            cancels: HashMap::with_hasher(SeededIds::new(crate::random_seed())),
            spare_tokens: Vec::new(),
            waiting: VecDeque::new(),
            running: 0,
            limit: opts.handlers_per_connection(),
            waiting_bytes: 0,
            read_at_limit: 0,
            closed: false,
            peer: None,
        }
    }

    /// Tells handlers who the client is ([`Request::peer_addr`]).
    pub fn with_peer(mut self, peer: PeerAddr) -> Self {
        self.peer = Some(Arc::new(peer));
        self
    }

    /// Whether the driver should read `conn`'s transport now: as the core
    /// says (after a failure only while a graceful close reads to drop),
    /// and not while the requests waiting for a handler hold
    /// [`READ_AHEAD`]. Pass every read's outcome to
    /// [`on_read`](Self::on_read).
    pub fn wants_read(&self, conn: &ServerConn) -> bool {
        conn.wants_read() && !self.full()
    }

    /// The waiting requests hold all they may, or as much as they may was
    /// read while every slot was taken: the connection is not read.
    fn full(&self) -> bool {
        !self.closed && (self.waiting_bytes >= READ_AHEAD || self.read_at_limit >= AT_LIMIT_READS)
    }

    fn at_limit(&self) -> bool {
        self.running >= self.limit
    }

    /// Tells `conn` whether reading is paused (the waiting requests hold
    /// all they may), so its body timeout does not blame the client for
    /// the pause. Call after handing out requests, which makes room.
    pub fn sync_read_paused(&self, now: Instant, conn: &mut ServerConn) {
        conn.handle_read_paused(now, self.full());
    }

    /// Takes the outcome of one read into `conn.read_buf(..)` (not
    /// `WouldBlock`/`Pending`, which are no read): decodes what arrived;
    /// end of stream or an error closes the connection.
    pub fn on_read(&mut self, now: Instant, conn: &mut ServerConn, read: io::Result<usize>) {
        match read {
            Ok(0) => conn.handle_transport_closed(now, "client closed the connection"),
            Ok(n) => {
                if self.at_limit() {
                    self.read_at_limit = self.read_at_limit.saturating_add(n);
                }
                conn.handle_read(now);
            }
            Err(e) => conn.handle_transport_closed(now, format!("read: {e}")),
        }
    }

    /// What a waiting request counts against [`READ_AHEAD`]: its
    /// arguments, its metadata, and the overhead.
    fn cost(args: &bytes::Bytes, metadata: Option<&weft_proto::Metadata>) -> usize {
        let md = metadata.map_or(0, |m| m.iter().map(|(k, v)| 8 + k.len() + v.len()).sum());
        args.len() + md + WAITING_OVERHEAD
    }

    /// Takes every event `conn` has queued (see [`on_event`](Self::on_event));
    /// whether there were any.
    pub fn handle_events(
        &mut self,
        now: Instant,
        conn: &mut ServerConn,
        handlers: &HandlerMap<H>,
    ) -> bool {
        let mut any = false;
        while let Some(event) = conn.poll_event() {
            any = true;
            self.on_event(now, conn, handlers, event);
        }
        // Not reading for want of room: the core must not blame the
        // client for a frame that seems slow to arrive.
        conn.handle_read_paused(now, self.full());
        any
    }

    /// Takes one event from `conn`. A request for a method in `handlers`
    /// waits for [`next_dispatch`](Self::next_dispatch); everything else is
    /// done here: an unknown method is answered on `conn`, a cancel signals
    /// its request's handler (running or waiting), and a failed connection
    /// cancels every request with [`CancelReason::ConnectionLost`] and
    /// marks this [closed](Self::is_closed).
    pub fn on_event(
        &mut self,
        now: Instant,
        conn: &mut ServerConn,
        handlers: &HandlerMap<H>,
        event: ServerEvent,
    ) {
        match event {
            ServerEvent::Request(req) => {
                let Some(entry) = handlers.entry(&req.method) else {
                    tracing::debug!(method = %KeyHex(&req.method), peer = self.peer.as_deref().map(tracing::field::display), "unknown method");
                    conn.respond_unknown_method(now, req.id);
                    return;
                };
                let cancel = self.spare_tokens.pop().unwrap_or_default();
                let span = handle_span(&entry.name, self.peer.as_deref(), req.trace.as_ref());
                let metrics = entry.metrics().is_live().then(|| entry.metrics().clone());
                if let Some(m) = &metrics {
                    m.started(req.args.len());
                }
                let in_flight = InFlight {
                    cancel: cancel.clone(),
                    span: span.clone(),
                    started: now,
                    metrics,
                };
                self.cancels.insert(req.id, in_flight);
                self.waiting_bytes += Self::cost(&req.args, req.metadata.as_ref());
                self.waiting.push_back(Dispatch {
                    id: req.id,
                    handler: entry.handler.clone(),
                    span,
                    request: Request {
                        args: req.args,
                        method: entry.name.clone(),
                        deadline: req.deadline,
                        metadata: req.metadata,
                        trace: req.trace,
                        cancel,
                        peer: self.peer.clone(),
                    },
                });
            }
            ServerEvent::Cancel { id, reason } => {
                if let Some(r) = self.cancels.get(&id) {
                    r.cancel.cancel(reason);
                }
            }
            ServerEvent::Failed(err) => {
                if matches!(err, weft_proto::ConnError::Peer(_)) {
                    // The client broke the protocol: name it.
                    tracing::warn!(error = %err, peer = self.peer.as_deref().map(tracing::field::display), "server connection failed: protocol error from the client");
                } else {
                    tracing::debug!(error = %err, peer = self.peer.as_deref().map(tracing::field::display), "server connection closed");
                }
                self.closed = true;
                // No answer can be delivered: each request ends here, and
                // its handler's result later finds nothing to answer.
                self.end_all(now);
            }
        }
    }

    /// Ends every request in flight as cancelled by a lost connection:
    /// handlers are told, spans and metrics record it.
    fn end_all(&mut self, now: Instant) {
        for (_, r) in self.cancels.drain() {
            r.cancel.cancel(CancelReason::ConnectionLost);
            r.end(now, Err(ServerError::Cancelled));
        }
    }

    /// The next request to run, while fewer than the limit run. Once the
    /// connection is closed every waiting request comes out at once,
    /// already cancelled: its handler sees that and ends (as every Go
    /// handler sees its context cancelled).
    pub fn next_dispatch(&mut self) -> Option<Dispatch<H>> {
        if self.running >= self.limit && !self.closed {
            return None;
        }
        let d = self.waiting.pop_front()?;
        let cost = Self::cost(&d.request.args, d.request.metadata.as_ref());
        self.waiting_bytes = self.waiting_bytes.saturating_sub(cost);
        self.running += 1;
        Some(d)
    }

    /// Sends the result of request `id`'s handler (see
    /// [`ServerConn::finish`]) and forgets the request.
    pub fn finish(&mut self, now: Instant, conn: &mut ServerConn, id: u64, result: HandlerResult) {
        let outcome = match &result {
            Ok(b) => Ok(b.len()),
            Err(e) if e.is_cancelled() => Err(ServerError::Cancelled),
            Err(_) => Err(ServerError::Error),
        };
        self.finish_as(now, conn, id, result, outcome);
    }

    fn finish_as(
        &mut self,
        now: Instant,
        conn: &mut ServerConn,
        id: u64,
        result: HandlerResult,
        outcome: Result<usize, ServerError>,
    ) {
        if let Some(r) = self.cancels.remove(&id) {
            r.end(now, outcome);
            let mut token = r.cancel;
            if self.spare_tokens.len() < self.limit.saturating_mul(2)
                && let Some(t) = Arc::get_mut(&mut token)
            {
                // The handler let go of its request: the token is ours alone.
                t.reset();
                self.spare_tokens.push(token);
            }
        }
        self.running = self.running.saturating_sub(1);
        if !self.at_limit() {
            self.read_at_limit = 0;
        }
        conn.finish(now, id, result);
        conn.handle_read_paused(now, self.full());
    }

    /// Answers request `id`, handed out by
    /// [`next_dispatch`](Self::next_dispatch), with the [`OVERLOADED`]
    /// error instead of running its handler.
    pub fn refuse_overloaded(&mut self, now: Instant, conn: &mut ServerConn, id: u64) {
        let result = Err(HandlerError::new(OVERLOADED));
        self.finish_as(now, conn, id, result, Err(ServerError::Overloaded));
    }

    /// Whether the connection failed or was closed: the driver closes the
    /// transport once the last bytes are written (none are, after a
    /// failure, so at once).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Requests with their handlers or waiting for one, until the
    /// connection closes (then none: no answer can be delivered).
    pub fn in_flight(&self) -> usize {
        self.cancels.len()
    }

    /// Requests with their handlers.
    pub fn running(&self) -> usize {
        self.running
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;
    use weft_proto::RequestHeader;
    use weft_proto::Transmit;
    use weft_proto::{ConnConfig, Message, MethodKey, RemoteError, Version};

    type Handler = dyn Fn(&Request) -> &'static str;

    /// A server connection past its handshake, and the dispatcher for it.
    struct Fixture {
        now: Instant,
        conn: ServerConn,
        requests: Dispatcher<Handler>,
        handlers: HandlerMap<Handler>,
    }

    impl Fixture {
        fn new() -> Self {
            Self::with_limit(ServerOptions::default().max_concurrent_handlers_per_connection)
        }

        fn with_limit(limit: usize) -> Self {
            let now = Instant::now();
            let mut conn = ServerConn::new(now, ConnConfig::default());
            let mut tx = Transmit::new(0);
            tx.push_version(Version::CURRENT);
            feed(&mut conn, now, tx);
            drain_transmit(&mut conn);
            let mut handlers = HandlerMap::<Handler>::new();
            handlers.insert("weft.Test", "Echo", Arc::new(|_: &Request| "echo"));
            let opts = ServerOptions {
                max_concurrent_handlers_per_connection: limit,
                ..ServerOptions::default()
            };
            Fixture {
                now,
                conn,
                requests: Dispatcher::new(&opts),
                handlers,
            }
        }

        fn send(&mut self, push: impl FnOnce(&mut Transmit)) {
            let mut tx = Transmit::new(0);
            push(&mut tx);
            feed(&mut self.conn, self.now, tx);
        }

        /// Bytes arriving from the transport, as a driver reads them.
        fn arrive(&mut self, push: impl FnOnce(&mut Transmit)) {
            let mut tx = Transmit::new(0);
            push(&mut tx);
            let mut bytes = Vec::new();
            tx.drain_into(&mut bytes);
            self.conn.read_buf(0).extend_from_slice(&bytes);
            self.requests
                .on_read(self.now, &mut self.conn, Ok(bytes.len()));
        }

        fn request(&mut self, id: u64, method: &str, deadline_micros: i64) {
            self.send(|tx| push_request(tx, id, method, deadline_micros));
        }

        /// Two Echo requests, ids 1 and 2, with their handlers.
        fn two_running(&mut self) -> Vec<(u64, &'static str, Request)> {
            self.request(1, "Echo", 0);
            self.request(2, "Echo", 0);
            let runs = self.dispatch();
            assert_eq!(runs.len(), 2);
            runs
        }

        /// Every request in `runs` was cancelled for `reason`, and none is
        /// left in flight.
        fn assert_all_cancelled(&self, runs: &[(u64, &str, Request)], reason: CancelReason) {
            assert_eq!(self.requests.in_flight(), 0);
            for (_, _, req) in runs {
                assert_eq!(req.cancel_reason(), Some(reason));
            }
        }

        /// Runs every event through the dispatcher; the dispatches it made.
        fn dispatch(&mut self) -> Vec<(u64, &'static str, Request)> {
            self.requests
                .handle_events(self.now, &mut self.conn, &self.handlers);
            let mut out = Vec::new();
            while let Some(d) = self.requests.next_dispatch() {
                out.push((d.id, (d.handler)(&d.request), d.request));
            }
            out
        }

        fn finish(&mut self, id: u64) {
            self.requests
                .finish(self.now, &mut self.conn, id, Ok(Bytes::from_static(b"ok")));
        }
    }

    fn push_request(tx: &mut Transmit, id: u64, method: &str, deadline_micros: i64) {
        let mut header = RequestHeader::new(MethodKey::new("weft.Test", method));
        header.deadline_micros = deadline_micros;
        tx.push_request(id, header.fields(), &Bytes::from_static(b"hi"));
    }

    fn feed(conn: &mut ServerConn, now: Instant, tx: Transmit) {
        let mut bytes = Vec::new();
        let mut tx = tx;
        tx.drain_into(&mut bytes);
        conn.handle_input(now, &bytes);
    }

    /// The messages `conn` wrote.
    fn drain_transmit(conn: &mut ServerConn) -> Vec<Message> {
        let mut bytes = Vec::new();
        conn.drain_transmit(&mut bytes);
        let mut decoder = weft_proto::FrameDecoder::new(u64::MAX);
        decoder.extend_from_slice(&bytes);
        std::iter::from_fn(|| decoder.next_message().map(|m| m.expect("valid output")))
            .filter(|m| !matches!(m, Message::Version(_)))
            .collect()
    }

    fn error_response(msg: &Message) -> (u64, RemoteError) {
        match msg {
            Message::ErrorResponse { id, payload } => {
                (*id, RemoteError::decode(payload).expect("valid error"))
            }
            other => panic!("expected an error response, got {other:?}"),
        }
    }

    #[test]
    fn a_known_method_is_dispatched_with_its_request() {
        let mut f = Fixture::new();
        f.request(7, "Echo", 0);
        let runs = f.dispatch();
        assert_eq!(runs.len(), 1);
        let (id, ran, req) = &runs[0];
        assert_eq!((*id, *ran), (7, "echo"));
        assert_eq!(&*req.method, "weft.Test.Echo");
        assert_eq!(&req.args[..], b"hi");
        assert!(!req.is_cancelled());
        assert_eq!(f.requests.in_flight(), 1);

        f.requests
            .finish(f.now, &mut f.conn, 7, Ok(Bytes::from_static(b"out")));
        assert_eq!(f.requests.in_flight(), 0);
        let out = drain_transmit(&mut f.conn);
        assert!(
            matches!(&out[..], [Message::Response { id: 7, payload }] if payload == "out"),
            "{out:?}"
        );
    }

    #[test]
    fn an_unknown_method_is_answered_without_a_handler() {
        let mut f = Fixture::new();
        f.request(3, "Nope", 0);
        assert!(f.dispatch().is_empty());
        assert_eq!(f.requests.in_flight(), 0);
        assert_eq!(f.conn.in_flight(), 0, "answered, so no longer in flight");
        let out = drain_transmit(&mut f.conn);
        assert_eq!(out.len(), 1, "{out:?}");
        let (id, err) = error_response(&out[0]);
        assert_eq!(id, 3);
        assert_eq!(err.message(), "internal error: unknown function");
    }

    #[test]
    fn a_cancel_reaches_only_its_request() {
        let mut f = Fixture::new();
        let runs = f.two_running();
        f.send(|tx| tx.push_cancel(2));
        assert!(f.dispatch().is_empty());
        assert_eq!(runs[0].2.cancel_reason(), None);
        assert_eq!(runs[1].2.cancel_reason(), Some(CancelReason::Cancelled));

        // Answered as Go answers a handler that gave up on its context.
        f.requests
            .finish(f.now, &mut f.conn, 2, Err(HandlerError::cancelled()));
        let out = drain_transmit(&mut f.conn);
        assert_eq!(error_response(&out[0]), (2, RemoteError::canceled()));
    }

    #[test]
    fn a_reused_cancel_token_starts_uncancelled() {
        let mut f = Fixture::new();
        let mut runs = f.two_running();
        f.send(|tx| tx.push_cancel(2));
        assert!(f.dispatch().is_empty());
        let (_, _, cancelled) = runs.pop().expect("two");
        let token = Arc::as_ptr(&cancelled.cancel);
        // The handler lets go of its request before it answers.
        drop(cancelled);
        f.requests
            .finish(f.now, &mut f.conn, 2, Err(HandlerError::cancelled()));
        f.request(3, "Echo", 0);
        let next = f.dispatch();
        // The same token, reset: no allocation, and no stale cancel.
        assert_eq!(Arc::as_ptr(&next[0].2.cancel), token);
        assert_eq!(next[0].2.cancel_reason(), None);
        // A token still held by its request is never reused.
        f.request(4, "Echo", 0);
        let held = &runs[0].2;
        f.requests.finish(f.now, &mut f.conn, 1, Ok(Bytes::new()));
        f.request(5, "Echo", 0);
        let fresh = f.dispatch();
        assert_eq!(fresh.len(), 2);
        assert!(
            fresh
                .iter()
                .all(|r| !Arc::ptr_eq(&r.2.cancel, &held.cancel))
        );
    }

    #[test]
    fn a_passed_deadline_cancels_with_its_reason() {
        let mut f = Fixture::new();
        f.request(1, "Echo", 1_000);
        let runs = f.dispatch();
        f.now += Duration::from_millis(1);
        f.conn.handle_timeout(f.now);
        assert!(f.dispatch().is_empty());
        assert_eq!(
            runs[0].2.cancel_reason(),
            Some(CancelReason::DeadlineExceeded)
        );
    }

    #[test]
    fn a_failure_cancels_every_request_still_running() {
        let mut f = Fixture::new();
        let runs = f.two_running();
        // The core cancels what it has in flight before it fails; a
        // failure event on its own must still reach every handler.
        let failed = ServerEvent::Failed(weft_proto::ConnError::Closed);
        f.requests.on_event(f.now, &mut f.conn, &f.handlers, failed);
        assert!(f.requests.is_closed());
        f.assert_all_cancelled(&runs, CancelReason::ConnectionLost);
    }

    #[test]
    fn a_failed_connection_cancels_every_request() {
        let mut f = Fixture::new();
        let runs = f.two_running();
        assert!(!f.requests.is_closed());
        f.conn.handle_transport_closed(f.now, "reset");
        assert!(f.dispatch().is_empty());
        assert!(f.requests.is_closed());
        f.assert_all_cancelled(&runs, CancelReason::ConnectionLost);
    }

    #[test]
    fn past_the_limit_requests_wait_in_order() {
        let mut f = Fixture::with_limit(2);
        f.arrive(|tx| {
            for id in 1..=3 {
                push_request(tx, id, "Echo", 0);
            }
        });
        let runs = f.dispatch();
        assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!((f.requests.running(), f.requests.in_flight()), (2, 3));
        // At the limit the connection is still read, and what arrives is
        // decoded: it waits.
        assert!(f.requests.wants_read(&f.conn));
        f.arrive(|tx| push_request(tx, 4, "Echo", 0));
        assert!(f.dispatch().is_empty());
        assert_eq!(f.requests.in_flight(), 4);

        f.finish(1);
        let runs = f.dispatch();
        assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [3]);
        f.finish(2);
        let runs = f.dispatch();
        assert_eq!(runs.iter().map(|r| r.0).collect::<Vec<_>>(), [4]);
        assert_eq!(f.requests.running(), 2);
        let out = drain_transmit(&mut f.conn);
        assert_eq!(out.len(), 2, "{out:?}");
    }

    #[test]
    fn what_waits_at_the_limit_is_bounded_and_reading_resumes_as_it_runs() {
        let mut f = Fixture::with_limit(1);
        f.request(1, "Echo", 0);
        assert_eq!(f.dispatch().len(), 1);
        let mut waiting = 0;
        while f.requests.wants_read(&f.conn) {
            f.arrive(|tx| push_request(tx, 1000 + waiting as u64, "Echo", 0));
            assert!(f.dispatch().is_empty());
            waiting += 1;
            assert!(waiting < READ_AHEAD, "never stops reading");
        }
        // Empty requests count their overhead: a few hundred, not 64 K.
        assert!(waiting <= READ_AHEAD / WAITING_OVERHEAD, "{waiting}");
        f.finish(1);
        assert_eq!(f.dispatch().len(), 1);
        assert!(f.requests.wants_read(&f.conn), "room again");
    }

    #[test]
    fn a_waiting_requests_metadata_counts_against_the_bound() {
        let mut f = Fixture::with_limit(1);
        f.request(1, "Echo", 0);
        assert_eq!(f.dispatch().len(), 1);
        // One request with empty arguments and 64 KiB of metadata: the
        // bound is reached at once.
        f.arrive(|tx| {
            let mut header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
            let big = "m".repeat(READ_AHEAD);
            header.metadata = Some(weft_proto::Metadata::from_iter([("k", big.as_str())]));
            tx.push_request(2, header.fields(), &Bytes::new());
        });
        assert!(f.dispatch().is_empty());
        assert!(!f.requests.wants_read(&f.conn));
    }

    #[test]
    fn reads_at_the_limit_are_bounded_whatever_they_carry() {
        let mut f = Fixture::with_limit(1);
        f.request(1, "Echo", 0);
        assert_eq!(f.dispatch().len(), 1);
        // Requests for a method nobody serves are answered at once and
        // never wait, but what arrives with them is read all the same.
        let mut reads = 0;
        while f.requests.wants_read(&f.conn) {
            f.arrive(|tx| {
                let header = RequestHeader::new(MethodKey::new("weft.Test", "Nope"));
                tx.push_request(100 + reads, header.fields(), &Bytes::from(vec![0u8; 8192]));
            });
            assert!(f.dispatch().is_empty());
            reads += 1;
            assert!(reads < 1000, "never stops reading");
        }
        assert!(reads <= (AT_LIMIT_READS / 8192) as u64 + 1, "{reads}");
        // A slot frees: reading resumes.
        f.finish(1);
        assert!(f.requests.wants_read(&f.conn));
    }

    #[test]
    fn a_cancel_behind_waiting_requests_reaches_the_running_handler() {
        let mut f = Fixture::with_limit(1);
        f.request(1, "Echo", 0);
        let running = f.dispatch();
        f.arrive(|tx| {
            push_request(tx, 2, "Echo", 0);
            tx.push_cancel(1);
        });
        assert!(f.dispatch().is_empty());
        assert_eq!(running[0].2.cancel_reason(), Some(CancelReason::Cancelled));
    }

    #[test]
    fn a_cancel_reaches_a_waiting_request() {
        let mut f = Fixture::with_limit(1);
        f.request(1, "Echo", 0);
        f.request(2, "Echo", 0);
        assert_eq!(f.dispatch().len(), 1);
        f.send(|tx| tx.push_cancel(2));
        assert!(f.dispatch().is_empty());
        f.finish(1);
        let runs = f.dispatch();
        assert_eq!(runs[0].0, 2);
        assert_eq!(runs[0].2.cancel_reason(), Some(CancelReason::Cancelled));
    }

    #[test]
    fn a_hang_up_at_the_limit_reaches_every_request_sent_before_it() {
        let mut f = Fixture::with_limit(1);
        f.arrive(|tx| push_request(tx, 1, "Echo", 0));
        let first = f.dispatch();
        f.arrive(|tx| {
            push_request(tx, 2, "Echo", 0);
            push_request(tx, 3, "Echo", 0);
        });
        assert!(f.dispatch().is_empty(), "waiting at the limit");
        assert_eq!(f.requests.in_flight(), 3);
        f.requests.on_read(f.now, &mut f.conn, Ok(0));
        // The connection being closed, the waiting requests are all handed
        // out at once, already cancelled.
        let rest = f.dispatch();
        assert!(f.requests.is_closed());
        assert!(!f.requests.wants_read(&f.conn));
        assert_eq!(rest.iter().map(|r| r.0).collect::<Vec<_>>(), [2, 3]);
        for (_, _, req) in first.iter().chain(&rest) {
            assert_eq!(req.cancel_reason(), Some(CancelReason::ConnectionLost));
        }
    }

    #[test]
    fn a_read_error_closes_the_connection() {
        let mut f = Fixture::new();
        let runs = f.two_running();
        let reset = io::Error::from(io::ErrorKind::ConnectionReset);
        f.requests.on_read(f.now, &mut f.conn, Err(reset));
        assert!(f.dispatch().is_empty());
        assert!(f.requests.is_closed());
        for (_, _, req) in &runs {
            assert_eq!(req.cancel_reason(), Some(CancelReason::ConnectionLost));
        }
    }

    #[test]
    fn an_overloaded_request_is_answered_without_its_handler() {
        let mut f = Fixture::new();
        f.request(5, "Echo", 0);
        let d = f.requests.next_dispatch();
        assert!(d.is_none(), "not before its event is taken");
        f.requests.handle_events(f.now, &mut f.conn, &f.handlers);
        let d = f.requests.next_dispatch().expect("dispatched");
        f.requests.refuse_overloaded(f.now, &mut f.conn, d.id);
        assert_eq!(f.requests.in_flight(), 0);
        let out = drain_transmit(&mut f.conn);
        assert_eq!(error_response(&out[0]), (5, RemoteError::new(OVERLOADED)));
    }
}
