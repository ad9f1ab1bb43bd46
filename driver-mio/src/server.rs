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
use weft_driver::server::{Dispatcher, InlinePolicy};
pub use weft_driver::server::{HandlerError, HandlerResult, Request, ServerOptions};
use weft_proto::{NetEndpoint, ServerConn};

use crate::stream::{Stream, read_once, write_once};

const WAKER: Token = Token(0);
const LISTENER: Token = Token(1);
/// How often the watchdog looks for a handler past its inline time.
const WATCHDOG_TICK: Duration = Duration::from_micros(500);

/// Threads the server may grow to while handlers hold others.
const MAX_THREADS: usize = 256;

type Handler = dyn Fn(Request) -> HandlerResult + Send + Sync;

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

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept()?;
                s.set_nodelay(true)?;
                Ok(Stream::Tcp(s))
            }
            Listener::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }
}

struct Conn {
    stream: Stream,
    core: ServerConn,
    requests: Dispatcher,
}

/// The poller. The thread that leads owns it while it takes a turn; between
/// turns it rests in [`Sched`], so leadership handed to another thread
/// (even while the old leader is running a handler) brings it along.
struct EventLoop {
    poll: Poll,
    events: Events,
    /// The earliest request deadline when the last turn ended: how long
    /// the next may wait. Only turns change deadlines, so it stays right.
    wake_at: Option<Instant>,
}

/// The listener and the connections. Locked while events are processed,
/// never while the leader waits for them.
struct Conns {
    listener: Option<Listener>,
    by_token: HashMap<usize, Conn>,
    next_token: usize,
}

struct Job {
    token: usize,
    id: u64,
    handler: Arc<Handler>,
    request: Request,
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
    threads: usize,
    idle: usize,
    shutdown: bool,
}

