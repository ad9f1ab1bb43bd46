//! A [`Router`] and its [`Link`]s in one value.

use super::{
    Action, ConnId, ConnectError, PoolCallId, PoolConfig, PoolEvent, Readiness, ReplicaState,
    Resolution, ResolverKind,
};
use super::{Link, Router};
use crate::MethodKey;
use crate::balance::Balancer;
use crate::call::CallOptions;
use crate::idmap::IdMap;
use crate::transmit::Transmit;
use bytes::{Bytes, BytesMut};
use std::collections::VecDeque;
use std::time::Instant;

/// A client over a changing set of replicas, as one state machine: the
/// [`Router`] with every [`Link`] inside, commands between them carried out
/// on the spot. What a simulation drives, and what a driver that keeps all
/// its connections under one lock can use.
///
/// Same shape as the connection cores: getters; inputs (`handle_*`, each
/// taking the time); commands ([`start_call`](Self::start_call),
/// [`cancel`](Self::cancel), [`close`](Self::close)); outputs, drained in
/// this order after every input until only the timeout is left:
/// [`poll_action`](Self::poll_action) (dial, close, resolve),
/// [`poll_transmit`](Self::poll_transmit) (a connection with bytes to
/// write: [`transmit`](Self::transmit), then
/// [`advance_transmit`](Self::advance_transmit)),
/// [`poll_event`](Self::poll_event), and [`poll_timeout`](Self::poll_timeout).
///
/// ```
/// use bytes::Bytes;
/// use std::time::Instant;
/// use weft_proto::RoundRobin;
/// use weft_proto::{Action, Pool, PoolConfig, Resolution, ResolverKind};
/// use weft_proto::{CallOptions, MethodKey};
///
/// let now = Instant::now();
/// let initial = Resolution { addrs: vec!["tcp://10.0.0.1:80".into()], version: None };
/// let mut pool = Pool::connect(now, PoolConfig::default(), Box::new(RoundRobin::new()), ResolverKind::Constant, initial)?;
/// let Some(Action::Dial { conn, .. }) = pool.poll_action() else { unreachable!() };
/// pool.handle_dial_ok(now, conn);
/// // The call waits: the replica is not ready until its handshake is done.
/// let call = pool.start_call(now, MethodKey::new("weft.Test", "Echo"), Bytes::new(), CallOptions::default());
/// assert_eq!(pool.poll_transmit(), Some(conn)); // the version frame
/// # let _ = call;
/// # Ok::<(), weft_proto::ConnectError>(())
/// ```
#[derive(Debug)]
pub struct Pool {
    router: Router,
    links: IdMap<Owned>,
    actions: VecDeque<Action>,
    transmits: VecDeque<ConnId>,
}

#[derive(Debug)]
struct Owned {
    link: Link,
    /// Whether this connection is in the transmit queue. It lives and dies
    /// with the connection, so a redialed one never inherits it.
    queued: bool,
}

impl Pool {
    /// A pool over the endpoints a resolver returned first; see
    /// [`Router::new`].
    pub fn connect(
        now: Instant,
        config: PoolConfig,
        balancer: Box<dyn Balancer>,
        kind: ResolverKind,
        initial: Resolution,
    ) -> Result<Pool, ConnectError> {
        let mut pool = Pool {
            router: Router::new(now, config, balancer, kind, initial)?,
            links: IdMap::default(),
            actions: VecDeque::new(),
            transmits: VecDeque::new(),
        };
        pool.pump();
        Ok(pool)
    }

    // ---- getters ----

    /// The router inside.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// The state of the replica at `addr`.
    pub fn replica_state(&self, addr: &str) -> ReplicaState {
        self.router.replica_state(addr)
    }

    /// Every known replica: address, state and calls in flight, by address.
    pub fn replicas(&self) -> impl Iterator<Item = (&str, ReplicaState, usize)> {
        self.router.replicas()
    }

    /// See [`Router::readiness`].
    pub fn readiness(&self) -> Readiness {
        self.router.readiness()
    }

    /// Calls started and not yet ended.
    pub fn pending_calls(&self) -> usize {
        self.router.pending_calls()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.router.is_closed()
    }

    // ---- inputs ----

    /// A dial succeeded: the transport for `conn` is open.
    pub fn handle_dial_ok(&mut self, now: Instant, conn: ConnId) {
        match self.router.handle_dial_ok(now, conn) {
            Some(link) => {
                self.links.insert(
                    conn.0,
                    Owned {
                        link,
                        queued: false,
                    },
                );
                self.queue_transmit(conn);
            }
            None => self.actions.push_back(Action::Close { conn }),
        }
        self.pump();
    }

