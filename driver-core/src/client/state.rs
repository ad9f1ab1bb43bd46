//! What the client's main lock guards, and the work it hands out.

use super::{ConnCell, Runtime};
use crate::observe::{ClientMethods, MethodMetrics, ReplicaGauges, call_ended, client_method};
use bytes::Bytes;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::hash::BuildHasherDefault;
use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;
use tracing::Span;
use weft_proto::{CallError, IdHasher, MethodKey};

/// Keyed by ids the router hands out: a fixed, fast hash.
pub(super) type ById<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Work collected under a lock, carried out after it is released.
pub(super) type WorkList<R> = SmallVec<[Work<R>; 8]>;
use weft_proto::{
    Action, Command, ConnId, EndpointsVersion, PoolCallId, PoolEvent, Readiness, Router,
    write_batch_at,
};

/// A call's result, waiting for its caller. Kept to these two fields:
/// slots move in and out of a hash map on every call.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) result: Option<Result<Bytes, CallError>>,
    pub(super) waker: Option<Waker>,
}

/// What a call's metrics and span need when it ends. Kept apart from the
/// slots, and only for calls a recorder or subscriber observes, so that a
/// client nothing observes moves no more bytes per call than before it
/// had metrics.
pub(super) struct Observed {
    started: Instant,
    /// Index of the method's handles in [`State::method_list`]
    /// ([`NO_METRICS`] when nothing records them).
    method: u32,
    /// The recorded `weft.call` span and the requests sent for the call so
    /// far (more than one with retries or goaway).
    span: Option<Span>,
    attempts: u32,
}

impl Observed {
    fn end(&self, methods: &[MethodMetrics], now: Instant, result: &Result<Bytes, CallError>) {
        if let Some(metrics) = methods.get(self.method as usize)
            && metrics.is_live()
        {
            let outcome = match result {
                Ok(b) => Ok(b.len()),
                Err(e) => Err(e.kind()),
            };
            metrics.ended(now.saturating_duration_since(self.started), outcome);
        }
        if let Some(span) = &self.span {
            call_ended(span, result);
        }
    }
}

/// Something to do once the router's lock is released.
pub(super) enum Work<R: Runtime> {
    Dial(ConnId, Option<R::Endpoint>),
    Resolve(Option<EndpointsVersion>),
    /// Apply a connection's queued commands; a write of fewer frames than
    /// the number given is left to its loop, which batches it with others
    /// (see [`weft_proto::write_batch_at`]).
    Conn(Arc<ConnCell<R::Stream>>, usize),
    Close(Arc<ConnCell<R::Stream>>),
    Wake(Waker),
    WakeTimer,
}

/// A slot's method index when the client records no metrics.
pub(super) const NO_METRICS: u32 = u32::MAX;

pub(super) struct State<R: Runtime> {
    pub(super) router: Router,
    /// Calls whose results the application has not collected.
    pub(super) slots: ById<PoolCallId, Slot>,
    /// Calls still running that a recorder or subscriber observes.
    observed: ById<PoolCallId, Observed>,
    pub(super) conns: ById<ConnId, Arc<ConnCell<R::Stream>>>,
    /// The resolver's latest endpoints, by address.
    pub(super) endpoints: HashMap<Arc<str>, R::Endpoint>,
    /// When the timer is set to wake; `None` while it waits for news.
    pub(super) timer_armed: Option<Instant>,
    /// Who waits for the router to leave [`Readiness::Connecting`] or
    /// [`Readiness::Congested`].
    pub(super) ready_wakers: Vec<Waker>,
    /// Each connection's replica address, for call spans.
    pub(super) conn_addrs: ById<ConnId, Arc<str>>,
    /// Calls whose span a subscriber records: only then are sends traced.
    pub(super) traced: usize,
    /// Where each method's handles are in `method_list`.
    pub(super) methods: ClientMethods,
    pub(super) method_list: Vec<MethodMetrics>,
    /// The last method looked up: most clients call one method in a row.
    last_method: Option<(MethodKey, u32)>,
    /// A metrics recorder was installed when the client was made; without
    /// one, calls skip the per-method bookkeeping.
    pub(super) metrics_live: bool,
    pub(super) replica_gauges: ReplicaGauges,
    /// An input may have changed some replica's state (kept only while
    /// metrics are live).
    pub(super) replicas_moved: bool,
}

impl<R: Runtime> State<R> {
    pub(super) fn new(router: Router, endpoints: HashMap<Arc<str>, R::Endpoint>) -> Self {
        State {
            router,
            slots: ById::default(),
            observed: ById::default(),
            conns: ById::default(),
            endpoints,
            timer_armed: None,
            ready_wakers: Vec::new(),
            conn_addrs: ById::default(),
            traced: 0,
            methods: ClientMethods::default(),
            method_list: Vec::new(),
            last_method: None,
            metrics_live: crate::observe::recorder_installed(),
            replica_gauges: ReplicaGauges::new(),
            replicas_moved: true,
        }
    }

