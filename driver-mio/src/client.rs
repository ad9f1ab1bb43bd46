//! The blocking client: a pool on a mio event-loop thread.
//!
//! Callers start calls under one mutex and write their request themselves
//! when the socket takes it; the loop thread reads, finishes stalled
//! writes, and fires timers. Every decision is [`weft_proto::Pool`]'s.

use crate::resolve::{Resolver, SharedEndpoint};
use crate::stream::{Stream, read_once, write_once};
use bytes::Bytes;
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle, Thread};
use std::time::{Duration, Instant};
use weft_proto::backoff::Backoff;
use weft_proto::pool::{
    Action, BATCH_WRITES_FROM, ConnId, EndpointsVersion, PoolEvent, Resolution,
};
use weft_proto::{
    Balancer, CallError, CallOptions, ConnConfig, MethodKey, Pool, PoolCallId, PoolConfig,
    RoundRobin,
};

const WAKER: Token = Token(0);

/// Client settings.
pub struct ClientOptions {
    /// Picks a replica per call (default [`RoundRobin`]).
    pub balancer: Box<dyn Balancer>,
    /// Backoff for redials, retries and resolver errors.
    pub backoff: Backoff,
    /// Frames up to this size are copied into one write (default 4 KiB).
    pub write_flatten_limit: usize,
    /// Largest response accepted (default 100 MiB).
    pub max_message_size: u64,
    /// How long a caller spins waiting for its result before parking its
    /// thread (default 0: park at once). Spinning trades CPU for latency
    /// when responses come back within microseconds.
    pub optimistic_spin: Duration,
    /// Seed for the pool's RNG; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for ClientOptions {
    fn default() -> Self {
        let conn = ConnConfig::default();
        ClientOptions {
            balancer: Box::new(RoundRobin::new()),
            backoff: Backoff::default(),
            write_flatten_limit: conn.flatten_limit,
            max_message_size: conn.max_payload,
            optimistic_spin: Duration::ZERO,
            seed: None,
        }
    }
}

/// A blocking client of one service, callable from any number of threads.
///
/// ```no_run
/// use bytes::Bytes;
/// use weft_mio::{Client, ClientOptions, ConstantResolver};
/// use weft_proto::{CallOptions, MethodKey, NetEndpoint};
///
/// let server: NetEndpoint = "tcp://127.0.0.1:7000".parse()?;
/// let client = Client::connect(ConstantResolver::new([server]), ClientOptions::default())?;
/// let out = client.call(MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"), CallOptions::default())?;
/// assert_eq!(&out[..], b"hi");
/// client.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Client {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

struct Shared {
    state: Mutex<State>,
    waker: Waker,
    registry: Registry,
    resolver: Arc<dyn Resolver>,
    spin: Duration,
}

struct State {
    pool: Pool,
    slots: HashMap<PoolCallId, Arc<Slot>>,
    conns: HashMap<ConnId, Stream>,
    endpoints: HashMap<String, SharedEndpoint>,
    /// When the loop thread will wake by itself.
    armed: Option<Instant>,
    /// Connections whose queued requests the loop thread is to write.
    flush_wanted: Vec<ConnId>,
    /// Finished calls whose threads are unparked after the lock is released.
    to_wake: Vec<Arc<Slot>>,
    closed: bool,
}

struct Slot {
    done: AtomicBool,
    result: Mutex<Option<Result<Bytes, CallError>>>,
    thread: Thread,
}

