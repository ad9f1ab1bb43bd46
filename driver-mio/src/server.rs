//! The mio server: sync handlers on a leader/follower event loop.
//!
//! One thread at a time leads: it polls, reads and decodes, and writes
//! responses. A request's handler runs inline on the leader, so a fast call
//! costs no thread hand-off. If the handler is still running after the
//! inline handler duration, a watchdog hands the event loop to another
//! thread, which keeps serving every other call; the slow handler finishes
//! on the thread it started on and its response is queued for whoever leads.
//! The poller goes with leadership, and the connections are locked only
//! while a turn processes what `poll` returned, not while it waits.
//!
//! Whatever handlers do, the loop keeps turning: a thread that takes the
//! lead polls before it runs any queued handler, at most 256 handlers run at
//! once so one more thread is always there to lead, and the loop never waits
//! for a handler. Past 256, handlers wait in a bounded queue (then the
//! request gets [`OVERLOADED`](weft_driver::server::OVERLOADED)); past the
//! per-connection limit, a connection is not read. A turn reads each
//! connection a bounded number of times, so no client holds the loop.
//!
//! What a request is, how it reaches its handler and how cancels reach it
//! are `weft_driver::server`'s; this file is the event loop around them.

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Registry, Token, Waker};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use weft_driver::server::{AcceptBackoff, AcceptFailure, Dispatcher, InlinePolicy, catch_panic};
pub use weft_driver::server::{
    HandlerError, HandlerResult, PeerAddr, Request, ServerOptions, Shutdown,
};
use weft_proto::{NetEndpoint, ServerConn};

use crate::stream::Stream;
use conn::{Conn, close_write, flush_conn, pump};

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
/// How often the watchdog looks for a handler past its inline time.
const WATCHDOG_TICK: Duration = Duration::from_micros(500);
const WATCHDOG_NAME: &str = "weft-mio-watchdog";
/// How long a stop waits for handlers to return once cancelled.
const STOP_WAIT: Duration = Duration::from_secs(1);

/// Handlers that may run at once, each holding a thread.
const MAX_RUNNING: usize = 256;
/// Threads the server may grow to: one more than handlers, so that with
/// every handler blocked a thread is still free to lead.
const MAX_THREADS: usize = MAX_RUNNING + 1;
/// Queued handlers a leader runs inline before it polls again.
const JOBS_PER_TURN: usize = 64;

type Handler = dyn Fn(Request) -> HandlerResult + Send + Sync;

#[cfg(feature = "tls")]
type ServerTlsOption = weft_driver::tls::ServerTls;
/// Without the feature nothing can be passed.
#[cfg(not(feature = "tls"))]
type ServerTlsOption = std::convert::Infallible;

/// Synchronous handlers by method.
///
/// ```
/// let mut handlers = weft_mio::HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: weft_mio::Request| Ok(req.args));
/// ```
#[derive(Clone, Default, Debug)]
pub struct HandlerMap(weft_driver::server::HandlerMap<Handler>);

impl HandlerMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `component.method` with `handler`.
    pub fn set<F>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> HandlerResult + Send + Sync + 'static,
    {
        self.0.insert(component, method, Arc::new(handler));
    }
}

impl weft_driver::component::BlockingHandlers for HandlerMap {
    fn add<F>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> HandlerResult + Send + Sync + 'static,
    {
        self.set(component, method, handler);
    }
}

/// The poller. The thread that leads owns it while it takes a turn; between
/// turns it rests in [`Sched`], so leadership handed to another thread
/// (even while the old leader is running a handler) brings it along.
struct EventLoop {
    poll: Poll,
    events: Events,
    /// The earliest timer when the last turn ended (request deadlines, the
    /// end of an accept pause): how long the next may wait. Only turns
    /// change them, so it stays right.
    wake_at: Option<Instant>,
    /// The last turn left work it could do at once (reads past the budget,
    /// refused requests' slots): the next does not wait.
    busy: bool,
}

