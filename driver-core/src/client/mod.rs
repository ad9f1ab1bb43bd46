//! The client half of a driver, written once.
//!
//! A [`Client`] owns the [`Router`] and, beside it, one [`ConnCell`] per
//! open connection: the connection's [`Link`](weft_proto::Link) and
//! its transport under a lock of their own. The router's lock guards
//! placement, result slots and the connection table, and is never held
//! across a system call; a connection's lock is held while its transport is
//! read or written, and is needed only by that connection's I/O loop and by
//! callers whose calls the router placed on it.
//!
//! Locks are taken in one order: a connection's before the router's, never
//! the other way. Work the router asks of a connection is collected under
//! the router's lock and carried out after releasing it.
//!
//! A runtime plugs in through [`Runtime`]: how a dial, a resolve and a
//! connection's I/O loop are started, and how the router's timer is woken.
//! Callers wait on a [`std::task::Waker`], so a blocking driver parks a
//! thread through [`thread_waker`] and an async one returns `Pending`.

mod conn;
mod options;
mod state;

pub use conn::ConnCell;
pub use options::ClientOptions;
use state::{Slot, State, Work, WorkList};

use crate::Transport;
use crate::observe;
use bytes::Bytes;
use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use weft_proto::{Balancer, CallError, CallOptions, ConnError, MethodKey, Readiness};
use weft_proto::{
    ConnId, EndpointsVersion, PoolCallId, PoolConfig, Resolution, ResolverKind, Router,
};

/// What a runtime provides to a [`Client`].
///
/// Every method is called without any lock held, and must not block: it
/// starts work (a task, a thread, a registration) that reports back through
/// the client.
///
/// Implementing it is writing a driver; the two there are serve as its
/// examples: weft-tokio's (`driver-tokio/src/client.rs`: a task per dial,
/// resolve and connection, a timer task) and weft-mio's
/// (`driver-mio/src/client.rs`: helper threads for dials and resolves, one
/// event loop for every connection).
pub trait Runtime: Send + Sync + Sized + 'static {
    /// What a dial needs: the resolver's endpoint.
    type Endpoint: Clone + Send + Sync + 'static;
    /// An open connection's byte stream.
    type Stream: Transport;

    /// Opens a transport to `endpoint` (`None`: the resolver no longer
    /// names it), then reports [`Client::dialed`] for `conn`.
    fn dial(&self, client: &Arc<Client<Self>>, conn: ConnId, endpoint: Option<Self::Endpoint>);

    /// Asks the resolver for endpoints newer than `version`, then reports
    /// [`Client::resolved`].
    fn resolve(&self, client: &Arc<Client<Self>>, version: Option<EndpointsVersion>);

    /// Starts the I/O loop of a connection that just opened: it calls
    /// [`Client::drive_conn`] whenever the transport may have made
    /// progress or the cell's waker was woken, until that returns `Ready`.
    fn run_conn(&self, client: &Arc<Client<Self>>, conn: Arc<ConnCell<Self::Stream>>);

    /// The router's next timeout moved earlier: whoever sleeps until it
    /// ([`Client::handle_timeout`]) must look again.
    fn wake_timer(&self);

    /// Whether a connection's loop should let the runtime run other tasks
    /// once before writing requests callers left for it, so that all of
    /// them go out in one write. Right for Tokio, whose scheduler runs a
    /// task woken by a caller before that caller's peers.
    const DEFER_BATCHED_FLUSH: bool = false;
}

/// Client settings the runtime does not decide.
pub struct ClientConfig {
    /// The pool's limits, backoff and seed.
    pub pool: PoolConfig,
    /// Picks a replica per call.
    pub balancer: Box<dyn Balancer>,
}

/// The client state both drivers share; see the module docs.
pub struct Client<R: Runtime> {
    runtime: R,
    state: Mutex<State<R>>,
}

impl<R: Runtime> std::fmt::Debug for Client<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// One endpoint as a resolver names it: its address (how resolver sets are
/// compared) and what a dial needs.
pub type Named<E> = (String, E);

/// A resolver's answer: its endpoints and the version of the set.
pub type Endpoints<E> = (Vec<Named<E>>, Option<EndpointsVersion>);

impl<R: Runtime> Client<R> {
    /// A client over the endpoints a resolver returned first. Dials start
    /// at once.
    pub fn new(
        runtime: R,
        config: ClientConfig,
        kind: ResolverKind,
        endpoints: Vec<Named<R::Endpoint>>,
        version: Option<EndpointsVersion>,
    ) -> Result<Arc<Self>, CallError> {
        let now = Instant::now();
        let (addrs, registry) = split(endpoints);
        let initial = Resolution { addrs, version };
        let router = Router::new(now, config.pool, config.balancer, kind, initial)?;
        let client = Arc::new(Client {
            runtime,
            state: Mutex::new(State::new(router, registry)),
        });
        let mut work = WorkList::new();
        client.lock().drain(now, &mut work);
        client.carry_out(work, now);
        Ok(client)
    }