impl Client {
    /// Connects to the replicas `resolver` names and starts the event loop.
    ///
    /// A constant resolver with no endpoints fails with an *unreachable*
    /// error.
    pub fn connect(resolver: impl Resolver, opts: ClientOptions) -> Result<Client, CallError> {
        let io_err = |e: io::Error| CallError::Unreachable(format!("event loop: {e}"));
        let (endpoints, version) = resolver
            .resolve(None)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let config = PoolConfig {
            conn: ConnConfig {
                max_payload: opts.max_message_size,
                flatten_limit: opts.write_flatten_limit,
            },
            backoff: opts.backoff,
            seed: opts.seed.unwrap_or_else(os_seed),
        };
        let addrs: Vec<String> = endpoints.iter().map(|e| e.address()).collect();
        let initial = Resolution {
            addrs: addrs.clone(),
            version: version.map(EndpointsVersion),
        };
        let now = Instant::now();
        let pool = Pool::connect(
            now,
            config,
            opts.balancer,
            resolver_kind(resolver.is_constant()),
            initial,
        )?;
        let poll = Poll::new().map_err(io_err)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(io_err)?;
        let registry = poll.registry().try_clone().map_err(io_err)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pool,
                slots: HashMap::new(),
                conns: HashMap::new(),
                endpoints: addrs.into_iter().zip(endpoints).collect(),
                armed: None,
                flush_wanted: Vec::new(),
                to_wake: Vec::new(),
                closed: false,
            }),
            waker,
            registry,
            resolver: Arc::new(resolver),
            spin: opts.optimistic_spin,
        });
        shared.drive(&mut shared.lock(), now);
        let s = shared.clone();
        let thread = thread::Builder::new()
            .name("weft-mio-client".into())
            .spawn(move || event_loop(s, poll))
            .map_err(io_err)?;
        Ok(Client {
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Calls `method` and blocks until the result.
    pub fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        self.start(method, args, opts).wait()
    }

    /// Starts a call; [`PendingCall::wait`] blocks for its result, and a
    /// [`CancelHandle`] can abandon it from another thread.
    pub fn start(&self, method: MethodKey, args: Bytes, opts: CallOptions) -> PendingCall {
        let slot = Arc::new(Slot {
            done: AtomicBool::new(false),
            result: Mutex::new(None),
            thread: thread::current(),
        });
        let mut state = self.shared.lock();
        let now = Instant::now();
        let id = state.pool.start_call(now, method, args, opts);
        state.slots.insert(id, slot.clone());
        self.shared.drive(&mut state, now);
        PendingCall {
            shared: self.shared.clone(),
            id,
            slot,
            finished: false,
        }
    }

    /// Ends every pending call with a communication error saying the
    /// connection is closed; later calls fail the same way. Idempotent.
    pub fn close(&self) {
        self.shared.close();
        if let Some(t) = self.thread.lock().expect("unpoisoned").take() {
            let _ = t.join();
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// A call in progress.
pub struct PendingCall {
    shared: Arc<Shared>,
    id: PoolCallId,
    slot: Arc<Slot>,
    finished: bool,
}

/// Cancels a call from any thread.
#[derive(Clone)]
pub struct CancelHandle {
    shared: Arc<Shared>,
    id: PoolCallId,
}

impl CancelHandle {
    /// Abandons the call: it ends with a cancelled error, and the server is
    /// told if the request went out. No effect once it has ended.
    pub fn cancel(&self) {
        self.shared.cancel(self.id);
    }
}

impl PendingCall {
    /// A handle that cancels this call.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            shared: self.shared.clone(),
            id: self.id,
        }
    }

    /// Blocks until the call ends: spins for the configured optimistic
    /// spin, then parks.
    pub fn wait(mut self) -> Result<Bytes, CallError> {
        let spin_until = Instant::now() + self.shared.spin;
        while !self.slot.done.load(Ordering::Acquire) {
            if Instant::now() < spin_until {
                std::hint::spin_loop();
            } else {
                // Unparked by the loop (or spuriously: the flag decides).
                thread::park();
            }
        }
        self.finished = true;
        self.slot
            .result
            .lock()
            .expect("unpoisoned")
            .take()
            .expect("a finished call has a result")
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.cancel(self.id);
        }
    }
}

fn os_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