/// The listener and the connections. Locked while events are processed,
/// never while the leader waits for them.
struct Conns {
    listener: Option<Listener>,
    by_token: HashMap<usize, Conn>,
    next_token: usize,
    /// The listener reported connections and not all were accepted.
    accept_pending: bool,
    /// After running out of descriptors, no accept before this.
    accept_paused_until: Option<Instant>,
    backoff: AcceptBackoff,
    /// The [`Shutdown`] generation the connections were last told of.
    shutdown_seen: u64,
    /// Scratch space reused by every turn, so a turn does not allocate.
    scratch: Scratch,
}

#[derive(Default)]
struct Scratch {
    done: Vec<(usize, u64, HandlerResult)>,
    jobs: Vec<Job>,
    finished: Vec<usize>,
}

struct Job {
    token: usize,
    id: u64,
    handler: Arc<Handler>,
    request: Request,
    span: tracing::Span,
}

#[derive(Default)]
struct Sched {
    /// The poller, while nobody is taking a turn with it.
    event_loop: Option<EventLoop>,
    jobs: VecDeque<Job>,
    /// Someone holds leadership (maybe while running a handler).
    leader: bool,
    /// Bumped when leadership is taken from a thread running a handler.
    epoch: u64,
    /// When the leader started the handler it is running.
    running_since: Option<Instant>,
    /// Handlers running, inline or moved off; at most [`MAX_RUNNING`].
    running: usize,
    threads: usize,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    conns: Mutex<Conns>,
    sched: Mutex<Sched>,
    cv: Condvar,
    waker: Arc<Waker>,
    registry: Registry,
    shutdown: Shutdown,
    /// Notified (with `conns`) when a shutdown has closed every connection.
    stopped: Condvar,
    done: Mutex<Vec<(usize, u64, HandlerResult)>>,
    handlers: HandlerMap,
    opts: ServerOptions,
    policy: InlinePolicy,
    watchdog_parked: AtomicBool,
    watchdog: Mutex<Option<thread::Thread>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// Accepted connections are served under TLS with these settings.
    #[cfg(feature = "tls")]
    tls: Option<weft_driver::tls::ServerTls>,
}

/// A weft server on a mio event loop.
///
/// A handler past its [`ServerOptions::inline_handler_duration`] loses the
/// event loop to another thread; the watchdog that notices checks every
/// 500 µs, so the hand-off happens within the duration plus 500 µs. At most
/// 256 handlers run at once, each on its own thread; past that, up to
/// [`ServerOptions::max_queued_requests`] wait for one, and more are
/// answered with an `overloaded` error. A handler that panics fails its own
/// call with `handler panicked: <message>`. If accepting fails for good
/// (the listener broke; running out of descriptors only pauses it), the
/// server logs the error and shuts down gracefully, as
/// [`shutdown_handle`](Self::shutdown_handle)`().graceful(shutdown_grace)`
/// would.
///
/// ```no_run
/// use weft_mio::{HandlerMap, Request, Server, ServerOptions};
/// let mut handlers = HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: Request| Ok(req.args));
/// let server = Server::bind(&"tcp://127.0.0.1:0".parse()?, handlers, ServerOptions::default())?;
/// println!("listening {}", server.local_endpoint());
/// server.shutdown();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Server {
    shared: Arc<Shared>,
    local: NetEndpoint,
}

impl Server {
    /// Binds `endpoint` (port 0 picks one) and starts serving `handlers`.
    pub fn bind(
        endpoint: &NetEndpoint,
        handlers: HandlerMap,
        opts: ServerOptions,
    ) -> io::Result<Server> {
        Self::start(endpoint, handlers, opts, None)
    }

    /// Binds `endpoint` and serves `handlers` under TLS (mutual TLS if
    /// `tls` names a client CA). Clients dial it with a `TlsEndpoint` of
    /// [`local_endpoint`](Self::local_endpoint).
    #[cfg(feature = "tls")]
    pub fn bind_tls(
        endpoint: &NetEndpoint,
        tls: weft_driver::tls::ServerTls,
        handlers: HandlerMap,
        opts: ServerOptions,
    ) -> io::Result<Server> {
        Self::start(endpoint, handlers, opts, Some(tls))
    }

