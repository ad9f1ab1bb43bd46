//! The async client: a [`Connection`] over a resolver's replicas.
//!
//! All protocol decisions are made by [`weft_proto::Pool`]; this module only
//! moves bytes, time and results between it and Tokio. One mutex guards the
//! pool; a call takes it to start, and if the socket is writable its request
//! goes out from the caller's own task, without waiting for another.

use crate::endpoint::BoxStream;
use crate::io::{READ_CHUNK, poll_read, poll_write};
use crate::resolver::{Resolver, SharedEndpoint};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Instant;
use tokio::sync::Notify;
use weft_proto::backoff::Backoff;
use weft_proto::pool::{
    Action, BATCH_WRITES_FROM, ConnId, EndpointsVersion, PoolEvent, Resolution,
};
use weft_proto::{
    Balancer, CallError, CallOptions, ConnConfig, MethodKey, Pool, PoolCallId, PoolConfig,
    RoundRobin,
};

/// Client settings.
pub struct ClientOptions {
    /// Picks a replica per call (default [`RoundRobin`]).
    pub balancer: Box<dyn Balancer>,
    /// Backoff for redials, retries and resolver errors.
    pub backoff: Backoff,
    /// Frames up to this size are copied into one write; larger payloads
    /// are written vectored, without copying (default 4 KiB).
    pub write_flatten_limit: usize,
    /// Largest response accepted (default 100 MiB).
    pub max_message_size: u64,
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
            seed: None,
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("backoff", &self.backoff)
            .field("write_flatten_limit", &self.write_flatten_limit)
            .field("max_message_size", &self.max_message_size)
            .finish_non_exhaustive()
    }
}

/// A client of one service, spread over the replicas a resolver names.
///
/// Cheap to clone and shareable across tasks (`Clone + Send + Sync`); all
/// clones are one connection. Dropping the last clone closes it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use weft_tokio::{ClientOptions, ConstantResolver, tcp};
/// use weft_proto::{CallOptions, MethodKey};
///
/// let conn = weft_tokio::connect(ConstantResolver::new([tcp("127.0.0.1:7000")]), ClientOptions::default()).await?;
/// let key = MethodKey::new("weft.Test", "Echo");
/// let out = conn.call(key, Bytes::from_static(b"hi"), CallOptions::default()).await?;
/// assert_eq!(&out[..], b"hi");
/// conn.close();
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Connection {
    handle: Arc<Handle>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Closes the connection when the last user handle goes; background tasks
/// hold `Shared`, not this, so they never keep it alive.
struct Handle {
    shared: Arc<Shared>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.shared.close();
    }
}

struct Shared {
    state: Mutex<State>,
    runtime: tokio::runtime::Handle,
    resolver: Arc<dyn Resolver>,
    timer: Notify,
    /// Signalled by close, so a resolve waiting for news stops holding
    /// the client's state.
    closing: Notify,
}

struct State {
    pool: Pool,
    slots: HashMap<PoolCallId, Slot>,
    conns: HashMap<ConnId, ConnIo>,
    endpoints: HashMap<String, SharedEndpoint>,
    /// When the timer task is set to wake; `None` while it waits for news.
    timer_armed: Option<Instant>,
    closed: bool,
}

#[derive(Default)]
struct Slot {
    result: Option<Result<Bytes, CallError>>,
    waker: Option<Waker>,
}

struct ConnIo {
    stream: BoxStream,
    /// The connection task, to be woken when a caller's write stalls.
    task: Option<Waker>,
    /// Callers left bytes for the connection task to write.
    flush_wanted: bool,
}

/// Connects to the replicas `resolver` names.
///
/// A constant resolver with no endpoints fails with an *unreachable*
/// error; a non-constant one may start empty and is then followed.
pub async fn connect(
    resolver: impl Resolver,
    opts: ClientOptions,
) -> Result<Connection, CallError> {
    let (endpoints, version) = resolver
        .resolve(None)
        .await
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
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            pool,
            slots: HashMap::new(),
            conns: HashMap::new(),
            endpoints: addrs.into_iter().zip(endpoints).collect(),
            timer_armed: None,
            closed: false,
        }),
        runtime: tokio::runtime::Handle::current(),
        resolver: Arc::new(resolver),
        timer: Notify::new(),
        closing: Notify::new(),
    });
    shared.runtime.spawn(timer_task(shared.clone()));
    shared.drive(&mut shared.lock(), now);
    Ok(Connection {
        handle: Arc::new(Handle { shared }),
    })
}

fn os_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(Instant::now())
}