    /// The metric handles of `key`, registered on its first call, and
    /// their index.
    pub(super) fn method(&mut self, key: &MethodKey, name: Option<&str>) -> (u32, &MethodMetrics) {
        let i = match self.last_method {
            Some((k, i)) if k == *key => i,
            _ => {
                let list = &mut self.method_list;
                let i = *self.methods.entry(*key).or_insert_with(|| {
                    list.push(client_method(key, name));
                    (list.len() - 1) as u32
                });
                self.last_method = Some((*key, i));
                i
            }
        };
        (i, &self.method_list[i as usize])
    }

    /// Starts observing call `id` if a recorder or subscriber wants it:
    /// `method` is its metric handles' index ([`NO_METRICS`] for none),
    /// `span` its recorded span.
    #[inline]
    pub(super) fn observe(
        &mut self,
        id: PoolCallId,
        now: Instant,
        method: u32,
        span: Option<Span>,
    ) {
        if method != NO_METRICS || span.is_some() {
            self.start_observing(id, now, method, span);
        }
    }

    #[inline(never)]
    fn start_observing(&mut self, id: PoolCallId, now: Instant, method: u32, span: Option<Span>) {
        self.traced += usize::from(span.is_some());
        let observed = Observed {
            started: now,
            method,
            span,
            attempts: 0,
        };
        self.observed.insert(id, observed);
    }

    /// Ends call `id`'s metrics and span with `result`, if anything
    /// observes it: a test of an empty map otherwise.
    #[inline]
    fn end_call(&mut self, id: PoolCallId, now: Instant, result: &Result<Bytes, CallError>) {
        if !self.observed.is_empty() {
            self.end_observed_call(id, now, result);
        }
    }

    #[inline(never)]
    fn end_observed_call(
        &mut self,
        id: PoolCallId,
        now: Instant,
        result: &Result<Bytes, CallError>,
    ) {
        if let Some(o) = self.observed.remove(&id) {
            self.traced -= usize::from(o.span.is_some());
            o.end(&self.method_list, now, result);
        }
    }

    /// Calls the application has started and not collected: the signal for
    /// batching request writes (see [`weft_proto::write_batch_at`]).
    pub(super) fn outstanding(&self) -> usize {
        self.slots.len()
    }

    /// Drains the router's outputs into work for after the lock: the drain
    /// rule. Results go into their slots here; their wakers are woken later.
    pub(super) fn drain(&mut self, now: Instant, work: &mut WorkList<R>) {
        while let Some(action) = self.router.poll_action() {
            match action {
                Action::Dial { conn, addr } => {
                    work.push(Work::Dial(conn, self.endpoints.get(&addr).cloned()));
                    self.conn_addrs.insert(conn, addr);
                }
                Action::Close { conn } => {
                    self.conn_addrs.remove(&conn);
                    if let Some(cell) = self.conns.remove(&conn) {
                        work.push(Work::Close(cell));
                    }
                }
                Action::Resolve { version } => work.push(Work::Resolve(version)),
                other => tracing::error!(?other, "an action this driver does not know"),
            }
        }
        // Few calls outstanding: the caller writes its request at once, for
        // latency. Many: the connection's loop writes what queued by its
        // next turn in one go, unless the batch fills first.
        let batch_at = write_batch_at(self.outstanding(), self.conns.len());
        while let Some((conn, command)) = self.router.poll_command() {
            if self.traced > 0 {
                self.trace_send(conn, &command);
            }
            // A command for a connection already closed is moot: the
            // router accounted for its calls when it closed it.
            if let Some(cell) = self.conns.get(&conn)
                && cell.queue(command)
            {
                work.push(Work::Conn(cell.clone(), batch_at));
            }
        }
        while let Some(event) = self.router.poll_event() {
            match event {
                PoolEvent::Done { id, result } => {
                    // Also for a call whose caller let go of it.
                    self.end_call(id, now, &result);
                    if let Some(slot) = self.slots.get_mut(&id) {
                        slot.result = Some(result);
                        if let Some(w) = slot.waker.take() {
                            work.push(Work::Wake(w));
                        }
                    }
                }
                other => tracing::error!(?other, "an event this driver does not know"),
            }
        }
        if self.replicas_moved && self.metrics_live {
            self.replicas_moved = false;
            let states = self.router.replicas().map(|(_, state, _)| state);
            self.replica_gauges.update(states);
        }
        // Readiness changes only on a router input, and every input ends
        // in this drain: the one place to tell whoever waits for it.
        if !self.ready_wakers.is_empty()
            && !matches!(
                self.router.readiness(),
                Readiness::Connecting | Readiness::Congested
            )
        {
            work.extend(self.ready_wakers.drain(..).map(Work::Wake));
        }
        if let Some(t) = self.router.poll_timeout()
            && self.timer_armed.is_none_or(|armed| t < armed)
            && !self.router.is_closed()
        {
            self.timer_armed = Some(t);
            work.push(Work::WakeTimer);
        }
    }

    /// Records a request going out on its call's span.
    fn trace_send(&mut self, conn: ConnId, command: &Command) {
        let Command::Start { call, .. } = command else {
            return;
        };
        if let Some(o) = self.observed.get_mut(call)
            && let Some(span) = &o.span
        {
            o.attempts += 1;
            span.record("attempts", o.attempts);
            if let Some(addr) = self.conn_addrs.get(&conn) {
                span.record("replica", &**addr);
            }
        }
    }
}
