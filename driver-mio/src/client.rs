//! The blocking client: callers on any thread, one event-loop thread.
//!
//! Everything but waiting is `weft_driver::client`'s: this module says how
//! mio dials and resolves (helper threads, since both block), runs
//! connections (registered with one poller) and sleeps until the router's
//! next timer (the poller's timeout). A caller writes its own request when
//! the socket takes it, then either polls itself, if nobody else does, or
//! parks until its result arrives (`lead`).

use crate::resolver::{Resolver, SharedEndpoint};
use crate::stream::Stream;
use bytes::Bytes;
use lead::LoopShared;
use mio::{Interest, Token};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};
use weft_driver::client::{Client as Core, ConnCell, Runtime};
use weft_proto::{CallError, CallOptions, MethodKey};
use weft_proto::{ConnId, EndpointsVersion, PoolCallId, ResolverKind};

pub use weft_driver::client::ClientOptions;

mod lead;
mod parking;

/// A blocking client of one service, callable from any number of threads.
///
/// Cheap to clone; all clones are one client, closed when the last one is
/// dropped (or by [`close`](Self::close)).
///
/// ```no_run
/// use bytes::Bytes;
/// use weft_mio::{CallOptions, Client, ClientOptions, ConstantResolver, MethodKey, NetEndpoint};
///
/// let server: NetEndpoint = "tcp://127.0.0.1:7000".parse()?;
/// let client = Client::connect(ConstantResolver::new([server]), ClientOptions::default())?;
/// let out = client.call(MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"), CallOptions::default())?;
/// assert_eq!(&out[..], b"hi");
/// client.close();
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core<Mio>>,
    shared: Arc<LoopShared>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Nanoseconds a caller spins before parking.
    spin: AtomicU64,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}

impl Inner {
    fn close(&self) {
        self.core.close();
        // The loop thread may be resting while callers lead: it finishes
        // the connections now.
        self.shared.notify();
        if let Some(t) = self.thread.lock().expect("unpoisoned").take() {
            let _ = t.join();
        }
    }
}

/// How the shared client runs on mio and threads.
struct Mio {
    resolver: Arc<dyn Resolver>,
    shared: Arc<LoopShared>,
    /// The router gives up on a dial after this ([`ClientOptions::connect_timeout`]);
    /// a dial's thread stops then too, rather than blocking until the
    /// kernel gives up (minutes, for a silent address; never, for a Unix
    /// socket whose server stopped accepting).
    connect_timeout: Duration,
}

impl Runtime for Mio {
    type Endpoint = SharedEndpoint;
    type Stream = Stream;

    fn dial(&self, client: &Arc<Core<Self>>, conn: ConnId, endpoint: Option<SharedEndpoint>) {
        let c = client.clone();
        let timeout = self.connect_timeout;
        let spawned = thread::Builder::new()
            .name("weft-mio-dial".into())
            .spawn(move || {
                let dialed = match endpoint {
                    Some(e) => e.dial_timeout(timeout),
                    None => Err(io::Error::other("endpoint no longer known")),
                };
                c.dialed(conn, dialed);
            });
        if let Err(e) = spawned {
            client.dialed(conn, Err(e));
        }
    }

    fn resolve(&self, client: &Arc<Core<Self>>, version: Option<EndpointsVersion>) {
        // Weak: a resolver may block until its set changes, which may be
        // never; the client, once closed and dropped, must not live on
        // inside that thread.
        let c = Arc::downgrade(client);
        let resolver = self.resolver.clone();
        let spawned = thread::Builder::new()
            .name("weft-mio-resolve".into())
            .spawn(move || {
                // A resolver that panics fails this resolve, which the
                // router retries after backoff; unanswered, it would never
                // ask again.
                let resolved = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    resolver.resolve(version)
                }))
                .unwrap_or_else(|payload| {
                    let why = weft_driver::server::panic_text(&*payload);
                    Err(crate::ResolveError(format!("the resolver panicked: {why}")))
                });
                if let Some(c) = c.upgrade() {
                    c.resolved(
                        resolved
                            .map(|(endpoints, v)| (named(endpoints), v))
                            .map_err(|e| e.0),
                    );
                }
            });
        if let Err(e) = spawned {
            client.resolved(Err(format!("could not start its thread: {e}")));
        }
    }

    fn run_conn(&self, client: &Arc<Core<Self>>, cell: Arc<ConnCell<Stream>>) {
        let token = Token(cell.id().0 as usize);
        let interest = Interest::READABLE | Interest::WRITABLE;
        let registered = cell.with_stream(|s| self.shared.registry.register(s, token, interest));
        if let Some(Err(e)) = registered {
            return client.conn_broken(&cell, &format!("registering with the poller: {e}"));
        }
        self.shared.adopt(cell);
    }

    fn wake_timer(&self) {
        self.shared.notify();
    }
}

fn io_err(e: io::Error) -> CallError {
    CallError::Unreachable(format!("event loop: {e}"))
}

fn named(endpoints: Vec<SharedEndpoint>) -> Vec<(String, SharedEndpoint)> {
    endpoints.into_iter().map(|e| (e.address(), e)).collect()
}