impl Connection {
    /// Calls `method` with `args`. Dropping the returned future cancels the
    /// call (the server is told if the request went out).
    pub async fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        let shared = &self.handle.shared;
        let id = {
            let mut state = shared.lock();
            let now = Instant::now();
            let id = state.pool.start_call(now, method, args, opts);
            shared.drive(&mut state, now);
            id
        };
        CallFuture {
            shared,
            id,
            finished: false,
        }
        .await
    }

    /// Ends every pending call with a communication error saying the
    /// connection is closed; later calls fail the same way. Idempotent.
    pub fn close(&self) {
        self.handle.shared.close();
    }
}

struct CallFuture<'a> {
    shared: &'a Arc<Shared>,
    id: PoolCallId,
    finished: bool,
}

impl Future for CallFuture<'_> {
    type Output = Result<Bytes, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        let slot = state.slots.entry(self.id).or_default();
        if let Some(result) = slot.result.take() {
            state.slots.remove(&self.id);
            drop(state);
            self.finished = true;
            return Poll::Ready(result);
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

impl Drop for CallFuture<'_> {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let mut state = self.shared.lock();
        let now = Instant::now();
        state.pool.cancel(now, self.id);
        self.shared.drive(&mut state, now);
        state.slots.remove(&self.id);
    }
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the pool mid-transition;
        // nothing sensible can continue from there.
        self.state.lock().expect("weft client state poisoned")
    }

    fn close(self: &Arc<Self>) {
        let mut state = self.lock();
        if state.closed {
            return;
        }
        state.closed = true;
        let now = Instant::now();
        state.pool.close(now);
        self.drive(&mut state, now);
        drop(state);
        self.timer.notify_one();
        self.closing.notify_waiters();
    }

    /// Carries out everything the pool asks after an input: the drain rule.
    fn drive(self: &Arc<Self>, state: &mut State, now: Instant) {
        loop {
            let mut progressed = false;
            while let Some(action) = state.pool.poll_action() {
                progressed = true;
                self.act(state, action);
            }
            while let Some(conn) = state.pool.poll_transmit() {
                progressed = true;
                // Few calls in flight: the caller writes now. Many: the
                // connection task writes all that queued by its next turn.
                let batched = state.slots.len() >= BATCH_WRITES_FROM;
                match state.conns.get_mut(&conn) {
                    Some(io) if batched && io.task.is_some() => {
                        if !io.flush_wanted {
                            io.flush_wanted = true;
                            io.task.as_ref().expect("checked").wake_by_ref();
                        }
                    }
                    _ => flush(state, conn, &mut Context::from_waker(Waker::noop()), now),
                }
            }
            while let Some(PoolEvent::Done { id, result }) = state.pool.poll_event() {
                progressed = true;
                let slot = state.slots.entry(id).or_default();
                slot.result = Some(result);
                if let Some(w) = slot.waker.take() {
                    w.wake();
                }
            }
            if !progressed {
                break;
            }
        }
        if let Some(t) = state.pool.poll_timeout()
            && state.timer_armed.is_none_or(|armed| t < armed)
        {
            state.timer_armed = Some(t);
            self.timer.notify_one();
        }
    }

    fn act(self: &Arc<Self>, state: &mut State, action: Action) {
        match action {
            Action::Dial { conn, addr } => {
                let endpoint = state.endpoints.get(&*addr).cloned();
                self.runtime.spawn(dial_task(self.clone(), conn, endpoint));
            }
            Action::Close { conn } => {
                if let Some(io) = state.conns.remove(&conn)
                    && let Some(task) = io.task
                {
                    task.wake();
                }
            }
            Action::Resolve { version } => {
                self.runtime
                    .spawn(resolve_task(self.clone(), version.map(|v| v.0)));
            }
            _ => {}
        }
    }
}

/// Writes `conn`'s pending bytes until done or the stream is full. With a
/// no-op waker (a caller's fast path) a full stream hands the rest to the
/// connection task, whose own poll registers for writability.
fn flush(state: &mut State, conn: ConnId, cx: &mut Context<'_>, now: Instant) {
    let State { pool, conns, .. } = state;
    let Some(io) = conns.get_mut(&conn) else {
        return;
    };
    loop {
        let Some(tx) = pool.transmit(conn) else {
            return;
        };
        if tx.is_empty() {
            return;
        }
        match poll_write(&mut io.stream, cx, tx) {
            Poll::Ready(Ok(n)) => pool.advance_transmit(conn, n),
            Poll::Ready(Err(e)) => {
                pool.handle_transport_closed(now, conn, &format!("write: {e}"));
                return;
            }
            Poll::Pending => {
                if let Some(task) = &io.task
                    && !task.will_wake(cx.waker())
                {
                    task.wake_by_ref();
                }
                return;
            }
        }
    }
}

