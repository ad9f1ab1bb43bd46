//! The async client: a [`Connection`] over a resolver's replicas.
//!
//! Everything but waiting is `weft_driver::client`'s: this module says how
//! Tokio dials, resolves, runs a connection's loop and sleeps until the
//! router's next timer. Each connection is one task that owns nothing but a
//! handle to its cell; a call's request goes out from the caller's own task
//! when the socket takes it.

use crate::io::TokioStream;
use crate::resolver::{Resolver, SharedEndpoint};
use bytes::Bytes;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::Notify;
use weft_driver::client::{Client, ConnCell, Runtime};
use weft_proto::{CallError, CallOptions, MethodKey};
use weft_proto::{ConnId, EndpointsVersion, PoolCallId, ResolverKind};

pub use weft_driver::client::ClientOptions;

/// A client of one service, spread over the replicas a resolver names.
///
/// Cheap to clone and shareable across tasks (`Clone + Send + Sync`); all
/// clones are one connection. Dropping the last clone closes it.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use bytes::Bytes;
/// use weft_tokio::{CallOptions, ClientOptions, ConstantResolver, MethodKey, tcp};
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
    pub(crate) handle: Arc<Handle>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}

/// Closes the client when the last user handle goes; background tasks hold
/// the client, not this, so they never keep it alive.
pub(crate) struct Handle {
    pub(crate) client: Arc<Client<Tokio>>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        close(&self.client);
    }
}

/// How the shared client runs on Tokio.
pub(crate) struct Tokio {
    runtime: tokio::runtime::Handle,
    resolver: Arc<dyn Resolver>,
    /// Wakes the timer task.
    timer: Notify,
    /// Signalled by close, so a resolve waiting for news lets go.
    closing: Notify,
    /// The router gives up on a dial after this ([`ClientOptions::connect_timeout`]);
    /// the dial itself stops then too, rather than holding a task and a
    /// socket until the kernel gives up (minutes, for a silent address).
    connect_timeout: Duration,
}

/// The resolver's answer, or an error if it panics (making its future or
/// polling it): a resolve must answer, or the router would never ask again.
async fn resolve_guarded(
    resolver: &dyn Resolver,
    version: Option<EndpointsVersion>,
) -> crate::Resolved {
    use std::panic::{AssertUnwindSafe, catch_unwind};
    let panicked = |payload: Box<dyn std::any::Any + Send>| {
        let why = weft_driver::server::panic_text(&*payload);
        crate::ResolveError(format!("the resolver panicked: {why}"))
    };
    let mut fut = match catch_unwind(AssertUnwindSafe(|| resolver.resolve(version))) {
        Ok(fut) => fut,
        Err(payload) => return Err(panicked(payload)),
    };
    poll_fn(|cx| {
        catch_unwind(AssertUnwindSafe(|| fut.as_mut().poll(cx)))
            .unwrap_or_else(|payload| Poll::Ready(Err(panicked(payload))))
    })
    .await
}

impl Runtime for Tokio {
    type Endpoint = SharedEndpoint;
    type Stream = TokioStream;
    const DEFER_BATCHED_FLUSH: bool = true;

    fn dial(&self, client: &Arc<Client<Self>>, conn: ConnId, endpoint: Option<SharedEndpoint>) {
        let client = client.clone();
        let timeout = self.connect_timeout;
        self.runtime.spawn(async move {
            let dialed = match endpoint {
                Some(e) => match tokio::time::timeout(timeout, e.dial()).await {
                    Ok(dialed) => dialed.map(TokioStream),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("connect timed out after {timeout:?}"),
                    )),
                },
                None => Err(std::io::Error::other("endpoint no longer known")),
            };
            client.dialed(conn, dialed);
        });
    }

    fn resolve(&self, client: &Arc<Client<Self>>, version: Option<EndpointsVersion>) {
        let client = client.clone();
        self.runtime.spawn(async move {
            let tokio = client.runtime();
            let closing = tokio.closing.notified();
            if client.is_closed() {
                return;
            }
            let resolved = tokio::select! {
                r = resolve_guarded(&*tokio.resolver, version) => r,
                _ = closing => return,
            };
            client.resolved(
                resolved
                    .map(|(endpoints, v)| (named(endpoints), v))
                    .map_err(|e| e.0),
            );
        });
    }

    fn run_conn(&self, client: &Arc<Client<Self>>, cell: Arc<ConnCell<TokioStream>>) {
        let client = client.clone();
        self.runtime
            .spawn(async move { poll_fn(|cx| client.drive_conn(&cell, cx)).await });
    }

    fn wake_timer(&self) {
        self.timer.notify_one();
    }
}

