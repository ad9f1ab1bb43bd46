//! The replica table: one entry per endpoint address, and its lifecycle.

use super::router::{Router, Timer};
use super::{Action, ConnId, PoolCallId, ReplicaState};
use crate::balance::{ReadyReplica, ReplicaId, addr_hash};
use crate::call::CallError;
use crate::error::ConnError;
use crate::idmap::IdMap;
use crate::timer::later;
use bytes::Bytes;
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A connection sent away (goaway) after living this long was a working
/// one: the replica's backoff starts over.
pub(super) const SETTLED: Duration = Duration::from_millis(500);

/// How far goaways alone grow a replica's redial backoff: ten steps, about
/// 140 ms with Go's 10 ms x 1.3.
pub(super) const GOAWAY_MAX_ATTEMPT: u32 = 10;

#[derive(Debug)]
pub(super) struct Replica {
    pub(super) id: ReplicaId,
    pub(super) addr: Arc<str>,
    pub(super) state: ReplicaState,
    /// The open connection (checking, ready or draining).
    pub(super) conn: Option<ConnId>,
    pub(super) dialing: Option<ConnId>,
    /// Failed connection attempts since a call last succeeded here.
    pub(super) attempt: u32,
    /// Why the last connection attempt failed (dial, handshake, or a
    /// connection that dropped before any call succeeded on it); cleared
    /// by a handshake.
    pub(super) last_error: Option<String>,
    /// A call has succeeded on the current connection: if it drops, the
    /// replica is redialed at once and its backoff starts over.
    pub(super) proven: bool,
    /// When the current connection finished its handshake.
    pub(super) ready_at: Option<Instant>,
    /// The current connection's server said goaway: it carries no new
    /// call, and once drained the replica is redialed (or forgotten, if
    /// `removed`).
    pub(super) going_away: bool,
    /// The resolver no longer names it (it is draining to be forgotten).
    pub(super) removed: bool,
    /// The current connection reported requests waiting for its transport
    /// ([`ConnEvent::Congested`](super::ConnEvent::Congested)): while set,
    /// the replica is out of the balancer even when idle or active.
    pub(super) congested: bool,
    /// Request bytes (frame, header, arguments) of calls placed here since
    /// the link last reported its congestion: past the backlog bound the
    /// router stops placing here and asks ([`Command::ReportCongestion`](super::Command::ReportCongestion)),
    /// since its commands reach the link later than it sends them.
    pub(super) placed_bytes: usize,
    /// Calls placed here whose link has not reported their end yet,
    /// including ones the router already finished (cancelled, expired).
    pub(super) calls: IdMap<()>,
}

impl Router {
    pub(super) fn replica(&self, slot: usize) -> &Replica {
        self.replicas[slot].as_ref().expect("live slot")
    }

    pub(super) fn replica_mut(&mut self, slot: usize) -> &mut Replica {
        self.replicas[slot].as_mut().expect("live slot")
    }

    /// The slot whose dial `conn` is, if that dial is still wanted.
    pub(super) fn live_dial(&self, conn: ConnId) -> Option<usize> {
        let slot = *self.conns.get(&conn.0)?;
        (self.replicas[slot].as_ref()?.dialing == Some(conn)).then_some(slot)
    }

    /// The slot whose open connection `conn` is.
    pub(super) fn open_conn(&self, conn: ConnId) -> Option<usize> {
        let slot = *self.conns.get(&conn.0)?;
        (self.replicas[slot].as_ref()?.conn == Some(conn)).then_some(slot)
    }