async fn dial_task(shared: Arc<Shared>, conn: ConnId, endpoint: Option<SharedEndpoint>) {
    let dialed = match endpoint {
        Some(e) => e.dial().await,
        None => Err(std::io::Error::other("endpoint no longer known")),
    };
    let mut state = shared.lock();
    let now = Instant::now();
    match dialed {
        Ok(stream) => {
            state.conns.insert(
                conn,
                ConnIo {
                    stream,
                    task: None,
                    flush_wanted: false,
                },
            );
            state.pool.handle_dial_ok(now, conn);
            shared.runtime.spawn(conn_task(shared.clone(), conn));
        }
        Err(e) => {
            tracing::debug!(error = %e, "dial failed");
            state.pool.handle_dial_failed(now, conn, &e.to_string());
        }
    }
    shared.drive(&mut state, now);
}

async fn resolve_task(shared: Arc<Shared>, version: Option<u64>) {
    let closing = shared.closing.notified();
    if shared.lock().closed {
        return;
    }
    let resolved = tokio::select! {
        r = shared.resolver.resolve(version) => r,
        _ = closing => return,
    };
    let mut state = shared.lock();
    let now = Instant::now();
    match resolved {
        Ok((endpoints, version)) => {
            let addrs: Vec<String> = endpoints.iter().map(|e| e.address()).collect();
            for (a, e) in addrs.iter().zip(endpoints) {
                state.endpoints.insert(a.clone(), e);
            }
            let res = Resolution {
                addrs,
                version: version.map(EndpointsVersion),
            };
            state.pool.handle_resolved(now, res);
        }
        Err(e) => state.pool.handle_resolve_failed(now, &e.to_string()),
    }
    shared.drive(&mut state, now);
}

/// Reads a connection and finishes writes the callers could not.
async fn conn_task(shared: Arc<Shared>, conn: ConnId) {
    // Set while a flush callers asked for waits one turn of the scheduler.
    let mut deferred = false;
    poll_fn(|cx| {
        let mut guard = shared.lock();
        let state = &mut *guard;
        let now = Instant::now();
        // A caller woke us to write its request. Tokio runs a task woken
        // this way next, before the other callers that are ready, so
        // flushing now would write one frame per call: first let the
        // scheduler run them (a self-wake goes to the back of the queue),
        // then write everything they queued at once.
        if let Some(io) = state.conns.get_mut(&conn)
            && io.flush_wanted
        {
            if !deferred {
                deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            io.flush_wanted = false;
            deferred = false;
        }
        // Bound the work per wakeup so one busy connection cannot starve
        // the other tasks on this thread.
        for _ in 0..32 {
            let Some(io) = state.conns.get_mut(&conn) else {
                return Poll::Ready(());
            };
            if !io.task.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                io.task = Some(cx.waker().clone());
            }
            let Some(buf) = state.pool.read_buf(conn, READ_CHUNK) else {
                return Poll::Ready(());
            };
            match poll_read(&mut io.stream, cx, buf) {
                Poll::Ready(Ok(0)) => {
                    state
                        .pool
                        .handle_transport_closed(now, conn, "peer closed the connection");
                }
                Poll::Ready(Ok(_)) => state.pool.handle_read(now, conn),
                Poll::Ready(Err(e)) => {
                    state
                        .pool
                        .handle_transport_closed(now, conn, &format!("read: {e}"));
                }
                Poll::Pending => {
                    // Drive first, flush last: the final write attempt must
                    // register this task's waker, not a caller's no-op one.
                    shared.drive(state, now);
                    flush(state, conn, cx, now);
                    shared.drive(state, now);
                    return Poll::Pending;
                }
            }
            shared.drive(state, now);
        }
        // Out of budget with bytes still arriving: write what is queued
        // before yielding, so requests never wait behind a busy reader.
        flush(state, conn, cx, now);
        shared.drive(state, now);
        cx.waker().wake_by_ref();
        Poll::Pending
    })
    .await
}

/// Fires the pool's timers. The clock is read before every sleep is armed,
/// so a deadline already due is handled at once instead of after a poll of
/// an expired sleep that the runtime's budget may defer.
async fn timer_task(shared: Arc<Shared>) {
    loop {
        let notified = shared.timer.notified();
        let next = {
            let mut state = shared.lock();
            if state.closed {
                return;
            }
            let now = Instant::now();
            match state.pool.poll_timeout() {
                Some(t) if t <= now => {
                    state.pool.handle_timeout(now);
                    state.timer_armed = None;
                    shared.drive(&mut state, now);
                    continue;
                }
                next => {
                    state.timer_armed = next;
                    next
                }
            }
        };
        match next {
            Some(t) => {
                tokio::select! {
                    _ = tokio::time::sleep_until(t.into()) => {}
                    _ = notified => {}
                }
            }
            None => notified.await,
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
