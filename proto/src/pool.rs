//! The client's view of a service: a set of replicas behind one call API.
//!
//! This is Service Weaver's reconnecting connection as a sans-IO core. It
//! owns one [`ClientConn`] per connected replica and tells the driver what to
//! do with transports through [`Action`]s: dial this address, close that
//! connection, ask the resolver again.
//!
//! Each replica (one per endpoint address) moves through
//!
//! ```text
//! missing -> disconnected -> checking -> idle <-> active -> draining -> missing
//! ```
//!
//! - *disconnected*: no transport; a dial is in progress or a redial is due
//!   after backoff;
//! - *checking*: transport up, version handshake in progress;
//! - *idle* / *active*: ready, without / with calls in flight; only these
//!   are in the balancer;
//! - *draining*: removed by the resolver while calls were in flight; no new
//!   calls, closed when the last one ends.

use crate::MethodKey;
use crate::backoff::Backoff;
use crate::balance::{Balancer, ReadyReplica, ReplicaId, addr_hash};
use crate::call::{CallError, CallOptions};
use crate::client::{CallId, ClientConn, ClientEvent, ConnConfig};
use crate::error::ConnError;
use crate::idmap::IdMap;
use crate::rng::Rng;
use crate::transmit::Transmit;
use bytes::{Bytes, BytesMut};
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

/// Calls outstanding from which a driver should leave request writes to its
/// I/O thread or task, which writes all that queued up in one go, instead of
/// writing each request as its call starts. With few calls outstanding,
/// latency is what matters and writing at once wins; with many, one write
/// per batch is where throughput comes from. Bytes on the wire are the same
/// either way. (Measured with `weft bench`: at 16 in flight writing through
/// is faster, at 128 batching is three times faster.) Drivers count calls
/// whose results the application has not taken yet: the pool forgets a
/// call as soon as its response is read, which is too early a signal.
pub const BATCH_WRITES_FROM: usize = 32;

/// A transport the pool asked the driver to open; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A call on the pool; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolCallId(pub u64);

/// A version of the resolver's endpoint set. Only equality matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointsVersion(pub u64);

/// What a resolver returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The endpoint addresses.
    pub addrs: Vec<String>,
    /// The version of this set (required for non-constant resolvers).
    pub version: Option<EndpointsVersion>,
}

/// Where a replica is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaState {
    /// Not known to the pool.
    Missing,
    /// No transport: dialing, or waiting to redial.
    Disconnected,
    /// Transport up, handshake in progress.
    Checking,
    /// Ready, no calls in flight.
    Idle,
    /// Ready, calls in flight.
    Active,
    /// Leaving: calls in flight finish, no new ones.
    Draining,
}

/// Something the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a transport to `addr`, then report
    /// [`Pool::handle_dial_ok`] or [`Pool::handle_dial_failed`] for `conn`.
    Dial {
        /// Names the transport in every later call.
        conn: ConnId,
        /// Endpoint address.
        addr: Arc<str>,
    },
    /// Close the transport of `conn` (opened, or still being dialed).
    Close {
        /// Which transport.
        conn: ConnId,
    },
    /// Ask the resolver for endpoints newer than `version`, then report
    /// [`Pool::handle_resolved`] or [`Pool::handle_resolve_failed`].
    Resolve {
        /// The version the pool has.
        version: Option<EndpointsVersion>,
    },
}

/// What the pool reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolEvent {
    /// A call ended. Every call started ends exactly once.
    Done {
        /// Which call.
        id: PoolCallId,
        /// The response bytes or why there are none.
        result: Result<Bytes, CallError>,
    },
}

/// Settings of a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    /// Limits of each connection.
    pub conn: ConnConfig,
    /// Backoff for redials, call retries and resolver retries.
    pub backoff: Backoff,
    /// Seed of the pool's RNG (jitter, balancer choices).
    pub seed: u64,
}

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            conn: ConnConfig::default(),
            backoff: Backoff::default(),
            seed: 0x5eed,
        }
    }
}