fn named(endpoints: Vec<SharedEndpoint>) -> Vec<(String, SharedEndpoint)> {
    endpoints.into_iter().map(|e| (e.address(), e)).collect()
}

fn close(client: &Arc<Client<Tokio>>) {
    client.close();
    client.runtime().closing.notify_waiters();
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
    let kind = if resolver.is_constant() {
        ResolverKind::Constant
    } else {
        ResolverKind::Watched
    };
    let runtime = Tokio {
        runtime: tokio::runtime::Handle::current(),
        resolver: Arc::new(resolver),
        timer: Notify::new(),
        closing: Notify::new(),
        connect_timeout: opts.connect_timeout,
    };
    let client = Client::new(runtime, opts.into_config(), kind, named(endpoints), version)?;
    tokio::spawn(timer_task(client.clone()));
    Ok(Connection {
        handle: Arc::new(Handle { client }),
    })
}

impl Connection {
    /// Calls `method` with `args`. Dropping the returned future cancels the
    /// call (the server is told if the request went out).
    ///
    /// ```no_run
    /// # async fn demo(conn: weft_tokio::Connection) {
    /// use bytes::Bytes;
    /// use std::time::{Duration, Instant};
    /// use weft_tokio::{CallError, CallOptions, MethodKey};
    /// let key = MethodKey::new("acme.Search", "Query");
    /// // A deadline travels to the server, which gives up at the same time.
    /// let opts = CallOptions {
    ///     deadline: Some(Instant::now() + Duration::from_millis(200)),
    ///     ..CallOptions::default()
    /// };
    /// match conn.call(key, Bytes::from_static(b"rust"), opts).await {
    ///     Ok(results) => println!("{} bytes", results.len()),
    ///     Err(CallError::DeadlineExceeded) => println!("too slow"),
    ///     Err(e) if e.is_communication() => println!("may or may not have run: {e}"),
    ///     Err(e) => println!("failed: {e}"),
    /// }
    /// // Or race it: the loser's future is dropped and its call cancelled.
    /// let slow = conn.call(key, Bytes::new(), CallOptions::default());
    /// let _ = tokio::time::timeout(Duration::from_millis(50), slow).await;
    /// # }
    /// ```
    pub async fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        let client = &self.handle.client;
        let id = client.start_call(method, args, opts);
        CallFuture {
            client,
            id,
            finished: false,
        }
        .await
    }

    /// Ends every pending call with a communication error saying the
    /// connection is closed; later calls fail the same way. Idempotent.
    pub fn close(&self) {
        close(&self.handle.client);
    }
}

impl weft_driver::component::Caller for Connection {
    fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, CallError>> + Send {
        Connection::call(self, method, args, opts)
    }
}

struct CallFuture<'a> {
    client: &'a Arc<Client<Tokio>>,
    id: PoolCallId,
    finished: bool,
}

impl Future for CallFuture<'_> {
    type Output = Result<Bytes, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = self.client.poll_call(self.id, cx);
        if result.is_ready() {
            self.finished = true;
        }
        result
    }
}

impl Drop for CallFuture<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.client.abandon(self.id);
        }
    }
}

/// Sleeps until the router's next timer. The clock is read before every
/// sleep is armed (inside `handle_timeout`), so a deadline already due is
/// handled at once instead of after a poll of an expired sleep that the
/// runtime's budget may defer.
async fn timer_task(client: Arc<Client<Tokio>>) {
    loop {
        let notified = client.runtime().timer.notified();
        if client.is_closed() {
            return;
        }
        match client.handle_timeout() {
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