impl Shared {
    fn lock(&self) -> Locked<'_> {
        Locked(Some(
            self.state.lock().expect("weft-mio client state poisoned"),
        ))
    }

    fn cancel(self: &Arc<Self>, id: PoolCallId) {
        let mut state = self.lock();
        let now = Instant::now();
        state.pool.cancel(now, id);
        self.drive(&mut state, now);
    }

    fn close(self: &Arc<Self>) {
        let mut state = self.lock();
        if !state.closed {
            state.closed = true;
            let now = Instant::now();
            state.pool.close(now);
            self.drive(&mut state, now);
        }
        drop(state);
        let _ = self.waker.wake();
    }

    /// Carries out everything the pool asks: the drain rule.
    fn drive(self: &Arc<Self>, state: &mut State, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(action) = state.pool.poll_action() {
                progressed = true;
                self.act(state, action);
            }
            while let Some(conn) = state.pool.poll_transmit() {
                progressed = true;
                // Few calls in flight: write now, for latency. Many: leave
                // it to the loop thread, which writes everything queued by
                // the time it runs in one go (one wake per batch).
                if state.slots.len() >= BATCH_WRITES_FROM {
                    if state.flush_wanted.is_empty() {
                        let _ = self.waker.wake();
                    }
                    if !state.flush_wanted.contains(&conn) {
                        state.flush_wanted.push(conn);
                    }
                } else {
                    flush(state, conn, now);
                }
            }
            while let Some(PoolEvent::Done { id, result }) = state.pool.poll_event() {
                progressed = true;
                if let Some(slot) = state.slots.remove(&id) {
                    *slot.result.lock().expect("unpoisoned") = Some(result);
                    slot.done.store(true, Ordering::Release);
                    // Unparked once the state lock is released: a wakeup
                    // is a syscall, and callers queue on the lock meanwhile.
                    state.to_wake.push(slot);
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(t) = state.pool.poll_timeout()
            && state.armed.is_none_or(|a| t < a)
        {
            state.armed = Some(t);
            let _ = self.waker.wake();
        }
    }

    fn act(self: &Arc<Self>, state: &mut State, action: Action) {
        match action {
            Action::Dial { conn, addr } => {
                let endpoint = state.endpoints.get(&*addr).cloned();
                let shared = self.clone();
                let _ = thread::Builder::new()
                    .name("weft-mio-dial".into())
                    .spawn(move || shared.dialed(conn, endpoint));
            }
            Action::Close { conn } => {
                if let Some(mut s) = state.conns.remove(&conn) {
                    let _ = self.registry.deregister(&mut s);
                }
            }
            Action::Resolve { version } => {
                let shared = self.clone();
                let _ = thread::Builder::new()
                    .name("weft-mio-resolve".into())
                    .spawn(move || shared.resolved(version.map(|v| v.0)));
            }
            _ => {}
        }
    }

    fn dialed(self: Arc<Self>, conn: ConnId, endpoint: Option<SharedEndpoint>) {
        let dialed = match endpoint {
            Some(e) => e.dial(),
            None => Err(io::Error::other("endpoint no longer known")),
        };
        let mut state = self.lock();
        let now = Instant::now();
        let registered = dialed.and_then(|mut s| {
            self.registry
                .register(&mut s, token(conn), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match registered {
            Ok(s) => {
                state.conns.insert(conn, s);
                state.pool.handle_dial_ok(now, conn);
            }
            Err(e) => state.pool.handle_dial_failed(now, conn, &e.to_string()),
        }
        self.drive(&mut state, now);
    }

    fn resolved(self: Arc<Self>, version: Option<u64>) {
        let resolved = self.resolver.resolve(version);
        let mut state = self.lock();
        let now = Instant::now();
        match resolved {
            Ok((endpoints, version)) => {
                let addrs: Vec<String> = endpoints.iter().map(|e| e.address()).collect();
                for (a, e) in addrs.iter().zip(endpoints) {
                    state.endpoints.insert(a.clone(), e);
                }
                let version = version.map(EndpointsVersion);
                state
                    .pool
                    .handle_resolved(now, Resolution { addrs, version });
            }
            Err(e) => state.pool.handle_resolve_failed(now, &e.to_string()),
        }
        self.drive(&mut state, now);
    }
}

/// The client state, locked. Unlocking unparks the threads whose calls
/// finished meanwhile, after the lock is free.
struct Locked<'a>(Option<MutexGuard<'a, State>>);

impl std::ops::Deref for Locked<'_> {
    type Target = State;
    fn deref(&self) -> &State {
        self.0.as_ref().expect("held until drop")
    }
}

impl std::ops::DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut State {
        self.0.as_mut().expect("held until drop")
    }
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        let Some(mut guard) = self.0.take() else {
            return;
        };
        let wake: smallvec::SmallVec<[Arc<Slot>; 16]> = guard.to_wake.drain(..).collect();
        drop(guard);
        for slot in wake {
            slot.thread.unpark();
        }
    }
}

