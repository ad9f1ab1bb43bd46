//! One connection's requests, from the core's events to handlers and back.

use super::cancel::CancelToken;
use super::{HandlerMap, Request};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use weft_proto::{CancelReason, HandlerResult, ServerConn, ServerEvent};

/// A request to hand to its handler.
///
/// Run `handler` with `request`, wherever the driver runs handlers, and
/// pass the result to [`Dispatcher::finish`] with `id`.
pub struct Dispatch<'h, H: ?Sized> {
    /// The request id on the connection.
    pub id: u64,
    /// The handler `request.method` names.
    pub handler: &'h Arc<H>,
    /// What the handler gets.
    pub request: Request,
}

/// The requests of one connection that are with their handlers: what a
/// driver does with each [`ServerEvent`], written once.
///
/// It holds the cancel token of each request in flight, so a cancel from
/// the core reaches the right handler and a broken connection reaches all
/// of them. The driver owns the [`ServerConn`] and lends it to each call.
#[derive(Debug, Default)]
pub struct Dispatcher {
    cancels: HashMap<u64, Arc<CancelToken>>,
    closed: bool,
}

impl Dispatcher {
    /// A connection with nothing in flight.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes one event from `conn`. A request for a method in `handlers`
    /// comes back as a [`Dispatch`] for the driver to run; everything else
    /// is done here: an unknown method is answered on `conn`, a cancel
    /// signals its request's handler, and a failed connection cancels
    /// every handler with [`CancelReason::ConnectionLost`] and marks this
    /// [closed](Self::is_closed).
    pub fn on_event<'h, H: ?Sized>(
        &mut self,
        now: Instant,
        conn: &mut ServerConn,
        handlers: &'h HandlerMap<H>,
        event: ServerEvent,
    ) -> Option<Dispatch<'h, H>> {
        match event {
            ServerEvent::Request(req) => {
                let Some((name, handler)) = handlers.get(&req.method) else {
                    conn.respond_unknown_method(now, req.id);
                    return None;
                };
                let cancel = Arc::new(CancelToken::default());
                self.cancels.insert(req.id, cancel.clone());
                Some(Dispatch {
                    id: req.id,
                    handler,
                    request: Request {
                        args: req.args,
                        method: name.clone(),
                        deadline: req.deadline,
                        metadata: req.metadata,
                        trace: req.trace,
                        cancel,
                    },
                })
            }
            ServerEvent::Cancel { id, reason } => {
                if let Some(token) = self.cancels.get(&id) {
                    token.cancel(reason);
                }
                None
            }
            ServerEvent::Failed(err) => {
                tracing::debug!(error = %err, "server connection closed");
                self.closed = true;
                for (_, token) in self.cancels.drain() {
                    token.cancel(CancelReason::ConnectionLost);
                }
                None
            }
        }
    }

    /// Sends the result of request `id`'s handler (see
    /// [`ServerConn::finish`]) and forgets the request.
    pub fn finish(&mut self, now: Instant, conn: &mut ServerConn, id: u64, result: HandlerResult) {
        self.cancels.remove(&id);
        conn.finish(now, id, result);
    }

    /// Whether the connection failed or was closed: the driver closes the
    /// transport once the last bytes are written (none are, after a
    /// failure, so at once).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Requests handed to handlers and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.cancels.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;
    use weft_proto::header::RequestHeader;
    use weft_proto::transmit::Transmit;
    use weft_proto::{ConnConfig, HandlerError, Message, MethodKey, RemoteError, Version};

    type Handler = dyn Fn(&Request) -> &'static str;

    /// A server connection past its handshake, and the dispatcher for it.
    struct Fixture {
        now: Instant,
        conn: ServerConn,
        requests: Dispatcher,
        handlers: HandlerMap<Handler>,
    }

    impl Fixture {
        fn new() -> Self {
            let now = Instant::now();
            let mut conn = ServerConn::new(now, ConnConfig::default());
            let mut tx = Transmit::new(0);
            tx.push_version(Version::CURRENT);
            feed(&mut conn, now, tx);
            drain_transmit(&mut conn);
            let mut handlers = HandlerMap::<Handler>::new();
            handlers.insert("weft.Test", "Echo", Arc::new(|_: &Request| "echo"));
            Fixture {
                now,
                conn,
                requests: Dispatcher::new(),
                handlers,
            }
        }

        fn send(&mut self, push: impl FnOnce(&mut Transmit)) {
            let mut tx = Transmit::new(0);
            push(&mut tx);
            feed(&mut self.conn, self.now, tx);
        }

        fn request(&mut self, id: u64, method: &str, deadline_micros: i64) {
            let mut header = RequestHeader::new(MethodKey::new("weft.Test", method));
            header.deadline_micros = deadline_micros;
            self.send(|tx| tx.push_request(id, header.fields(), &Bytes::from_static(b"hi")));
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
            let mut out = Vec::new();
            while let Some(event) = self.conn.poll_event() {
                if let Some(d) =
                    self.requests
                        .on_event(self.now, &mut self.conn, &self.handlers, event)
                {
                    out.push((d.id, (d.handler)(&d.request), d.request));
                }
            }
            out
        }
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
        let mut decoder = weft_proto::frame::FrameDecoder::new(u64::MAX);
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
        assert!(
            f.requests
                .on_event(f.now, &mut f.conn, &f.handlers, failed)
                .is_none()
        );
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
}