#[derive(Debug)]
struct Replica {
    id: ReplicaId,
    addr: Arc<str>,
    state: ReplicaState,
    conn: Option<Link>,
    dialing: Option<ConnId>,
    /// Failed connection attempts since the last handshake.
    attempt: u32,
    /// Calls in flight: id on the connection -> id on the pool.
    calls: IdMap<u64>,
}

/// A replica's open connection.
#[derive(Debug)]
struct Link {
    id: ConnId,
    core: ClientConn,
    /// Whether this connection is in the transmit queue. It lives and dies
    /// with the connection, so a redialed one never inherits it.
    queued: bool,
}

#[derive(Debug)]
struct PoolCall {
    method: MethodKey,
    args: Bytes,
    opts: CallOptions,
    /// Replica slot and id on its connection, while placed.
    placed: Option<(usize, CallId)>,
    /// Set while waiting to be retried.
    retry_at: Option<Instant>,
    attempt: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    CallDeadline(u64),
    CallRetry(u64),
    Redial { slot: usize, replica: ReplicaId },
    Resolve,
}

#[derive(Debug)]
struct ResolverState {
    version: Option<EndpointsVersion>,
    attempt: u32,
}

/// A client over a changing set of replicas.
///
/// Same shape as [`ClientConn`]: getters; inputs (`handle_*`, each taking
/// the time); commands ([`start_call`](Self::start_call),
/// [`cancel`](Self::cancel), [`close`](Self::close)); outputs
/// ([`poll_action`](Self::poll_action), [`poll_transmit`](Self::poll_transmit),
/// [`poll_event`](Self::poll_event), [`poll_timeout`](Self::poll_timeout)).
/// After every input the driver drains actions, transmits and events until
/// only the timeout is left.
///
/// ```
/// use bytes::Bytes;
/// use std::time::Instant;
/// use weft_proto::balance::RoundRobin;
/// use weft_proto::pool::{Action, Pool, PoolConfig, Resolution};
/// use weft_proto::{CallOptions, MethodKey};
///
/// let now = Instant::now();
/// let initial = Resolution { addrs: vec!["tcp://10.0.0.1:80".into()], version: None };
/// let mut pool = Pool::connect(now, PoolConfig::default(), Box::new(RoundRobin::new()), true, initial)?;
/// let Some(Action::Dial { conn, .. }) = pool.poll_action() else { unreachable!() };
/// pool.handle_dial_ok(now, conn);
/// // The call waits: the replica is not ready until its handshake is done.
/// let call = pool.start_call(now, MethodKey::new("weft.Test", "Echo"), Bytes::new(), CallOptions::default());
/// assert_eq!(pool.poll_transmit(), Some(conn)); // the version frame
/// # let _ = call;
/// # Ok::<(), weft_proto::CallError>(())
/// ```
pub struct Pool {
    now: Instant,
    config: PoolConfig,
    rng: Rng,
    balancer: Box<dyn Balancer>,
    closed: bool,
    replicas: Vec<Option<Replica>>,
    free_slots: Vec<usize>,
    by_addr: BTreeMap<Arc<str>, usize>,
    conns: IdMap<usize>,
    next_conn: u64,
    next_replica: u64,
    /// The balancer's view, sorted by replica id.
    ready: Vec<ReadyReplica>,
    calls: IdMap<PoolCall>,
    last_call: u64,
    /// Calls with no replica to go to, oldest first (may hold stale ids).
    waiting: VecDeque<u64>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    resolver: Option<ResolverState>,
    actions: VecDeque<Action>,
    transmits: VecDeque<ConnId>,
    events: VecDeque<PoolEvent>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("replicas", &self.by_addr.len())
            .field("ready", &self.ready.len())
            .field("calls", &self.calls.len())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool over the endpoints a resolver returned first. A constant
    /// resolver with no endpoints is an *unreachable* error; a non-constant
    /// one may start empty, and the pool asks it for updates
    /// ([`Action::Resolve`]).
    pub fn connect(
        now: Instant,
        config: PoolConfig,
        balancer: Box<dyn Balancer>,
        constant: bool,
        initial: Resolution,
    ) -> Result<Pool, CallError> {
        if constant && initial.addrs.is_empty() {
            return Err(CallError::Unreachable("no endpoints available".into()));
        }
        if !constant && initial.version.is_none() {
            return Err(CallError::Unreachable(
                "non-constant resolver returned no version".into(),
            ));
        }
        let mut pool = Pool {
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
            timers: BinaryHeap::new(),
            resolver: None,
            actions: VecDeque::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        };
        pool.reconcile(&initial.addrs);
        if !constant {
            pool.resolver = Some(ResolverState {
                version: initial.version,
                attempt: 0,
            });
            pool.actions.push_back(Action::Resolve {
                version: initial.version,
            });
        }
        pool.check_invariants();
        Ok(pool)
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

    /// Calls started and not yet ended.
    pub fn pending_calls(&self) -> usize {
        self.calls.len()
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    // ---- inputs ----

    /// A dial succeeded: the transport for `conn` is open.
    pub fn handle_dial_ok(&mut self, now: Instant, conn: ConnId) {
        self.advance_time(now);
        let Some(slot) = self.live_dial(conn) else {
            // The replica left (or the pool closed) while dialing.
            self.actions.push_back(Action::Close { conn });
            return;
        };
        let config = self.config.conn;
        let r = self.replica_mut(slot);
        r.dialing = None;
        r.conn = Some(Link {
            id: conn,
            core: ClientConn::new(now, config),
            queued: false,
        });
        r.state = ReplicaState::Checking;
        self.queue_transmit(slot);
        self.check_invariants();
    }

    /// A dial failed; the pool redials after backoff.
    pub fn handle_dial_failed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        self.advance_time(now);
        if let Some(slot) = self.live_dial(conn) {
            tracing::debug!(addr = %self.replica(slot).addr, reason, "dial failed");
            self.conns.remove(&conn.0);
            self.replica_mut(slot).dialing = None;
            self.schedule_redial(slot);
        }
        self.check_invariants();
    }

    /// The buffer to read `conn`'s bytes into; `None` if the pool no longer
    /// has that connection (the driver should close it).
    pub fn read_buf(&mut self, conn: ConnId, min_spare: usize) -> Option<&mut BytesMut> {
        let slot = *self.conns.get(&conn.0)?;
        match &mut self.replicas[slot].as_mut()?.conn {
            Some(l) if l.id == conn => Some(l.core.read_buf(min_spare)),
            _ => None,
        }
    }

    /// Processes bytes appended to [`read_buf`](Self::read_buf).
    pub fn handle_read(&mut self, now: Instant, conn: ConnId) {
        self.advance_time(now);
        if let Some(slot) = self.with_conn(conn, |c| c.handle_read(now)) {
            self.after_conn_input(slot);
        }
    }

    /// Processes bytes read from `conn`.
    pub fn handle_input(&mut self, now: Instant, conn: ConnId, data: &[u8]) {
        self.advance_time(now);
        if let Some(slot) = self.with_conn(conn, |c| c.handle_input(now, data)) {
            self.after_conn_input(slot);
        }
    }

    /// `conn`'s transport failed or ended.
    pub fn handle_transport_closed(&mut self, now: Instant, conn: ConnId, reason: &str) {
        self.advance_time(now);
        if let Some(slot) = self.with_conn(conn, |c| c.handle_transport_closed(now, reason)) {
            self.after_conn_input(slot);
        } else if self.live_dial(conn).is_some() {
            self.handle_dial_failed(now, conn, reason);
        }
    }

    /// The resolver answered an [`Action::Resolve`].
    pub fn handle_resolved(&mut self, now: Instant, res: Resolution) {
        self.advance_time(now);
        let Some(state) = self.resolver.as_mut() else {
            return;
        };
        if res.version.is_none() || res.version == state.version {
            // No news (or a resolver bug): ask again after a pause.
            return self.schedule_resolve();
        }
        state.version = res.version;
        state.attempt = 0;
        self.reconcile(&res.addrs);
        self.actions.push_back(Action::Resolve {
            version: res.version,
        });
        self.check_invariants();
    }

    /// The resolver failed; the pool asks again after backoff.
    pub fn handle_resolve_failed(&mut self, now: Instant, reason: &str) {
        self.advance_time(now);
        if self.resolver.is_some() {
            tracing::warn!(reason, "resolver failed");
            self.schedule_resolve();
        }
    }

    /// Fires timers that are due: call deadlines and retries, redials,
    /// resolver retries, and the deadlines inside each connection.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.advance_time(now);
        for slot in 0..self.replicas.len() {
            let due = self.replicas[slot]
                .as_ref()
                .and_then(|r| r.conn.as_ref())
                .and_then(|l| l.core.next_deadline())
                .is_some_and(|d| d <= self.now);
            if due {
                let now = self.now;
                if let Some(l) = self.replica_mut(slot).conn.as_mut() {
                    l.core.handle_timeout(now);
                }
                self.after_conn_input(slot);
            }
        }
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
        self.calls.insert(
            id,
            PoolCall {
                method,
                args,
                // Owned: kept for retries without copying the metadata.
                opts,
                placed: None,
                retry_at: None,
                attempt: 0,
            },
        );
        if !self.try_place(id) {
            self.wait(id);
        }
        self.check_invariants();
        PoolCallId(id)
    }