    fn start(
        endpoint: &NetEndpoint,
        handlers: HandlerMap,
        opts: ServerOptions,
        tls: Option<ServerTlsOption>,
    ) -> io::Result<Server> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let shutdown = Shutdown::new();
        let loop_waker = waker.clone();
        shutdown.on_change(move || {
            let _ = loop_waker.wake();
        });
        let (mut listener, local) = match endpoint {
            NetEndpoint::Tcp(addr) => {
                let addr = std::net::ToSocketAddrs::to_socket_addrs(addr.as_str())?
                    .next()
                    .ok_or_else(|| io::Error::other("address resolves to nothing"))?;
                let l = TcpListener::bind(addr)?;
                let local = NetEndpoint::Tcp(l.local_addr()?.to_string());
                (Listener::Tcp(l), local)
            }
            NetEndpoint::Unix(path) => {
                (Listener::Unix(UnixListener::bind(path)?), endpoint.clone())
            }
        };
        match &mut listener {
            Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
            Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
        }
        let registry = poll.registry().try_clone()?;
        let shared = Arc::new(Shared {
            conns: Mutex::new(Conns {
                listener: Some(listener),
                by_token: HashMap::new(),
                next_token: 2,
                accept_pending: false,
                accept_paused_until: None,
                backoff: AcceptBackoff::new(),
                shutdown_seen: 0,
                scratch: Scratch::default(),
            }),
            sched: Mutex::new(Sched {
                event_loop: Some(EventLoop {
                    poll,
                    events: Events::with_capacity(256),
                    wake_at: None,
                    busy: false,
                }),
                ..Sched::default()
            }),
            cv: Condvar::new(),
            waker,
            registry,
            shutdown,
            stopped: Condvar::new(),
            done: Mutex::new(Vec::new()),
            handlers,
            opts,
            policy: InlinePolicy::new(&opts),
            watchdog_parked: AtomicBool::new(false),
            watchdog: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            #[cfg(feature = "tls")]
            tls,
        });
        #[cfg(not(feature = "tls"))]
        let _ = tls;
        // Owned from here: if a thread cannot start, dropping the server
        // stops the ones that did.
        let server = Server { shared, local };
        let s = server.shared.clone();
        let watchdog = thread::Builder::new()
            .name(WATCHDOG_NAME.into())
            .spawn(move || s.watchdog())?;
        *server.shared.watchdog.lock().expect("unpoisoned") = Some(watchdog.thread().clone());
        server
            .shared
            .threads
            .lock()
            .expect("unpoisoned")
            .push(watchdog);
        for _ in 0..2 {
            server.shared.spawn_worker()?;
        }
        Ok(server)
    }

    /// The endpoint clients dial (with the real port).
    pub fn local_endpoint(&self) -> &NetEndpoint {
        &self.local
    }
}

