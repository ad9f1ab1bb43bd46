//! The router: replicas, placement, retries and timers, without connections.

use super::calls::PoolCall;
use super::link::Link;
use super::replicas::Replica;
use super::resolver::ResolverState;
use super::{
    Action, Command, ConnEvent, ConnId, ConnectError, PoolCallId, PoolConfig, PoolEvent, Readiness,
    ReplicaState, Resolution, ResolverKind,
};
use crate::MethodKey;
use crate::balance::{Balancer, ReadyReplica, ReplicaId};
use crate::call::{CallError, CallOptions};
use crate::error::ConnError;
use crate::idmap::IdMap;
use crate::rng::Rng;
use crate::timer::TimerQueue;
use bytes::Bytes;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Timer {
    CallDeadline(u64),
    CallRetry(u64),
    Redial {
        slot: usize,
        replica: ReplicaId,
    },
    /// A dial or handshake that must be done by now.
    ConnectTimeout {
        slot: usize,
        conn: ConnId,
    },
    Resolve,
}

/// Replica membership, dials, placement, retries and every call deadline of
/// a client: quinn-proto's endpoint to [`Link`]'s connection.
///
/// Methods, in quinn-proto's groups:
///
/// - getters: [`replica_state`](Self::replica_state),
///   [`replicas`](Self::replicas), [`pending_calls`](Self::pending_calls),
///   [`is_closed`](Self::is_closed);
/// - inputs, each taking the time: `handle_dial_ok` (which hands the driver
///   the new connection's [`Link`]), `handle_dial_failed`,
///   [`handle_conn_event`](Self::handle_conn_event), `handle_resolved`,
///   `handle_resolve_failed`, [`handle_timeout`](Self::handle_timeout);
/// - commands: [`start_call`](Self::start_call), [`cancel`](Self::cancel),
///   [`close`](Self::close);
/// - outputs: [`poll_action`](Self::poll_action) (transports and the
///   resolver), [`poll_command`](Self::poll_command) (work for a link),
///   [`poll_event`](Self::poll_event) (finished calls),
///   [`poll_timeout`](Self::poll_timeout).
///
/// After any input or command, drain all three queues; then sleep until
/// `poll_timeout`, which is the time of the last input while anything is
/// queued. Commands for one link must be applied in the order they were
/// emitted (a `Cancel` that overtook its call's `Start` would be lost);
/// commands for different links may interleave freely. Commands for a
/// connection the driver no longer has (closed since) are dropped: the
/// router has already accounted for every call on it.
/// Links have no timers a driver must drive: the router owns every call
/// deadline and sends [`Command::Expire`].
///
/// Time may be passed in out of order; it is clamped to never go back.
pub struct Router {
    pub(super) now: Instant,
    pub(super) config: PoolConfig,
    pub(super) rng: Rng,
    pub(super) balancer: Box<dyn Balancer>,
    pub(super) closed: bool,
    pub(super) replicas: Vec<Option<Replica>>,
    pub(super) free_slots: Vec<usize>,
    pub(super) by_addr: BTreeMap<Arc<str>, usize>,
    /// Every connection the router knows, dialing or open: its replica slot.
    pub(super) conns: IdMap<usize>,
    pub(super) next_conn: u64,
    pub(super) next_replica: u64,
    /// The balancer's view, sorted by replica id.
    pub(super) ready: Vec<ReadyReplica>,
    pub(super) calls: IdMap<PoolCall>,
    pub(super) last_call: u64,
    /// Calls with no replica to go to, oldest first (may hold stale ids).
    pub(super) waiting: VecDeque<u64>,
    pub(super) timers: TimerQueue<Timer>,
    pub(super) resolver: Option<ResolverState>,
    pub(super) actions: VecDeque<Action>,
    pub(super) commands: VecDeque<(ConnId, Command)>,
    pub(super) events: VecDeque<PoolEvent>,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("replicas", &self.by_addr.len())
            .field("ready", &self.ready.len())
            .field("calls", &self.calls.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Router {
    /// A router over the endpoints a resolver returned first. A constant
    /// resolver must name at least one; a watched one may start empty, and
    /// the router asks it for updates ([`Action::Resolve`]).
    pub fn new(
        now: Instant,
        config: PoolConfig,
        balancer: Box<dyn Balancer>,
        kind: ResolverKind,
        initial: Resolution,
    ) -> Result<Router, ConnectError> {
        match kind {
            ResolverKind::Constant if initial.addrs.is_empty() => {
                return Err(ConnectError::NoEndpoints);
            }
            ResolverKind::Watched if initial.version.is_none() => {
                return Err(ConnectError::Unversioned);
            }
            _ => {}
        }
        let mut router = Router {
            now,
            config,
            rng: Rng::new(config.seed),
            balancer,
            closed: false,
            replicas: Vec::new(),
            free_slots: Vec::new(),
            by_addr: BTreeMap::new(),
            conns: IdMap::default(),
            next_conn: 0,
            next_replica: 0,
            ready: Vec::new(),
            calls: IdMap::default(),
            last_call: 0,
            waiting: VecDeque::new(),
            timers: TimerQueue::default(),
            resolver: None,
            actions: VecDeque::new(),
            commands: VecDeque::new(),
            events: VecDeque::new(),
        };
        router.reconcile(&initial.addrs);
        if kind == ResolverKind::Watched {
            router.follow_resolver(initial.version);
        }
        router.check_invariants();
        Ok(router)
    }

    // ---- getters ----

    /// The state of the replica at `addr`.
    pub fn replica_state(&self, addr: &str) -> ReplicaState {
        self.by_addr
            .get(addr)
            .and_then(|&s| self.replicas[s].as_ref())
            .map_or(ReplicaState::Missing, |r| r.state)
    }

    /// Every known replica: address, state and calls in flight, by address.
    pub fn replicas(&self) -> impl Iterator<Item = (&str, ReplicaState, usize)> {
        self.by_addr.iter().filter_map(|(addr, &s)| {
            let r = self.replicas[s].as_ref()?;
            Some((&**addr, r.state, r.calls.len()))
        })
    }

    /// Whether a call started now would be placed, would wait, or would
    /// fail at once. Changes only on an input; a driver that reports
    /// readiness looks again after each one.
    pub fn readiness(&self) -> Readiness {
        if self.closed {
            return Readiness::Closed;
        }
        if !self.ready.is_empty() {
            return Readiness::Ready;
        }
        let congested =
            self.replicas.iter().flatten().any(|r| {
                r.congested && matches!(r.state, ReplicaState::Idle | ReplicaState::Active)
            });
        if congested {
            return Readiness::Congested;
        }
        match self.unreachable() {
            Some(reason) => Readiness::Unreachable(reason),
            None => Readiness::Connecting,
        }
    }

    /// Calls started and not yet ended.
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- inputs ----

    /// A dial succeeded: the transport for `conn` is open. Returns the
    /// connection's core for the driver to own next to the transport, or
    /// `None` if the pool no longer wants it (the driver closes it).
    #[must_use = "the link drives the new connection; None means close it"]
    pub fn handle_dial_ok(&mut self, now: Instant, conn: ConnId) -> Option<Link> {
        self.advance_time(now);
        // None: the replica left (or the router closed) while dialing.
        let slot = self.live_dial(conn)?;
        let r = self.replica_mut(slot);
        r.dialing = None;
        r.conn = Some(conn);
        r.state = ReplicaState::Checking;
        self.check_invariants();
        Some(Link::new(self.now, self.config.conn))
    }

    /// A dial failed; the router redials after backoff.
    pub fn handle_dial_failed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        self.advance_time(now);
        if let Some(slot) = self.live_dial(conn) {
            tracing::info!(addr = %self.replica(slot).addr, reason, "dial failed");
            self.conns.remove(&conn.0);
            let r = self.replica_mut(slot);
            r.dialing = None;
            r.last_error = Some(reason.into());
            self.schedule_redial(slot);
            self.fail_fast_waiting();
        }
        self.check_invariants();
    }

    /// Something `conn`'s [`Link`] reported. Events of one link must arrive
    /// in the order the link produced them.
    pub fn handle_conn_event(&mut self, now: Instant, conn: ConnId, event: ConnEvent) {
        self.advance_time(now);
        let Some(slot) = self.open_conn(conn) else {
            // A connection the router already let go of: its calls were
            // accounted for when it did.
            return;
        };
        match event {
            ConnEvent::Connected { .. } => self.connected(slot),
            ConnEvent::Done { call, result } => self.link_call_ended(slot, conn, call, result),
            ConnEvent::GoAway { reason } => self.going_away(slot, &reason),
            ConnEvent::Congested { congested } => self.set_congested(slot, congested),
            ConnEvent::Failed(err) => self.conn_failed(slot, &err),
        }
        self.check_invariants();
    }

    /// Fires timers that are due: call deadlines and retries, redials and
    /// resolver retries.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_time(now);
        self.check_invariants();
    }