fn token(conn: ConnId) -> Token {
    Token(conn.0 as usize)
}

/// Writes `conn`'s pending bytes until done or the socket is full; the
/// loop finishes the rest on the next writable edge.
fn flush(state: &mut State, conn: ConnId, now: Instant) {
    let State { pool, conns, .. } = state;
    let Some(stream) = conns.get_mut(&conn) else {
        return;
    };
    while let Some(tx) = pool.transmit(conn).filter(|t| !t.is_empty()) {
        match write_once(stream, tx) {
            Ok(n) => pool.advance_transmit(conn, n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                pool.handle_transport_closed(now, conn, &format!("write: {e}"));
                return;
            }
        }
    }
}

fn event_loop(shared: Arc<Shared>, mut poll: Poll) {
    let mut events = Events::with_capacity(256);
    loop {
        let timeout = {
            let mut state = shared.lock();
            if state.closed && state.conns.is_empty() {
                return;
            }
            let now = Instant::now();
            let next = state.pool.poll_timeout();
            state.armed = next;
            next.map(|t| t.saturating_duration_since(now))
        };
        if let Err(e) = poll.poll(&mut events, timeout)
            && e.kind() != io::ErrorKind::Interrupted
        {
            tracing::error!(error = %e, "client event loop failed");
            return;
        }
        let mut guard = shared.lock();
        let state = &mut *guard;
        let now = Instant::now();
        for conn in std::mem::take(&mut state.flush_wanted) {
            flush(state, conn, now);
        }
        for event in events.iter() {
            if event.token() == WAKER {
                continue;
            }
            let conn = ConnId(event.token().0 as u64);
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                read_conn(state, conn, now);
            }
            if event.is_writable() {
                flush(state, conn, now);
            }
            shared.drive(state, now);
        }
        if state.pool.poll_timeout().is_some_and(|t| t <= now) {
            state.pool.handle_timeout(now);
        }
        shared.drive(state, now);
    }
}

/// Reads until the socket would block (edge-triggered readiness).
fn read_conn(state: &mut State, conn: ConnId, now: Instant) {
    loop {
        let State { pool, conns, .. } = &mut *state;
        let (Some(stream), Some(buf)) = (conns.get_mut(&conn), pool.read_buf(conn, 0)) else {
            return;
        };
        match read_once(stream, buf) {
            Ok(0) => {
                pool.handle_transport_closed(now, conn, "peer closed the connection");
                return;
            }
            Ok(_) => pool.handle_read(now, conn),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                pool.handle_transport_closed(now, conn, &format!("read: {e}"));
                return;
            }
        }
    }
}

fn resolver_kind(constant: bool) -> weft_proto::ResolverKind {
    if constant {
        weft_proto::ResolverKind::Constant
    } else {
        weft_proto::ResolverKind::Watched
    }
}