    /// Abandons a call. It ends with [`CallError::Cancelled`]; if its request
    /// went out, the server is told. Returns false if it had already ended.
    pub fn cancel(&mut self, now: Instant, id: PoolCallId) -> bool {
        self.advance_time(now);
        let Some(call) = self.calls.get(&id.0) else {
            return false;
        };
        match call.placed {
            Some((slot, cid)) => {
                let now = self.now;
                if let Some(l) = self.replica_mut(slot).conn.as_mut() {
                    l.core.cancel(now, cid);
                }
                self.after_conn_input(slot);
            }
            None => self.finish(id.0, Err(CallError::Cancelled)),
        }
        self.check_invariants();
        true
    }

    /// Closes the pool: every pending call ends with a communication error
    /// saying the connection is closed, every transport is closed, and later
    /// calls fail the same way. Idempotent.
    pub fn close(&mut self, now: Instant) {
        self.advance_time(now);
        if self.closed {
            return;
        }
        self.closed = true;
        self.resolver = None;
        self.timers.clear();
        for slot in 0..self.replicas.len() {
            if self.replicas[slot].is_none() {
                continue;
            }
            let now = self.now;
            if let Some(l) = self.replica_mut(slot).conn.as_mut() {
                l.core.close(now);
            }
            self.after_conn_input(slot);
            if self.replicas[slot].is_some() {
                self.remove_replica(slot);
            }
        }
        let mut waiting: Vec<u64> = self.calls.keys().copied().collect();
        waiting.sort_unstable();
        for id in waiting {
            self.finish(id, Err(CallError::Connection(ConnError::Closed)));
        }
        self.waiting.clear();
        self.check_invariants();
    }