impl Shared {
    fn lock_conns(&self) -> MutexGuard<'_, Conns> {
        self.conns.lock().expect("weft-mio server state poisoned")
    }

    fn sched(&self) -> MutexGuard<'_, Sched> {
        self.sched.lock().expect("weft-mio scheduler poisoned")
    }

    fn spawn_worker(self: &Arc<Self>) -> io::Result<()> {
        self.sched().threads += 1;
        let s = self.clone();
        match thread::Builder::new()
            .name("weft-mio-server".into())
            .spawn(move || s.worker())
        {
            Ok(t) => {
                self.threads.lock().expect("unpoisoned").push(t);
                Ok(())
            }
            Err(e) => {
                self.sched().threads -= 1;
                tracing::error!(error = %e, "cannot start a server thread");
                Err(e)
            }
        }
    }

    /// Gives up leadership (the caller runs a handler, or the watchdog took
    /// it from one) and makes sure another thread takes it: an idle one, or
    /// a new one. With [`MAX_THREADS`] threads and none idle, one is on its
    /// way back from a handler (at most [`MAX_RUNNING`] run) and takes it.
    fn vacate(self: &Arc<Self>, mut s: MutexGuard<'_, Sched>) {
        s.leader = false;
        s.epoch += 1;
        s.running_since = None;
        let spawn = s.idle == 0 && s.threads < MAX_THREADS;
        drop(s);
        if !spawn || self.spawn_worker().is_err() {
            self.cv.notify_one();
        }
    }

    /// A server thread: leads when it can, runs handlers, else waits.
    fn worker(self: Arc<Self>) {
        // The epoch this thread leads in, while it leads.
        let mut epoch = None;
        // The poller after a turn, until it goes back to `Sched` under the
        // lock the next iteration takes anyway.
        let mut after_turn = None;
        // Queued handlers this leader may still run before it polls again;
        // a thread that has just taken the lead polls first.
        let mut budget = 0;
        loop {
            let mut s = self.sched();
            if let Some(event_loop) = after_turn.take() {
                s.event_loop = Some(event_loop);
            }
            if s.shutdown {
                s.threads -= 1;
                // `stop` waits on this for the last thread.
                self.cv.notify_all();
                return;
            }
            if epoch.is_none() {
                if s.leader {
                    s.idle += 1;
                    s = self.cv.wait(s).expect("unpoisoned");
                    s.idle -= 1;
                    continue;
                }
                s.leader = true;
                epoch = Some(s.epoch);
                budget = 0;
            }
            if budget > 0
                && s.running < MAX_RUNNING
                && let Some(job) = s.jobs.pop_front()
            {
                budget -= 1;
                s.running += 1;
                if self.policy.starts_inline() {
                    s.running_since = Some(Instant::now());
                    // A thread ready to lead, should the handler overrun.
                    let spare = s.idle == 0 && s.threads < MAX_THREADS;
                    drop(s);
                    if spare {
                        let _ = self.spawn_worker();
                    }
                    self.wake_watchdog();
                } else {
                    // Hand the loop over before running the handler.
                    epoch = None;
                    self.vacate(s);
                }
                self.run(job);
                let mut s = self.sched();
                s.running -= 1;
                if epoch == Some(s.epoch) {
                    s.running_since = None;
                } else {
                    // The loop moved on without us; our response is queued.
                    epoch = None;
                    drop(s);
                    let _ = self.waker.wake();
                }
                continue;
            }
            // Only the leader turns the loop, and it is not turning it now,
            // so the poller is at rest.
            let mut event_loop = s.event_loop.take().expect("the poller rests in Sched");
            let runnable = s.running < MAX_RUNNING && !s.jobs.is_empty();
            drop(s);
            self.lead_once(&mut event_loop, runnable);
            budget = JOBS_PER_TURN;
            after_turn = Some(event_loop);
        }
    }

    fn run(&self, job: Job) {
        let result = {
            let _entered = job.span.enter();
            catch_panic(|| (job.handler)(job.request)).unwrap_or_else(Err)
        };
        self.done
            .lock()
            .expect("unpoisoned")
            .push((job.token, job.id, result));
    }

    fn wake_watchdog(&self) {
        if self.watchdog_parked.swap(false, Ordering::AcqRel)
            && let Some(w) = self.watchdog.lock().expect("unpoisoned").as_ref()
        {
            w.unpark();
        }
    }

    /// Takes the loop from a leader whose handler overran. It ticks only
    /// while handlers are running, and parks after a quiet spell.
    fn watchdog(self: Arc<Self>) {
        let Some(limit) = self.policy.limit() else {
            return;
        };
        // Each check is a thread wakeup on a busy core: checking every
        // 50 us cost a third of the one-core throughput in `weft bench`,
        // every 500 us about 5 %. So a handler moves off after between
        // `limit` and `limit + WATCHDOG_TICK`.
        let tick = limit.max(WATCHDOG_TICK);
        let mut quiet_since = Instant::now();
        loop {
            // Parked rather than asleep, so that a stop (which unparks)
            // need not wait out a long tick. An early wake just checks.
            thread::park_timeout(tick);
            let s = self.sched();
            if s.shutdown {
                return;
            }
            match s.running_since {
                Some(since) if self.policy.is_due(since, Instant::now()) => {
                    self.vacate(s);
                    quiet_since = Instant::now();
                }
                Some(_) => quiet_since = Instant::now(),
                None if quiet_since.elapsed() > Duration::from_millis(10) => {
                    self.watchdog_parked.store(true, Ordering::Release);
                    drop(s);
                    // A handler starting after the store unparks us, and
                    // so does a stop, which must not wait out a tick.
                    thread::park();
                    if self.sched().shutdown {
                        return;
                    }
                    quiet_since = Instant::now();
                }
                None => {}
            }
        }
    }

    /// One turn of the event loop: waits for readiness holding only the
    /// poller, then reads, accepts and processes with the connections
    /// locked. `runnable`: queued handlers are waiting for this turn to end.
    fn lead_once(&self, lp: &mut EventLoop, runnable: bool) {
        let answered = !self.done.lock().expect("unpoisoned").is_empty();
        if answered && !runnable && !lp.busy {
            // Only handlers' answers are waiting: send them before looking
            // for news, which would cost a poll on the way to every reply.
            lp.events.clear();
        } else {
            let timeout = if runnable || lp.busy || answered {
                Some(Duration::ZERO)
            } else {
                let now = Instant::now();
                lp.wake_at.map(|d| d.saturating_duration_since(now))
            };
            if let Err(e) = lp.poll.poll(&mut lp.events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "server event loop failed");
            }
        }
        let now = Instant::now();
        let mut conns = self.lock_conns();
        for event in lp.events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => conns.accept_pending = true,
                Token(t) => {
                    if let Some(c) = conns.by_token.get_mut(&t)
                        && (event.is_readable() || event.is_read_closed() || event.is_error())
                    {
                        c.readable = true;
                        c.closing |= event.is_read_closed() || event.is_error();
                    }
                }
            }
        }
        self.accept(&mut conns, now);
        (lp.wake_at, lp.busy) = self.process(&mut conns, now);
    }

    /// Accepts every waiting connection, unless paused. Edge-triggered
    /// readiness reports connections once, so after a pause the ones
    /// already waiting are accepted with no new event.
    fn accept(&self, conns: &mut Conns, now: Instant) {
        if !conns.accept_pending || conns.accept_paused_until.is_some_and(|t| now < t) {
            return;
        }
        conns.accept_paused_until = None;
        let config = self.opts.server_config(weft_driver::random_seed());
        loop {
            let Some(l) = &conns.listener else { return };
            // At max_connections: left pending, accepted once one closes.
            if !self.opts.accepts_more(conns.by_token.len()) {
                return;
            }
            match l.accept().and_then(|(s, peer)| Ok((self.secure(s)?, peer))) {
                Ok((mut stream, peer)) => {
                    conns.backoff.on_success();
                    let t = conns.next_token;
                    conns.next_token += 1;
                    // Writability is asked for only while a write is blocked:
                    // otherwise every reply's acknowledgement would wake the
                    // poller once more.
                    if let Err(e) =
                        self.registry
                            .register(&mut stream, Token(t), Interest::READABLE)
                    {
                        tracing::warn!(error = %e, "register failed");
                        continue;
                    }
                    conns.by_token.insert(
                        t,
                        Conn {
                            stream,
                            core: ServerConn::new(now, config),
                            requests: Dispatcher::new(&self.opts).with_peer(peer),
                            readable: false,
                            closing: false,
                            write_blocked: false,
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    conns.accept_pending = false;
                    return;
                }
                Err(e) => match conns.backoff.on_error(&e) {
                    AcceptFailure::Transient => {}
                    AcceptFailure::Exhausted(pause) => {
                        conns.accept_paused_until = Some(now + pause);
                        return;
                    }
                    // The listener broke: this server shuts down
                    // gracefully (accepting ends, connections drain), as
                    // a Tokio server's serve does before returning the
                    // error.
                    AcceptFailure::Fatal => {
                        conns.accept_pending = false;
                        self.shutdown.graceful(self.opts.shutdown_grace);
                        return;
                    }
                },
            }
        }
    }

    /// Puts an accepted socket under TLS if the server is configured so.
    fn secure(&self, stream: Stream) -> io::Result<Stream> {
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let conn = tls.accept()?;
            return Ok(Stream::Tls(Box::new(crate::tls::TlsStream::new(
                stream, conn,
            ))));
        }
        Ok(stream)
    }

    /// Applies finished handlers, reads, timers and core events; queues
    /// handlers; writes; closes finished connections. Returns the earliest
    /// timer left, and whether work is left that the next turn can do at
    /// once.
    fn process(&self, conns: &mut Conns, now: Instant) -> (Option<Instant>, bool) {
        self.apply_shutdown(conns, now);
        let mut scratch = std::mem::take(&mut conns.scratch);
        std::mem::swap(
            &mut *self.done.lock().expect("unpoisoned"),
            &mut scratch.done,
        );
        for (t, id, result) in scratch.done.drain(..) {
            if let Some(c) = conns.by_token.get_mut(&t) {
                c.requests.finish(now, &mut c.core, id, result);
            }
        }
        // What the scheduler holds, read at the first new request: with
        // every handler thread busy and the queue full, requests are
        // refused.
        let mut load: Option<(usize, usize)> = None;
        let Scratch { jobs, finished, .. } = &mut scratch;
        let mut wake_at: Option<Instant> = None;
        let mut busy = false;
        for (&t, c) in conns.by_token.iter_mut() {
            if c.core.next_deadline().is_some_and(|d| d <= now) {
                c.core.handle_timeout(now);
            }
            busy |= pump(c, now, &self.handlers.0);
            while let Some(d) = c.requests.next_dispatch() {
                let (running, queued) = load.get_or_insert_with(|| {
                    let s = self.sched();
                    (s.running, s.jobs.len())
                });
                if *running >= MAX_RUNNING && *queued >= self.opts.max_queued_requests {
                    c.requests.refuse_overloaded(now, &mut c.core, d.id);
                    // A slot is free again; its next request waits a turn.
                    busy = true;
                    continue;
                }
                *queued += 1;
                jobs.push(Job {
                    token: t,
                    id: d.id,
                    handler: d.handler,
                    request: d.request,
                    span: d.span,
                });
            }
            // Handing requests out made room: the core's body timeout
            // runs again if reading resumes.
            c.requests.sync_read_paused(now, &mut c.core);
            busy |= flush_conn(c, Token(t), &self.registry, now);
            busy |= close_write(c, Token(t), &self.registry, now);
            // Writing may have brought the queued output back under its
            // limit: a connection still readable is read next turn, since
            // edge-triggered readiness will not report it again.
            busy |= c.readable && c.requests.wants_read(&c.core);
            // Closed once what was queued before the failure went out (or
            // its linger ran out).
            if c.requests.is_closed() && c.core.is_finished() {
                finished.push(t);
            }
            // A failed connection has no deadlines left, so it adds none.
            wake_at = wake_at.into_iter().chain(c.core.next_deadline()).min();
        }
        for t in finished.drain(..) {
            if let Some(mut c) = conns.by_token.remove(&t) {
                let _ = self.registry.deregister(&mut c.stream);
            }
        }
        self.notify_if_stopped(conns);
        // A connection closed under max_connections: accept what waits.
        busy |= conns.accept_pending
            && conns.listener.is_some()
            && conns.accept_paused_until.is_none()
            && self.opts.accepts_more(conns.by_token.len());
        if !jobs.is_empty() {
            let mut s = self.sched();
            s.jobs.extend(jobs.drain(..));
        }
        conns.scratch = scratch;
        if conns.accept_pending {
            wake_at = wake_at.into_iter().chain(conns.accept_paused_until).min();
        }
        (wake_at, busy)
    }
}

mod conn;
mod listener;
use listener::Listener;
mod shutdown;
#[cfg(test)]
mod tests;