    /// A dial failed; the pool redials after backoff.
    pub fn handle_dial_failed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        self.router.handle_dial_failed(now, conn, reason);
        self.pump();
    }

    /// The buffer to read `conn`'s bytes into; `None` if the pool no longer
    /// has that connection (the driver should close it).
    pub fn read_buf(&mut self, conn: ConnId, min_spare: usize) -> Option<&mut BytesMut> {
        Some(self.links.get_mut(&conn.0)?.link.read_buf(min_spare))
    }

    /// Processes bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant, conn: ConnId) {
        if let Some(o) = self.links.get_mut(&conn.0) {
            o.link.handle_read(now);
            self.after_link_input(conn);
        }
    }

    /// Processes bytes read from `conn`.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        if let Some(o) = self.links.get_mut(&conn.0) {
            o.link.handle_input(now, data);
            self.after_link_input(conn);
        }
    }

    /// `conn`'s transport failed or ended (or, before it opened, its dial).
    pub fn handle_transport_closed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        match self.links.get_mut(&conn.0) {
            Some(o) => {
                o.link.handle_transport_closed(now, reason);
                self.after_link_input(conn);
            }
            None => self.handle_dial_failed(now, conn, reason),
        }
    }

    /// The resolver answered an [`Action::Resolve`].
    pub fn handle_resolved(&mut self, now: Instant, res: Resolution) {
        self.router.handle_resolved(now, res);
        self.pump();
    }

    /// The resolver failed; the pool asks again after backoff.
    pub fn handle_resolve_failed(&mut self, now: Instant, reason: &str) {
        self.router.handle_resolve_failed(now, reason);
        self.pump();
    }

    /// Fires timers that are due.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.router.handle_timeout(now);
        self.pump();
    }

    // ---- commands ----

    /// Starts a call; see [`Router::start_call`].
    pub fn start_call(
        &mut self,
        now: Instant,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> PoolCallId {
        let id = self.router.start_call(now, method, args, opts);
        self.pump();
        id
    }

    /// Abandons a call; see [`Router::cancel`].
    pub fn cancel(&mut self, now: Instant, id: PoolCallId) -> bool {
        let cancelled = self.router.cancel(now, id);
        self.pump();
        cancelled
    }

    /// Closes the pool; see [`Router::close`].
    pub fn close(&mut self, now: Instant) {
        self.router.close(now);
        self.pump();
    }

    // ---- outputs ----

    /// The next thing the driver must do with transports or the resolver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A connection with bytes to write.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ConnId> {
        while let Some(conn) = self.transmits.pop_front() {
            if let Some(o) = self.links.get_mut(&conn.0) {
                o.queued = false;
                return Some(conn);
            }
        }
        None
    }

    /// Bytes waiting to be written on `conn`.
    pub fn transmit(&self, conn: ConnId) -> Option<&Transmit> {
        Some(self.links.get(&conn.0)?.link.transmit())
    }

    /// Reports that `n` bytes of `conn`'s transmit queue were written. Room
    /// made may end the link's congestion, which places waiting calls:
    /// drain the outputs after it, as after an input. Nothing written
    /// (`n == 0`, a full transport) changes nothing: the connection is not
    /// handed out by [`poll_transmit`](Self::poll_transmit) again until
    /// new output, so the driver waits for the transport to take bytes.
    pub fn advance_transmit(&mut self, now: Instant, conn: ConnId, n: usize) {
        if n == 0 {
            return;
        }
        if let Some(o) = self.links.get_mut(&conn.0) {
            o.link.advance_transmit(now, n);
            self.after_link_input(conn);
        }
    }

    /// Moves all of `conn`'s pending bytes into `out` (in-memory transports);
    /// drain the outputs after it, as after
    /// [`advance_transmit`](Self::advance_transmit).
    pub fn drain_transmit(&mut self, conn: ConnId, out: &mut Vec<u8>) {
        if let Some(o) = self.links.get_mut(&conn.0) {
            o.link.drain_transmit(out);
            self.after_link_input(conn);
        }
    }

    /// The next call result.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.router.poll_event()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: now while
    /// actions, transmits or events wait, else the earliest timer.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() || !self.transmits.is_empty() {
            return Some(self.router.now);
        }
        self.router.poll_timeout()
    }

    /// Checks Service Weaver's replica invariants; panics if one fails.
    /// Runs after every transition in debug builds.
    #[doc(hidden)]
    pub fn assert_invariants(&self) {
        self.router.assert_invariants();
    }

    // ---- internals ----

    fn after_link_input(&mut self, conn: ConnId) {
        self.drain_link(conn);
        self.pump();
    }

    /// Hands a link's events to the router, in order.
    fn drain_link(&mut self, conn: ConnId) {
        let now = self.router.now;
        while let Some(event) = self
            .links
            .get_mut(&conn.0)
            .and_then(|o| o.link.poll_event())
        {
            self.router.handle_conn_event(now, conn, event);
        }
        self.queue_transmit(conn);
    }

    /// Carries the router's commands to links and its actions out, until
    /// neither has more.
    fn pump(&mut self) {
        let now = self.router.now;
        loop {
            let mut progressed = false;
            while let Some((conn, command)) = self.router.poll_command() {
                progressed = true;
                if let Some(o) = self.links.get_mut(&conn.0) {
                    o.link.apply(now, command);
                    self.drain_link(conn);
                }
            }
            while let Some(action) = self.router.poll_action() {
                progressed = true;
                if let Action::Close { conn } = action {
                    self.links.remove(&conn.0);
                }
                self.actions.push_back(action);
            }
            if !progressed {
                break;
            }
        }
    }

    fn queue_transmit(&mut self, conn: ConnId) {
        if let Some(o) = self.links.get_mut(&conn.0)
            && !o.queued
            && !o.link.transmit().is_empty()
        {
            o.queued = true;
            self.transmits.push_back(conn);
        }
    }
}