    // ---- outputs ----

    /// The next thing the driver must do with transports or the resolver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// A connection with bytes to write: write from
    /// [`transmit`](Self::transmit), then [`advance_transmit`](Self::advance_transmit).
    pub fn poll_transmit(&mut self) -> Option<ConnId> {
        while let Some(conn) = self.transmits.pop_front() {
            let slot = self.conns.get(&conn.0).copied();
            let link = slot
                .and_then(|s| self.replicas[s].as_mut())
                .and_then(|r| r.conn.as_mut())
                .filter(|l| l.id == conn);
            if let Some(l) = link {
                l.queued = false;
                return Some(conn);
            }
        }
        None
    }

    /// Bytes waiting to be written on `conn`.
    pub fn transmit(&self, conn: ConnId) -> Option<&Transmit> {
        let slot = *self.conns.get(&conn.0)?;
        match &self.replicas[slot].as_ref()?.conn {
            Some(l) if l.id == conn => Some(l.core.transmit()),
            _ => None,
        }
    }

    /// Reports that `n` bytes of `conn`'s transmit queue were written.
    pub fn advance_transmit(&mut self, conn: ConnId, n: usize) {
        self.with_conn(conn, |c| c.advance_transmit(n));
    }

    /// Moves all of `conn`'s pending bytes into `out` (in-memory transports).
    pub fn drain_transmit(&mut self, conn: ConnId, out: &mut Vec<u8>) {
        self.with_conn(conn, |c| c.drain_transmit(out));
    }