    /// Brings the replica set in line with the resolver's addresses.
    pub(super) fn reconcile(&mut self, addrs: &[String]) {
        let keep: BTreeSet<&str> = addrs.iter().map(String::as_str).collect();
        for addr in &keep {
            match self.by_addr.get(*addr) {
                Some(&slot) if self.replica(slot).state == ReplicaState::Draining => {
                    let r = self.replica_mut(slot);
                    r.removed = false;
                    // Back before it closed: reuse its connection, unless
                    // its server said goaway (then it is redialed once
                    // drained).
                    if !r.going_away {
                        r.state = ReplicaState::Active;
                        if !r.congested {
                            self.add_ready(slot);
                        }
                    }
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
                    let r = self.replica_mut(slot);
                    tracing::debug!(addr = %r.addr, calls = r.calls.len(), "replica removed by the resolver; draining");
                    r.state = ReplicaState::Draining;
                    r.removed = true;
                    self.remove_ready(slot);
                }
                // Gone from the resolver too: forgotten once drained.
                ReplicaState::Draining => self.replica_mut(slot).removed = true,
                _ => self.remove_replica(slot),
            }
        }
        self.place_waiting();
        self.fail_fast_waiting();
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
            last_error: None,
            proven: false,
            ready_at: None,
            going_away: false,
            removed: false,
            congested: false,
            placed_bytes: 0,
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
    pub(super) fn remove_replica(&mut self, slot: usize) {
        self.remove_ready(slot);
        let r = self.replicas[slot].take().expect("live slot");
        debug_assert!(r.calls.is_empty(), "removing a replica with calls");
        if let Some(conn) = r.conn {
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
        let at = later(self.now, self.config.connect_timeout);
        self.push_timer(at, Timer::ConnectTimeout { slot, conn });
    }

    /// A dial or handshake took longer than the connect timeout: the
    /// attempt failed.
    pub(super) fn connect_timed_out(&mut self, slot: usize, conn: ConnId) {
        let Some(r) = self.replicas.get(slot).and_then(Option::as_ref) else {
            return;
        };
        let timeout = self.config.connect_timeout;
        if r.dialing == Some(conn) {
            tracing::debug!(addr = %r.addr, ?timeout, "dial timed out");
            self.conns.remove(&conn.0);
            // The driver abandons the dial; if it completes anyway, the
            // router no longer knows it and the transport is closed.
            self.actions.push_back(Action::Close { conn });
            let r = self.replica_mut(slot);
            r.dialing = None;
            r.last_error = Some(format!("connect timed out after {timeout:?}"));
            self.schedule_redial(slot);
            self.fail_fast_waiting();
        } else if r.conn == Some(conn) && r.state == ReplicaState::Checking {
            let reason = format!("no version handshake within {timeout:?}");
            self.conn_failed(slot, &ConnError::Transport(reason));
        }
    }

    pub(super) fn schedule_redial(&mut self, slot: usize) {
        let attempt = self.replica(slot).attempt;
        let delay = self.config.backoff.delay(attempt, &mut self.rng);
        let r = self.replica_mut(slot);
        r.attempt = r.attempt.saturating_add(1);
        let replica = r.id;
        self.push_timer(later(self.now, delay), Timer::Redial { slot, replica });
    }

    pub(super) fn redial_due(&mut self, slot: usize, replica: ReplicaId) {
        let due = self
            .replicas
            .get(slot)
            .and_then(Option::as_ref)
            .is_some_and(|r| {
                r.id == replica && r.state == ReplicaState::Disconnected && r.dialing.is_none()
            });
        if due {
            self.dial(slot);
        }
    }

    pub(super) fn add_ready(&mut self, slot: usize) {
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

    pub(super) fn remove_ready(&mut self, slot: usize) {
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

    /// The replica's handshake finished.
    pub(super) fn connected(&mut self, slot: usize) {
        let now = self.now;
        let r = self.replica_mut(slot);
        if r.state != ReplicaState::Checking {
            return;
        }
        tracing::debug!(addr = %r.addr, "replica ready: handshake done");
        r.state = ReplicaState::Idle;
        r.last_error = None;
        r.proven = false;
        r.ready_at = Some(now);
        r.congested = false;
        r.placed_bytes = 0;
        self.add_ready(slot);
        self.place_waiting();
    }

    /// The replica's connection reported whether it is congested.
    pub(super) fn set_congested(&mut self, slot: usize, congested: bool) {
        let r = self.replica_mut(slot);
        r.placed_bytes = 0;
        if r.congested == congested {
            return;
        }
        r.congested = congested;
        let placeable = matches!(r.state, ReplicaState::Idle | ReplicaState::Active);
        tracing::debug!(addr = %r.addr, congested, "replica congestion");
        if !placeable {
            return;
        }
        if congested {
            self.remove_ready(slot);
        } else {
            self.add_ready(slot);
            self.place_waiting();
        }
    }

    /// A call placed on the replica's connection ended there.
    pub(super) fn link_call_ended(
        &mut self,
        slot: usize,
        conn: ConnId,
        call: PoolCallId,
        result: Result<Bytes, CallError>,
    ) {
        let r = self.replica_mut(slot);
        if r.calls.remove(&call.0).is_none() {
            return;
        }
        if matches!(&result, Ok(_) | Err(CallError::Remote(_))) {
            // The server answered: the connection works.
            r.proven = true;
            r.attempt = 0;
        }
        if r.calls.is_empty() {
            match r.state {
                ReplicaState::Active => r.state = ReplicaState::Idle,
                ReplicaState::Draining if !r.removed => self.redial_after_goaway(slot),
                ReplicaState::Draining => self.remove_replica(slot),
                _ => {}
            }
        }
        if self.replicas[slot].is_some() {
            self.set_ready_in_flight(slot);
        }
        // Only if the call is still the router's and still placed here: a
        // cancelled or expired call was finished already.
        let placed_here = self
            .calls
            .get(&call.0)
            .is_some_and(|c| c.placed == Some((slot, conn)));
        if placed_here {
            match result {
                // Never run: it goes elsewhere, whatever its retry option.
                Err(CallError::Unprocessed(_)) if !self.closed => self.replace(call.0),
                // Never sent: its connection has failed (the link reports
                // that next), so it must not be placed there again.
                Err(CallError::NotSent(_)) if !self.closed => {
                    if self.replicas[slot].is_some() {
                        self.remove_ready(slot);
                    }
                    self.replace(call.0);
                }
                result => self.call_ended(call.0, result),
            }
        }
    }

    /// The replica's server said goaway: it leaves the balancer at once;
    /// its calls in flight finish (those it did not run come back as
    /// unprocessed and are placed again); then it is redialed.
    pub(super) fn going_away(&mut self, slot: usize, reason: &str) {
        let r = self.replica_mut(slot);
        tracing::debug!(addr = %r.addr, reason, calls = r.calls.len(), "replica going away");
        match r.state {
            ReplicaState::Idle | ReplicaState::Active => {}
            // Leaving for the resolver: its connection must not come back
            // if the resolver names it again.
            ReplicaState::Draining => {
                r.going_away = true;
                return;
            }
            // Not ready yet: a goaway cannot come before the handshake.
            _ => return,
        }
        r.going_away = true;
        if r.calls.is_empty() {
            self.redial_after_goaway(slot);
        } else {
            r.state = ReplicaState::Draining;
            self.remove_ready(slot);
        }
    }

    /// A replica whose server said goaway has drained: its connection is
    /// closed and a new one dialed after the first backoff step. Not a
    /// failure: it does not count towards fail-fast, so calls wait for it
    /// (or go to others), and after a connection that served a call or
    /// lived [`SETTLED`] it does not grow the backoff (a server's idle
    /// timeout sends a quiet client's connections away over and over;
    /// escalating made the first call after a quiet spell wait up to the
    /// backoff's cap). One sent away sooner does, up to
    /// [`GOAWAY_MAX_ATTEMPT`] steps, so a server that sends every
    /// connection away at once is not redialed in a tight loop, nor a
    /// replica behind a short idle timeout left seconds from its next
    /// dial.
    fn redial_after_goaway(&mut self, slot: usize) {
        self.remove_ready(slot);
        let now = self.now;
        let r = self.replica_mut(slot);
        let lived = r
            .ready_at
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
        if r.proven || lived >= SETTLED {
            r.attempt = 0;
        } else {
            r.attempt = r.attempt.min(GOAWAY_MAX_ATTEMPT);
        }
        let conn = r.conn.take().expect("open connection");
        r.state = ReplicaState::Disconnected;
        r.going_away = false;
        r.removed = false;
        r.proven = false;
        r.last_error = None;
        self.conns.remove(&conn.0);
        self.actions.push_back(Action::Close { conn });
        self.schedule_redial(slot);
    }

    /// The replica's connection failed. Calls the router placed on it that
    /// its link has not ended (commands still in transit) end with the same
    /// error.
    pub(super) fn conn_failed(&mut self, slot: usize, err: &ConnError) {
        let conn = self.replica(slot).conn.expect("open connection");
        let going_away = self.replica(slot).going_away;
        let mut stranded: Vec<u64> = self
            .replica_mut(slot)
            .calls
            .drain()
            .map(|(id, _)| id)
            .collect();
        stranded.sort_unstable();
        for id in stranded {
            let placed_here = self
                .calls
                .get(&id)
                .is_some_and(|c| c.placed == Some((slot, conn)));
            if !placed_here {
                continue;
            }
            // The link ends every call it knows before it fails, so these
            // never reached it and were never sent. After a goaway the
            // server closing is expected, and they go elsewhere.
            if going_away && !self.closed {
                self.replace(id);
            } else {
                self.call_ended(id, Err(CallError::Connection(err.clone())));
            }
        }
        let closed = self.closed;
        let r = self.replica_mut(slot);
        if matches!(err, ConnError::Peer(_)) {
            // The server broke the protocol: worth an operator's attention.
            tracing::warn!(addr = %r.addr, error = %err, "replica connection failed: protocol error from the server");
        } else {
            tracing::debug!(addr = %r.addr, error = %err, state = ?r.state, "replica connection failed");
        }
        // Only a connection a call succeeded on counts as progress: one that
        // handshakes and drops backs off like a failed dial.
        let progressed = r.proven;
        if going_away && !closed && !r.removed {
            return self.redial_after_goaway(slot);
        }
        if closed || r.state == ReplicaState::Draining {
            return self.remove_replica(slot);
        }
        r.conn = None;
        r.state = ReplicaState::Disconnected;
        r.proven = false;
        if !progressed {
            r.last_error = Some(err.to_string());
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
            self.fail_fast_waiting();
        }
    }

    /// Why no call can be placed now and none should wait: the resolver
    /// names no endpoint, or every one it names failed its last connection
    /// attempt and none is connecting for the first time. `None` while some
    /// replica may still become ready.
    pub(super) fn unreachable(&self) -> Option<String> {
        let mut failures = Vec::new();
        for (addr, &slot) in &self.by_addr {
            let r = self.replica(slot);
            match (r.state, &r.last_error) {
                // Its server is restarting: it will be back.
                (ReplicaState::Draining, _) if r.going_away && !r.removed => return None,
                (ReplicaState::Draining, _) => {}
                (ReplicaState::Disconnected, Some(e)) => failures.push(format!("{addr}: {e}")),
                _ => return None,
            }
        }
        if failures.is_empty() {
            failures.push("the resolver names no endpoints".into());
        }
        failures.extend(self.resolver_failure());
        Some(failures.join("; "))
    }

    /// The resolver's last failure, if it has not answered since: why the
    /// set may be out of date.
    fn resolver_failure(&self) -> Option<String> {
        let why = self.resolver.as_ref()?.failed.as_deref()?;
        Some(format!("resolver failed: {why}"))
    }

    /// The last connection errors of the replicas that have one, for a
    /// call whose deadline passed while it waited.
    pub(super) fn last_errors(&self) -> Option<String> {
        let errors: Vec<String> = self
            .by_addr
            .iter()
            .filter_map(|(addr, &slot)| {
                let e = self.replica(slot).last_error.as_ref()?;
                Some(format!("{addr}: {e}"))
            })
            .chain(self.resolver_failure())
            .collect();
        (!errors.is_empty()).then(|| errors.join("; "))
    }
}