    // ---- commands ----

    /// Starts a call. It is placed on a ready replica chosen by the
    /// balancer, or waits for one until its deadline or cancellation.
    pub fn start_call(
        &mut self,
        now: Instant,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> PoolCallId {
        self.advance_time(now);
        self.last_call += 1;
        let id = self.last_call;
        let early = if self.closed {
            Some(CallError::Connection(ConnError::Closed))
        } else if opts.deadline.is_some_and(|d| d <= self.now) {
            Some(CallError::DeadlineExceeded)
        } else {
            None
        };
        if let Some(err) = early {
            self.events.push_back(PoolEvent::Done {
                id: PoolCallId(id),
                result: Err(err),
            });
            return PoolCallId(id);
        }
        if let Some(d) = opts.deadline {
            self.push_timer(d, Timer::CallDeadline(id));
        }
        self.calls.insert(id, PoolCall::new(method, args, opts));
        if !self.try_place(id) {
            self.wait_or_fail(id);
        }
        self.check_invariants();
        PoolCallId(id)
    }

    /// Abandons a call: it ends at once with [`CallError::Cancelled`], and
    /// if it was placed its link is told ([`Command::Cancel`]). Returns
    /// false if it had already ended.
    pub fn cancel(&mut self, now: Instant, id: PoolCallId) -> bool {
        self.advance_time(now);
        let Some(call) = self.calls.remove(&id.0) else {
            return false;
        };
        if let Some((_, conn)) = call.placed {
            self.commands
                .push_back((conn, Command::Cancel { call: id }));
        }
        self.events.push_back(PoolEvent::Done {
            id,
            result: Err(CallError::Cancelled),
        });
        self.check_invariants();
        true
    }

    /// Closes the router: every pending call ends with a communication
    /// error saying the connection is closed, every transport is closed,
    /// and later calls fail the same way. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.advance_time(now);
        if self.closed {
            return;
        }
        self.closed = true;
        self.resolver = None;
        self.timers.clear();
        let mut ids: Vec<u64> = self.calls.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            self.finish(id, Err(CallError::Connection(ConnError::Closed)));
        }
        self.waiting.clear();
        for slot in 0..self.replicas.len() {
            if self.replicas[slot].is_some() {
                self.replica_mut(slot).calls.clear();
                self.remove_replica(slot);
            }
        }
        self.check_invariants();
    }

    // ---- outputs ----

    /// The next thing the driver must do with a transport or the resolver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next command for a connection's [`Link`].
    #[must_use]
    pub fn poll_command(&mut self) -> Option<(ConnId, Command)> {
        self.commands.pop_front()
    }

    /// The next finished call.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: the time
    /// of the last input while output is queued, else the earliest timer.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() || !self.commands.is_empty() || !self.events.is_empty() {
            return Some(self.now);
        }
        self.timers.next()
    }

    // ---- time ----

    pub(super) fn push_timer(&mut self, at: Instant, timer: Timer) {
        let Router {
            timers,
            calls,
            replicas,
            resolver,
            ..
        } = self;
        let live = calls.len() + replicas.len() + 1;
        timers.push(at, timer, live, |t| match *t {
            Timer::CallDeadline(id) | Timer::CallRetry(id) => calls.contains_key(&id),
            Timer::Redial { slot, replica } => replicas
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|r| r.id == replica),
            Timer::ConnectTimeout { slot, conn } => replicas
                .get(slot)
                .and_then(Option::as_ref)
                .is_some_and(|r| r.dialing == Some(conn) || r.conn == Some(conn)),
            Timer::Resolve => resolver.is_some(),
        });
    }

    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some((_, timer)) = self.timers.pop_due(self.now) {
            self.fire(timer);
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::CallDeadline(id) => self.deadline_passed(id),
            Timer::CallRetry(id) => self.retry_due(id),
            Timer::Redial { slot, replica } => self.redial_due(slot, replica),
            Timer::ConnectTimeout { slot, conn } => self.connect_timed_out(slot, conn),
            Timer::Resolve => self.resolve_due(),
        }
    }

    pub(super) fn check_invariants(&self) {
        #[cfg(debug_assertions)]
        self.assert_invariants();
    }
}