    /// The next call result.
    pub fn poll_event(&mut self) -> Option<PoolEvent> {
        self.events.pop_front()
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due: now while
    /// actions, transmits or events wait, else the earliest timer.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if !self.actions.is_empty() || !self.transmits.is_empty() || !self.events.is_empty() {
            return Some(self.now);
        }
        let conns = self
            .replicas
            .iter()
            .flatten()
            .filter_map(|r| r.conn.as_ref()?.core.next_deadline());
        let timers = self.timers.peek().map(|Reverse((at, _))| *at);
        conns.chain(timers).min()
    }

    // ---- replicas ----

    fn replica(&self, slot: usize) -> &Replica {
        self.replicas[slot].as_ref().expect("live slot")
    }

    fn replica_mut(&mut self, slot: usize) -> &mut Replica {
        self.replicas[slot].as_mut().expect("live slot")
    }

    /// The slot whose dial `conn` is, if that dial is still wanted.
    fn live_dial(&self, conn: ConnId) -> Option<usize> {
        let slot = *self.conns.get(&conn.0)?;
        (self.replicas[slot].as_ref()?.dialing == Some(conn)).then_some(slot)
    }

    /// Runs `f` on `conn`'s connection core; returns its slot.
    fn with_conn(&mut self, conn: ConnId, f: impl FnOnce(&mut ClientConn)) -> Option<usize> {
        let slot = *self.conns.get(&conn.0)?;
        match &mut self.replicas[slot].as_mut()?.conn {
            Some(l) if l.id == conn => {
                f(&mut l.core);
                Some(slot)
            }
            _ => None,
        }
    }

    /// Brings the replica set in line with the resolver's addresses.
    fn reconcile(&mut self, addrs: &[String]) {
        let keep: BTreeSet<&str> = addrs.iter().map(String::as_str).collect();
        for addr in &keep {
            match self.by_addr.get(*addr) {
                Some(&slot) if self.replica(slot).state == ReplicaState::Draining => {
                    // Back before it closed: reuse its connection.
                    self.replica_mut(slot).state = ReplicaState::Active;
                    self.add_ready(slot);
                }
                Some(_) => {}
                None => self.add_replica(addr),
            }
        }
        let gone: Vec<usize> = self
            .by_addr
            .iter()
            .filter(|(a, _)| !keep.contains(&***a))
            .map(|(_, &s)| s)
            .collect();
        for slot in gone {
            match self.replica(slot).state {
                ReplicaState::Active => {
                    self.replica_mut(slot).state = ReplicaState::Draining;
                    self.remove_ready(slot);
                }
                ReplicaState::Draining => {}
                _ => self.remove_replica(slot),
            }
        }
        self.place_waiting();
    }

    fn add_replica(&mut self, addr: &str) {
        let addr: Arc<str> = addr.into();
        self.next_replica += 1;
        let r = Replica {
            id: ReplicaId(self.next_replica),
            addr: addr.clone(),
            state: ReplicaState::Disconnected,
            conn: None,
            dialing: None,
            attempt: 0,
            calls: IdMap::default(),
        };
        let slot = match self.free_slots.pop() {
            Some(s) => {
                self.replicas[s] = Some(r);
                s
            }
            None => {
                self.replicas.push(Some(r));
                self.replicas.len() - 1
            }
        };
        self.by_addr.insert(addr, slot);
        self.dial(slot);
    }

    /// Forgets a replica: it becomes missing. Its transport is closed.
    fn remove_replica(&mut self, slot: usize) {
        self.remove_ready(slot);
        let r = self.replicas[slot].take().expect("live slot");
        debug_assert!(r.calls.is_empty(), "removing a replica with calls");
        if let Some(Link { id: conn, .. }) = r.conn {
            self.conns.remove(&conn.0);
            self.actions.push_back(Action::Close { conn });
        }
        if let Some(conn) = r.dialing {
            // The dial's outcome finds no replica and is closed then.
            self.conns.remove(&conn.0);
        }
        self.by_addr.remove(&r.addr);
        self.free_slots.push(slot);
    }

    fn dial(&mut self, slot: usize) {
        self.next_conn += 1;
        let conn = ConnId(self.next_conn);
        self.conns.insert(conn.0, slot);
        let r = self.replica_mut(slot);
        r.dialing = Some(conn);
        let addr = r.addr.clone();
        self.actions.push_back(Action::Dial { conn, addr });
    }

    fn schedule_redial(&mut self, slot: usize) {
        let attempt = self.replica(slot).attempt;
        let delay = self.config.backoff.delay(attempt, &mut self.rng);
        let r = self.replica_mut(slot);
        r.attempt = r.attempt.saturating_add(1);
        let replica = r.id;
        self.push_timer(self.now + delay, Timer::Redial { slot, replica });
    }

    fn schedule_resolve(&mut self) {
        let Some(state) = self.resolver.as_mut() else {
            return;
        };
        let attempt = state.attempt;
        state.attempt = state.attempt.saturating_add(1);
        let delay = self.config.backoff.delay(attempt, &mut self.rng);
        self.push_timer(self.now + delay, Timer::Resolve);
    }

    fn add_ready(&mut self, slot: usize) {
        let r = self.replica(slot);
        let entry = ReadyReplica {
            id: r.id,
            addr_hash: addr_hash(&r.addr),
            addr: r.addr.clone(),
            in_flight: r.calls.len(),
            slot,
        };
        let at = self.ready.partition_point(|e| e.id < entry.id);
        self.ready.insert(at, entry);
    }

    fn remove_ready(&mut self, slot: usize) {
        let id = self.replica(slot).id;
        if let Ok(i) = self.ready.binary_search_by_key(&id, |e| e.id) {
            self.ready.remove(i);
        }
    }

    fn set_ready_in_flight(&mut self, slot: usize) {
        let r = self.replica(slot);
        let (id, n) = (r.id, r.calls.len());
        if let Ok(i) = self.ready.binary_search_by_key(&id, |e| e.id) {
            self.ready[i].in_flight = n;
        }
    }

    fn queue_transmit(&mut self, slot: usize) {
        if let Some(l) = self.replica_mut(slot).conn.as_mut()
            && !l.queued
            && !l.core.transmit().is_empty()
        {
            l.queued = true;
            let conn = l.id;
            self.transmits.push_back(conn);
        }
    }

    /// Handles everything a connection core reported after an input.
    fn after_conn_input(&mut self, slot: usize) {
        loop {
            let Some(r) = self.replicas[slot].as_mut() else {
                return;
            };
            let Some(event) = r.conn.as_mut().and_then(|l| l.core.poll_event()) else {
                break;
            };
            match event {
                ClientEvent::Connected { .. } => {
                    r.state = ReplicaState::Idle;
                    r.attempt = 0;
                    self.add_ready(slot);
                    self.place_waiting();
                }
                ClientEvent::Done { id, result } => {
                    let Some(call) = r.calls.remove(&id.0) else {
                        continue;
                    };
                    if r.calls.is_empty() {
                        match r.state {
                            ReplicaState::Active => r.state = ReplicaState::Idle,
                            ReplicaState::Draining => self.remove_replica(slot),
                            _ => {}
                        }
                    }
                    if self.replicas[slot].is_some() {
                        self.set_ready_in_flight(slot);
                    }
                    self.call_ended(call, result);
                }
                ClientEvent::Failed(err) => self.conn_failed(slot, &err),
            }
        }
        self.queue_transmit(slot);
        self.check_invariants();
    }

    fn conn_failed(&mut self, slot: usize, err: &ConnError) {
        let closed = self.closed;
        let r = self.replica_mut(slot);
        tracing::debug!(addr = %r.addr, error = %err, state = ?r.state, "replica connection failed");
        let progressed = matches!(r.state, ReplicaState::Idle | ReplicaState::Active);
        if closed || r.state == ReplicaState::Draining {
            return self.remove_replica(slot);
        }
        let conn = r.conn.take().expect("failed connection exists").id;
        r.state = ReplicaState::Disconnected;
        if progressed {
            r.attempt = 0;
        }
        self.conns.remove(&conn.0);
        self.actions.push_back(Action::Close { conn });
        self.remove_ready(slot);
        if progressed {
            // It worked until now: try again at once, as Go resets its retry
            // loop after progress.
            self.dial(slot);
        } else {
            self.schedule_redial(slot);
        }
    }

    // ---- calls ----

    /// Places call `id` on a replica the balancer picks. False if none.
    fn try_place(&mut self, id: u64) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        let call = self.calls.get(&id).expect("live call");
        let Some(i) = self.balancer.pick(&self.ready, &call.opts, &mut self.rng) else {
            return false;
        };
        let Some(slot) = self.ready.get(i).map(|e| e.slot) else {
            return false;
        };
        let now = self.now;
        let r = self.replicas[slot].as_mut().expect("ready replica");
        let conn = &mut r
            .conn
            .as_mut()
            .expect("ready replica has a connection")
            .core;
        let cid = conn.start_call(now, call.method, call.args.clone(), &call.opts);
        r.calls.insert(cid.0, id);
        if r.state == ReplicaState::Idle {
            r.state = ReplicaState::Active;
        }
        self.ready[i].in_flight += 1;
        let call = self.calls.get_mut(&id).expect("live call");
        call.placed = Some((slot, cid));
        call.retry_at = None;
        self.after_conn_input(slot);
        true
    }

    fn wait(&mut self, id: u64) {
        if let Some(d) = self.calls[&id].opts.deadline {
            self.push_timer(d, Timer::CallDeadline(id));
        }
        self.waiting.push_back(id);
    }

    /// Offers every waiting call to the balancer once.
    fn place_waiting(&mut self) {
        for _ in 0..self.waiting.len() {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            let waiting = self
                .calls
                .get(&id)
                .is_some_and(|c| c.placed.is_none() && c.retry_at.is_none());
            if waiting && !self.try_place(id) {
                self.waiting.push_back(id);
            }
        }
    }

    /// A placed call ended on its connection: finish it, or retry it.
    fn call_ended(&mut self, id: u64, result: Result<Bytes, CallError>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.placed = None;
        let retryable = matches!(&result, Err(e) if e.is_communication() || e.is_unreachable());
        if !(retryable && call.opts.retry && !self.closed) {
            return self.finish(id, result);
        }
        let attempt = call.attempt;
        call.attempt = call.attempt.saturating_add(1);
        let deadline = call.opts.deadline;
        let at = self.now + self.config.backoff.delay(attempt, &mut self.rng);
        if deadline.is_some_and(|d| d <= at) {
            // The retry could not start in time.
            let when = deadline.expect("checked");
            self.calls.get_mut(&id).expect("live call").retry_at = Some(at);
            self.push_timer(when.max(self.now), Timer::CallDeadline(id));
            return;
        }
        self.calls.get_mut(&id).expect("live call").retry_at = Some(at);
        self.push_timer(at, Timer::CallRetry(id));
    }

    fn finish(&mut self, id: u64, result: Result<Bytes, CallError>) {
        if self.calls.remove(&id).is_some() {
            self.events.push_back(PoolEvent::Done {
                id: PoolCallId(id),
                result,
            });
        }
    }

    // ---- time ----

    fn push_timer(&mut self, at: Instant, timer: Timer) {
        self.timers.push(Reverse((at, timer)));
    }

    fn advance_time(&mut self, now: Instant) {
        self.now = self.now.max(now);
        while let Some(&Reverse((at, timer))) = self.timers.peek() {
            if at > self.now {
                break;
            }
            self.timers.pop();
            self.fire(timer);
        }
    }

    fn fire(&mut self, timer: Timer) {
        match timer {
            Timer::CallDeadline(id) => {
                if self.calls.get(&id).is_some_and(|c| c.placed.is_none()) {
                    self.finish(id, Err(CallError::DeadlineExceeded));
                }
            }
            Timer::CallRetry(id) => {
                let due = self
                    .calls
                    .get(&id)
                    .is_some_and(|c| c.placed.is_none() && c.retry_at.is_some());
                if due {
                    self.calls.get_mut(&id).expect("live call").retry_at = None;
                    if !self.try_place(id) {
                        self.wait(id);
                    }
                }
            }
            Timer::Redial { slot, replica } => {
                let due = self
                    .replicas
                    .get(slot)
                    .and_then(Option::as_ref)
                    .is_some_and(|r| {
                        r.id == replica
                            && r.state == ReplicaState::Disconnected
                            && r.dialing.is_none()
                    });
                if due {
                    self.dial(slot);
                }
            }
            Timer::Resolve => {
                if let Some(state) = &self.resolver {
                    let version = state.version;
                    self.actions.push_back(Action::Resolve { version });
                }
            }
        }
    }

    // ---- invariants ----

    /// Checks Service Weaver's replica invariants; panics if one fails.
    /// Runs after every transition in debug builds.
    pub fn assert_invariants(&self) {
        use ReplicaState::*;
        let mut live = 0;
        for (slot, r) in self.replicas.iter().enumerate() {
            let Some(r) = r else { continue };
            live += 1;
            let s = r.state;
            assert_ne!(s, Missing, "{}: a missing replica is still stored", r.addr);
            assert_eq!(
                self.by_addr.get(&r.addr),
                Some(&slot),
                "{}: table entry",
                r.addr
            );
            assert_eq!(
                r.conn.is_some(),
                matches!(s, Checking | Idle | Active | Draining),
                "{}: {s:?} with connection {}",
                r.addr,
                r.conn.is_some()
            );
            let in_balancer = self.ready.iter().any(|e| e.id == r.id);
            assert_eq!(
                in_balancer,
                matches!(s, Idle | Active),
                "{}: {s:?} balancer",
                r.addr
            );
            assert_eq!(
                !r.calls.is_empty(),
                matches!(s, Active | Draining),
                "{}: {s:?} with {} calls",
                r.addr,
                r.calls.len()
            );
            assert!(
                r.dialing.is_none() || s == Disconnected,
                "{}: dialing in {s:?}",
                r.addr
            );
            if let Some(e) = self.ready.iter().find(|e| e.id == r.id) {
                assert_eq!(
                    e.in_flight,
                    r.calls.len(),
                    "{}: balancer's call count",
                    r.addr
                );
            }
        }
        assert_eq!(live, self.by_addr.len(), "table size");
        assert!(
            self.ready.windows(2).all(|w| w[0].id < w[1].id),
            "ready order"
        );
        for (id, c) in &self.calls {
            if let Some((slot, cid)) = c.placed {
                let r = self.replicas[slot]
                    .as_ref()
                    .expect("placed on a live replica");
                assert_eq!(r.calls.get(&cid.0), Some(id), "call {id} placement");
            }
        }
    }

    fn check_invariants(&self) {
        #[cfg(debug_assertions)]
        self.assert_invariants();
    }
}