    /// The runtime this client runs on.
    pub fn runtime(&self) -> &R {
        &self.runtime
    }

    fn lock(&self) -> MutexGuard<'_, State<R>> {
        // A panic while holding the lock leaves the router mid-transition;
        // nothing sensible can continue from there.
        self.state.lock().expect("weft client state poisoned")
    }

    // ---- calls ----

    /// Starts a call; its result is collected with [`poll_call`](Self::poll_call).
    /// Until then (or [`cancel`](Self::cancel)) the call holds a result slot.
    pub fn start_call(
        self: &Arc<Self>,
        method: MethodKey,
        args: Bytes,
        #[allow(unused_mut)] mut opts: CallOptions,
    ) -> PoolCallId {
        let now = Instant::now();
        // Made before the lock: a subscriber's work is not done under it.
        let span = observe::call_span(&method, opts.method_name);
        // The call's span when it is recorded, else the caller's own: a
        // subscriber that filters out weft's DEBUG spans still propagates
        // the trace its own spans are in.
        #[cfg(feature = "opentelemetry")]
        if opts.trace.is_none() {
            opts.trace = match &span {
                Some(span) => crate::otel::context_of(span),
                None => crate::otel::current_context(),
            };
        }
        let request_bytes = args.len();
        let mut work = WorkList::new();
        let id = {
            let mut state = self.lock();
            let index = if state.metrics_live {
                let (index, metrics) = state.method(&method, opts.method_name);
                metrics.started(request_bytes);
                index
            } else {
                state::NO_METRICS
            };
            let id = state.router.start_call(now, method, args, opts);
            state.slots.insert(id, Slot::default());
            state.observe(id, now, index, span);
            state.drain(now, &mut work);
            id
        };
        self.carry_out(work, now);
        id
    }

    /// The call's result if it has ended (the slot is then freed), else
    /// registers `cx`'s waker to be woken when it does.
    pub fn poll_call(
        &self,
        id: PoolCallId,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Bytes, CallError>> {
        let mut state = self.lock();
        let Some(slot) = state.slots.get_mut(&id) else {
            return Poll::Ready(Err(CallError::Cancelled));
        };
        if let Some(result) = slot.result.take() {
            state.slots.remove(&id);
            return Poll::Ready(result);
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }

    /// Whether a call started now could go somewhere: `Ready(Ok)` when a
    /// replica is ready, and also when none can be reached (the call then
    /// fails at once with the cause, which tells more than a readiness
    /// error would); `Ready(Err)` once the client is closed; `Pending`
    /// while replicas are still connecting, or every one that is up is
    /// congested (its server not reading requests as fast as they come),
    /// with `cx` woken when that changes.
    pub fn poll_ready(&self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        let mut state = self.lock();
        match state.router.readiness() {
            Readiness::Connecting | Readiness::Congested => {
                let waker = cx.waker();
                if !state.ready_wakers.iter().any(|w| w.will_wake(waker)) {
                    state.ready_wakers.push(waker.clone());
                }
                Poll::Pending
            }
            Readiness::Closed => Poll::Ready(Err(CallError::Connection(ConnError::Closed))),
            _ => Poll::Ready(Ok(())),
        }
    }

    /// Cancels a call from anywhere: it ends with a cancelled error (the
    /// server is told if the request went out), which its caller collects
    /// as usual. No effect on a call that has ended.
    pub fn cancel(self: &Arc<Self>, id: PoolCallId) {
        let now = Instant::now();
        let mut work = WorkList::new();
        {
            let mut state = self.lock();
            state.router.cancel(now, id);
            state.drain(now, &mut work);
        }
        self.carry_out(work, now);
    }

    /// The caller lost interest (its future or handle was dropped): cancels
    /// the call if it is still running and frees its slot.
    pub fn abandon(self: &Arc<Self>, id: PoolCallId) {
        let now = Instant::now();
        let mut work = WorkList::new();
        {
            let mut state = self.lock();
            if state.slots.remove(&id).is_none() {
                return;
            }
            // A call still running ends (cancelled) in the drain, which
            // also ends its metrics and span.
            state.router.cancel(now, id);
            state.drain(now, &mut work);
        }
        self.carry_out(work, now);
    }

    /// A connection's transport could not be set up by the runtime (e.g.
    /// registering it with a poller failed): it fails like a broken one.
    pub fn conn_broken(self: &Arc<Self>, cell: &ConnCell<R::Stream>, reason: &str) {
        let now = Instant::now();
        let mut work = WorkList::new();
        cell.fail(self, reason, now, &mut work);
        self.carry_out(work, now);
    }

    /// Ends every pending call with a communication error saying the
    /// connection is closed, closes every transport, and makes later calls
    /// fail the same way. Idempotent.
    pub fn close(self: &Arc<Self>) {
        let now = Instant::now();
        let mut work = WorkList::new();
        {
            let mut state = self.lock();
            if state.router.is_closed() {
                return;
            }
            state.router.close(now);
            state.replicas_moved = true;
            state.drain(now, &mut work);
        }
        self.carry_out(work, now);
        self.runtime.wake_timer();
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closed(&self) -> bool {
        self.lock().router.is_closed()
    }

    // ---- reports from the runtime ----

    /// A dial the runtime started finished.
    pub fn dialed(self: &Arc<Self>, conn: ConnId, result: io::Result<R::Stream>) {
        let now = Instant::now();
        let mut work = WorkList::new();
        let (cell, unwanted) = {
            let mut state = self.lock();
            state.replicas_moved = true;
            let (cell, unwanted) = match result {
                Ok(stream) => match state.router.handle_dial_ok(now, conn) {
                    Some(link) => {
                        let cell = Arc::new(ConnCell::new(conn, link, stream));
                        state.conns.insert(conn, cell.clone());
                        (Some(cell), None)
                    }
                    // Given up on meanwhile (its connect timeout, its
                    // replica gone): closed once the lock is released.
                    None => (None, Some(stream)),
                },
                Err(e) => {
                    state.router.handle_dial_failed(now, conn, &e.to_string());
                    (None, None)
                }
            };
            if cell.is_none() {
                // A dial that led nowhere: the router has forgotten it and
                // sends no close for it, so its address goes now.
                state.conn_addrs.remove(&conn);
            }
            state.drain(now, &mut work);
            (cell, unwanted)
        };
        drop(unwanted);
        if let Some(cell) = cell {
            self.runtime.run_conn(self, cell);
        }
        self.carry_out(work, now);
    }

    /// A resolve the runtime started finished.
    pub fn resolved(self: &Arc<Self>, result: Result<Endpoints<R::Endpoint>, String>) {
        let now = Instant::now();
        let mut work = WorkList::new();
        {
            let mut state = self.lock();
            state.replicas_moved = true;
            match result {
                Ok((endpoints, version)) => {
                    let (addrs, mut fresh) = split(endpoints);
                    state
                        .router
                        .handle_resolved(now, Resolution { addrs, version });
                    // What the router now names, from this answer where it
                    // has the address, else as known before: the router
                    // may have ignored the answer (a version it has seen),
                    // and a replica it keeps must stay dialable.
                    let kept: HashMap<Arc<str>, R::Endpoint> = state
                        .router
                        .replicas()
                        .filter_map(|(addr, _, _)| {
                            let e = fresh
                                .remove(addr)
                                .or_else(|| state.endpoints.get(addr).cloned())?;
                            Some((Arc::from(addr), e))
                        })
                        .collect();
                    state.endpoints = kept;
                }
                Err(reason) => state.router.handle_resolve_failed(now, &reason),
            }
            state.drain(now, &mut work);
        }
        self.carry_out(work, now);
    }

    /// Fires the router's due timers; returns when to call again (`None`:
    /// when [`Runtime::wake_timer`] says so).
    pub fn handle_timeout(self: &Arc<Self>) -> Option<Instant> {
        loop {
            let now = Instant::now();
            let mut work = WorkList::new();
            let next = {
                let mut state = self.lock();
                if state.router.poll_timeout().is_some_and(|t| t <= now) {
                    state.router.handle_timeout(now);
                    state.replicas_moved = true;
                }
                state.drain(now, &mut work);
                let next = state.router.poll_timeout();
                state.timer_armed = next;
                next
            };
            self.carry_out(work, now);
            // A timer that came due meanwhile is handled now rather than
            // after a sleep of zero.
            match next {
                Some(t) if t <= Instant::now() => continue,
                other => return other,
            }
        }
    }

    // ---- internals ----

    /// Carries out what the router asked, with no lock held on entry.
    /// `now` is when the work was made: commands carry it to their links,
    /// so a call's request leaves with the deadline the router saw.
    fn carry_out(self: &Arc<Self>, mut work: WorkList<R>, now: Instant) {
        let mut next = WorkList::new();
        while !work.is_empty() {
            for item in work.drain(..) {
                match item {
                    Work::Dial(conn, endpoint) => self.runtime.dial(self, conn, endpoint),
                    Work::Resolve(version) => self.runtime.resolve(self, version),
                    Work::Conn(cell, batch_at) => self.commands(&cell, batch_at, now, &mut next),
                    Work::Close(cell) => cell.close(now),
                    Work::Wake(waker) => waker.wake(),
                    Work::WakeTimer => self.runtime.wake_timer(),
                }
            }
            std::mem::swap(&mut work, &mut next);
        }
    }
}

fn split<E>(endpoints: Vec<Named<E>>) -> (Vec<String>, HashMap<Arc<str>, E>) {
    let addrs = endpoints.iter().map(|(a, _)| a.clone()).collect();
    let registry = endpoints
        .into_iter()
        .map(|(a, e)| (Arc::from(a), e))
        .collect();
    (addrs, registry)
}

/// A waker that unparks the current thread: how a blocking caller waits on
/// a [`Client`]. One per thread, made once.
pub fn thread_waker() -> Waker {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
        fn wake_by_ref(self: &Arc<Self>) {
            self.0.unpark();
        }
    }
    thread_local! {
        static WAKER: Waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    }
    WAKER.with(Waker::clone)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use weft_proto::{RoundRobin, Transmit};

    /// Dials nothing: records which connections it was asked for.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<ConnId>>);

    struct NoStream;

    impl Transport for NoStream {
        fn poll_read(&mut self, _: &mut Context<'_>, _: &mut BytesMut) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
        fn poll_write(&mut self, _: &mut Context<'_>, _: &Transmit) -> Poll<io::Result<usize>> {
            Poll::Pending
        }
    }

    impl Runtime for Recorder {
        type Endpoint = ();
        type Stream = NoStream;
        fn dial(&self, _: &Arc<Client<Self>>, conn: ConnId, _: Option<()>) {
            self.0.lock().unwrap().push(conn);
        }
        fn resolve(&self, _: &Arc<Client<Self>>, _: Option<EndpointsVersion>) {}
        fn run_conn(&self, _: &Arc<Client<Self>>, _: Arc<ConnCell<NoStream>>) {}
        fn wake_timer(&self) {}
    }

    fn client(replicas: usize) -> Arc<Client<Recorder>> {
        let config = ClientConfig {
            pool: PoolConfig::default(),
            balancer: Box::new(RoundRobin::new()),
        };
        let endpoints = (0..replicas).map(|i| (format!("r{i}"), ())).collect();
        Client::new(
            Recorder::default(),
            config,
            ResolverKind::Constant,
            endpoints,
            None,
        )
        .unwrap()
    }

    fn dials(client: &Client<Recorder>) -> Vec<ConnId> {
        std::mem::take(&mut client.runtime.0.lock().unwrap())
    }

    /// A replica that refuses every dial is redialed for as long as the
    /// client lives: each failed attempt must leave nothing behind.
    #[test]
    fn a_failed_dial_leaves_no_address_behind() {
        let client = client(3);
        let started = dials(&client);
        assert_eq!(started.len(), 3, "one dial per replica");
        for conn in started {
            client.dialed(conn, Err(io::Error::from(io::ErrorKind::ConnectionRefused)));
        }
        assert_eq!(client.lock().conn_addrs.len(), 0);
    }

    /// A resolver that gives an old version with a different set breaks
    /// its contract, and the router keeps the set it has: the replicas it
    /// keeps must stay dialable.
    #[test]
    fn an_answer_the_router_ignores_leaves_its_replicas_dialable() {
        let config = ClientConfig {
            pool: PoolConfig::default(),
            balancer: Box::new(RoundRobin::new()),
        };
        let v1 = Some(EndpointsVersion(1));
        let client = Client::new(
            Recorder::default(),
            config,
            ResolverKind::Watched,
            vec![("a".into(), ())],
            v1,
        )
        .unwrap();
        client.resolved(Ok((vec![("b".into(), ())], v1)));
        let state = client.lock();
        assert!(state.endpoints.contains_key("a"), "a can be redialed");
        assert!(!state.endpoints.contains_key("b"), "b was never taken");
    }

    /// A dial that succeeds after the router gave up on it (here: the
    /// client closed) is closed, and its address forgotten.
    #[test]
    fn a_dial_given_up_on_leaves_no_address_behind() {
        let client = client(1);
        let started = dials(&client);
        client.close();
        for conn in started {
            client.dialed(conn, Ok(NoStream));
        }
        assert_eq!(client.lock().conn_addrs.len(), 0);
        assert!(client.lock().conns.is_empty());
    }
}