impl Client {
    /// Connects to the replicas `resolver` names and starts the event loop.
    ///
    /// A constant resolver with no endpoints fails with an *unreachable*
    /// error.
    pub fn connect(resolver: impl Resolver, opts: ClientOptions) -> Result<Client, CallError> {
        let (core, shared) = Self::assemble(resolver, opts)?;
        let (c, s) = (core.clone(), shared.clone());
        let thread = thread::Builder::new()
            .name("weft-mio-client".into())
            .spawn(move || lead::event_loop(c, s))
            .map_err(|e| {
                // The core has started dials and a resolve: end them.
                core.close();
                io_err(e)
            })?;
        Ok(Self::with_loop(core, shared, Some(thread)))
    }

    /// The core and its poller, with no thread polling yet.
    fn assemble(
        resolver: impl Resolver,
        opts: ClientOptions,
    ) -> Result<(Arc<Core<Mio>>, Arc<LoopShared>), CallError> {
        let (endpoints, version) = resolver
            .resolve(None)
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let kind = if resolver.is_constant() {
            ResolverKind::Constant
        } else {
            ResolverKind::Watched
        };
        let shared = LoopShared::new().map_err(io_err)?;
        let runtime = Mio {
            resolver: Arc::new(resolver),
            shared: shared.clone(),
            connect_timeout: opts.connect_timeout,
        };
        let core = Core::new(runtime, opts.into_config(), kind, named(endpoints), version)?;
        Ok((core, shared))
    }

    fn with_loop(
        core: Arc<Core<Mio>>,
        shared: Arc<LoopShared>,
        thread: Option<JoinHandle<()>>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                core,
                shared,
                thread: Mutex::new(thread),
                spin: AtomicU64::new(0),
            }),
        }
    }

    /// How long a caller spins waiting for its result before parking its
    /// thread (default 0: park at once). Spinning trades CPU for latency
    /// when responses come back within microseconds.
    pub fn set_optimistic_spin(&self, spin: Duration) {
        let nanos = u64::try_from(spin.as_nanos()).unwrap_or(u64::MAX);
        self.inner.spin.store(nanos, Ordering::Relaxed);
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
        let id = lead::starting(&self.inner.shared, || {
            self.inner.core.start_call(method, args, opts)
        });
        PendingCall {
            client: self.inner.clone(),
            id,
            finished: false,
        }
    }

    /// Ends every pending call with a communication error saying the
    /// connection is closed; later calls fail the same way. Idempotent;
    /// returns when the event loop has stopped.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl weft_driver::component::BlockingCaller for Client {
    fn call_blocking(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        self.call(method, args, opts)
    }
}

/// A call in progress: [`Client::start`] it, [`wait`](Self::wait) for it,
/// or cancel it from another thread.
///
/// ```no_run
/// # fn demo(client: weft_mio::Client) {
/// use bytes::Bytes;
/// use std::time::Duration;
/// use weft_mio::{CallError, CallOptions, MethodKey};
/// let call = client.start(MethodKey::new("weft.Test", "Sleep"), Bytes::new(), CallOptions::default());
/// let cancel = call.cancel_handle();
/// // A watchdog thread gives up on it after 100 ms; the server is told.
/// std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_millis(100));
///     cancel.cancel();
/// });
/// assert!(matches!(call.wait(), Err(CallError::Cancelled)));
/// # }
/// ```
pub struct PendingCall {
    client: Arc<Inner>,
    id: PoolCallId,
    finished: bool,
}

/// Cancels a call from any thread.
#[derive(Clone)]
pub struct CancelHandle {
    client: Arc<Inner>,
    id: PoolCallId,
}

impl CancelHandle {
    /// Abandons the call: it ends with a cancelled error, and the server is
    /// told if the request went out. No effect once it has ended.
    pub fn cancel(&self) {
        self.client.core.cancel(self.id);
    }
}

impl PendingCall {
    /// A handle that cancels this call.
    pub fn cancel_handle(&self) -> CancelHandle {
        CancelHandle {
            client: self.client.clone(),
            id: self.id,
        }
    }

    /// Blocks until the call ends: spins for the configured optimistic
    /// spin, then polls the client's connections itself if no other thread
    /// does (reading its own response), else parks until woken.
    pub fn wait(mut self) -> Result<Bytes, CallError> {
        let spin = Duration::from_nanos(self.client.spin.load(Ordering::Relaxed));
        // Spinning while a turn nobody took is pending would only delay it.
        let spins = !spin.is_zero() && !lead::turn_unled(&self.client.shared);
        let spin_until = spins.then(|| Instant::now() + spin);
        let (me, waker) = lead::caller_waker();
        let mut cx = Context::from_waker(&waker);
        let (core, shared) = (&self.client.core, &self.client.shared);
        let _looking = me.enter(shared);
        loop {
            let seen = lead::seq(shared);
            if let Poll::Ready(result) = core.poll_call(self.id, &mut cx) {
                self.finished = true;
                return result;
            }
            if spin_until.is_some_and(|t| Instant::now() < t) {
                for _ in 0..64 {
                    std::hint::spin_loop();
                }
                continue;
            }
            let mut out = None;
            lead::lead_or_park(core, shared, &me, seen, || {
                if let Poll::Ready(result) = core.poll_call(self.id, &mut cx) {
                    out = Some(result);
                }
                out.is_some()
            });
            if let Some(result) = out {
                self.finished = true;
                return result;
            }
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        if !self.finished {
            self.client.core.abandon(self.id);
        }
    }
}