struct Shared {
    conns: Mutex<Conns>,
    sched: Mutex<Sched>,
    cv: Condvar,
    waker: Waker,
    registry: Registry,
    done: Mutex<Vec<(usize, u64, HandlerResult)>>,
    handlers: HandlerMap,
    opts: ServerOptions,
    policy: InlinePolicy,
    watchdog_parked: AtomicBool,
    watchdog: Mutex<Option<thread::Thread>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A weft server on a mio event loop.
///
/// A handler past its [`ServerOptions::inline_handler_duration`] loses the
/// event loop to another thread; the watchdog that notices checks every
/// 500 µs, so the hand-off happens within the duration plus 500 µs.
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
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
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
            }),
            sched: Mutex::new(Sched {
                event_loop: Some(EventLoop {
                    poll,
                    events: Events::with_capacity(256),
                    wake_at: None,
                }),
                ..Sched::default()
            }),
            cv: Condvar::new(),
            waker,
            registry,
            done: Mutex::new(Vec::new()),
            handlers,
            opts,
            policy: InlinePolicy::new(&opts),
            watchdog_parked: AtomicBool::new(false),
            watchdog: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        let watchdog = thread::Builder::new()
            .name("weft-mio-watchdog".into())
            .spawn(move || s.watchdog())?;
        *shared.watchdog.lock().expect("unpoisoned") = Some(watchdog.thread().clone());
        shared.threads.lock().expect("unpoisoned").push(watchdog);
        for _ in 0..2 {
            shared.spawn_worker()?;
        }
        Ok(Server { shared, local })
    }

    /// The endpoint clients dial (with the real port).
    pub fn local_endpoint(&self) -> &NetEndpoint {
        &self.local
    }

    /// Stops accepting, closes every connection (cancelling handlers), and
    /// waits for the server's threads to finish.
    pub fn shutdown(self) {
        self.stop();
    }

    fn stop(&self) {
        // Workers stop leading first: wake the leader out of poll and the
        // followers out of their wait; each sees the flag on its way out.
        self.shared.sched().shutdown = true;
        self.shared.cv.notify_all();
        let _ = self.shared.waker.wake();
        if let Some(w) = self.shared.watchdog.lock().expect("unpoisoned").as_ref() {
            w.unpark();
        }
        {
            let mut conns = self.shared.lock_conns();
            let now = Instant::now();
            conns.listener = None;
            for c in conns.by_token.values_mut() {
                c.core.close(now);
            }
            // Cancels every handler still running, so the joins below end.
            self.shared.process(&mut conns, now);
        }
        let threads = std::mem::take(&mut *self.shared.threads.lock().expect("unpoisoned"));
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if !self.shared.sched().shutdown {
            self.stop();
        }
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
        let s = self.clone();
        self.sched().threads += 1;
        let t = thread::Builder::new()
            .name("weft-mio-server".into())
            .spawn(move || s.worker())?;
        self.threads.lock().expect("unpoisoned").push(t);
        Ok(())
    }

    /// A server thread: leads when it can, runs handlers, else waits.
    fn worker(self: Arc<Self>) {
        let mut epoch = None;
        // The poller after a turn, until it goes back to `Sched` under the
        // lock the next iteration takes anyway.
        let mut after_turn = None;
        loop {
            let mut s = self.sched();
            if let Some(event_loop) = after_turn.take() {
                s.event_loop = Some(event_loop);
            }
            if s.shutdown {
                s.threads -= 1;
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
            }
            if let Some(job) = s.jobs.pop_front() {
                let inline = self.policy.starts_inline();
                if inline {
                    s.running_since = Some(Instant::now());
                } else {
                    // Hand the loop over before running the handler.
                    s.leader = false;
                    s.epoch += 1;
                    epoch = None;
                }
                let need_spare = s.idle == 0 && s.threads < MAX_THREADS;
                drop(s);
                if need_spare {
                    let _ = self.spawn_worker();
                }
                if inline {
                    self.wake_watchdog();
                } else {
                    self.cv.notify_one();
                }
                self.run(job);
                let mut s = self.sched();
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
            drop(s);
            self.lead_once(&mut event_loop);
            after_turn = Some(event_loop);
        }
    }

    fn run(&self, job: Job) {
        let result = (job.handler)(job.request);
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
            thread::sleep(tick);
            let mut s = self.sched();
            if s.shutdown {
                return;
            }
            match s.running_since {
                Some(since) if self.policy.is_due(since, Instant::now()) => {
                    s.epoch += 1;
                    s.leader = false;
                    s.running_since = None;
                    let need_spare = s.idle == 0 && s.threads < MAX_THREADS;
                    drop(s);
                    if need_spare {
                        let _ = self.spawn_worker();
                    }
                    self.cv.notify_one();
                    quiet_since = Instant::now();
                }
                Some(_) => quiet_since = Instant::now(),
                None if quiet_since.elapsed() > Duration::from_millis(10) => {
                    self.watchdog_parked.store(true, Ordering::Release);
                    drop(s);
                    // A handler starting after the store unparks us.
                    thread::park();
                    quiet_since = Instant::now();
                }
                None => {}
            }
        }
    }

    /// One turn of the event loop: waits for readiness holding only the
    /// poller, then reads, accepts and processes with the connections
    /// locked.
    fn lead_once(&self, lp: &mut EventLoop) {
        let has_done = !self.done.lock().expect("unpoisoned").is_empty();
        let timeout = if has_done {
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
        let now = Instant::now();
        let mut conns = self.lock_conns();
        for event in lp.events.iter() {
            match event.token() {
                WAKER => {}
                LISTENER => self.accept(&mut conns, now),
                Token(t) => {
                    if let Some(c) = conns.by_token.get_mut(&t) {
                        // A writable edge too: a connection not read while its
                        // client left answers unread has bytes waiting whose
                        // readable edge already passed.
                        read_conn(c, now);
                    }
                }
            }
        }
        lp.wake_at = self.process(&mut conns, now);
    }

    fn accept(&self, conns: &mut Conns, now: Instant) {
        let opts = self.opts;
        loop {
            let Some(l) = &conns.listener else { return };
            match l.accept() {
                Ok(mut stream) => {
                    let t = conns.next_token;
                    conns.next_token += 1;
                    if let Err(e) = self.registry.register(
                        &mut stream,
                        Token(t),
                        Interest::READABLE | Interest::WRITABLE,
                    ) {
                        tracing::warn!(error = %e, "register failed");
                        continue;
                    }
                    conns.by_token.insert(
                        t,
                        Conn {
                            stream,
                            core: ServerConn::new(
                                now,
                                opts.server_config(weft_driver::random_seed()),
                            ),
                            requests: Dispatcher::new(),
                        },
                    );
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    return;
                }
            }
        }
    }

    /// Applies finished handlers, timers and core events; writes; closes
    /// finished connections. Returns the earliest request deadline left.
    fn process(&self, conns: &mut Conns, now: Instant) -> Option<Instant> {
        let done = std::mem::take(&mut *self.done.lock().expect("unpoisoned"));
        for (t, id, result) in done {
            if let Some(c) = conns.by_token.get_mut(&t) {
                c.requests.finish(now, &mut c.core, id, result);
            }
        }
        let mut jobs = Vec::new();
        let mut finished = Vec::new();
        let mut wake_at: Option<Instant> = None;
        for (&t, c) in conns.by_token.iter_mut() {
            if c.core.next_deadline().is_some_and(|d| d <= now) {
                c.core.handle_timeout(now);
            }
            while let Some(event) = c.core.poll_event() {
                let handlers = &self.handlers.0;
                if let Some(d) = c.requests.on_event(now, &mut c.core, handlers, event) {
                    jobs.push(Job {
                        token: t,
                        id: d.id,
                        handler: d.handler.clone(),
                        request: d.request,
                    });
                }
            }
            if c.requests.is_closed() {
                finished.push(t);
            }
            flush_conn(c, now);
            // A failed connection has no deadlines left, so it adds none.
            wake_at = wake_at.into_iter().chain(c.core.next_deadline()).min();
        }
        for t in finished {
            if let Some(mut c) = conns.by_token.remove(&t) {
                let _ = self.registry.deregister(&mut c.stream);
            }
        }
        if !jobs.is_empty() {
            let mut s = self.sched();
            s.jobs.extend(jobs);
        }
        wake_at
    }
}

fn read_conn(c: &mut Conn, now: Instant) {
    // Not while the client leaves too many answers unread: the writable
    // edge when it takes them brings the loop back here.
    while c.core.wants_read() {
        match read_once(&mut c.stream, c.core.read_buf(0)) {
            Ok(0) => {
                return c
                    .core
                    .handle_transport_closed(now, "client closed the connection");
            }
            Ok(_) => c.core.handle_read(now),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return c.core.handle_transport_closed(now, format!("read: {e}")),
        }
    }
}

fn flush_conn(c: &mut Conn, now: Instant) {
    while !c.core.transmit().is_empty() {
        match write_once(&mut c.stream, c.core.transmit()) {
            Ok(n) => c.core.advance_transmit(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return c.core.handle_transport_closed(now, format!("write: {e}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_waits_in_poll_without_the_connection_lock() {
        let server = Server::bind(
            &"tcp://127.0.0.1:0".parse().expect("endpoint"),
            HandlerMap::new(),
            ServerOptions::default(),
        )
        .expect("bind");
        // With no connection nothing is ready, so once a worker has taken
        // the poller it stays in `poll`.
        while server.shared.sched().event_loop.is_some() {
            thread::yield_now();
        }
        assert!(
            server.shared.conns.try_lock().is_ok(),
            "the leader holds the connections while it waits"
        );
        server.shutdown();
    }
}
