//! The async server: handler maps, listeners and connection tasks.
//!
//! Each connection is one task that owns a [`weft_proto::ServerConn`]:
//! it reads and decodes in place, runs handlers, and writes every response
//! that is ready in one vectored write. A handler first runs inline on that
//! task; if it has not finished within the inline handler duration it moves
//! to a task of its own, so a slow handler never holds up the others. A
//! handler that panics fails its own call; at most
//! [`ServerOptions::max_concurrent_handlers_per_connection`] handlers of a
//! connection run at once; and an accept loop short of descriptors backs
//! off instead of spinning.
//!
//! What a request is, how it reaches its handler and how cancels reach it
//! are `weft_driver::server`'s; this file is the Tokio task around them.

use crate::endpoint::{AsyncStream, BoxFuture, BoxStream, NetEndpoint};
use crate::io::{poll_read, poll_write};
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
use weft_driver::READ_SPARE;
use weft_driver::server::{
    AcceptBackoff, AcceptFailure, CatchPanic, Dispatch, Dispatcher, InlinePolicy, catch_panic,
    poll_catching,
};
pub use weft_driver::server::{
    HandlerError, HandlerResult, PeerAddr, Request, ServerOptions, Shutdown,
};
use weft_proto::ServerConn;

type Handler = dyn Fn(Request) -> BoxFuture<'static, HandlerResult> + Send + Sync;

/// Handlers by method.
///
/// ```
/// let mut handlers = weft_tokio::HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: weft_tokio::Request| async move { Ok(req.args) });
/// ```
#[derive(Clone, Default, Debug)]
pub struct HandlerMap(weft_driver::server::HandlerMap<Handler>);

impl HandlerMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `component.method` with `handler`.
    pub fn set<F, Fut>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        let h: Arc<Handler> = Arc::new(move |req| Box::pin(handler(req)));
        self.0.insert(component, method, h);
    }
}

impl weft_driver::component::AsyncHandlers for HandlerMap {
    fn add<F, Fut>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static,
    {
        self.set(component, method, handler);
    }
}

/// A socket to accept connections on.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// let dir = std::env::temp_dir().join(format!("weft-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// for bind in [weft_tokio::tcp("127.0.0.1:0"), weft_tokio::unix(dir.join("s.sock"))] {
///     let listener = weft_tokio::Listener::bind(&bind).await?;
///     // Port 0 became a real port; clients dial this.
///     println!("serving on {}", listener.local_endpoint()?);
/// }
/// # std::fs::remove_dir_all(&dir)
/// # }
/// ```
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
    /// TLS over another listener; made by [`Listener::tls`].
    #[cfg(feature = "tls")]
    Tls(Box<Listener>, crate::tls::ServerTls),
}

impl Listener {
    /// Binds `endpoint` (port 0 picks a free port).
    pub async fn bind(endpoint: &NetEndpoint) -> io::Result<Listener> {
        match endpoint {
            NetEndpoint::Tcp(addr) => Ok(Listener::Tcp(
                tokio::net::TcpListener::bind(addr.as_str()).await?,
            )),
            #[cfg(unix)]
            NetEndpoint::Unix(path) => Ok(Listener::Unix(tokio::net::UnixListener::bind(path)?)),
            #[cfg(not(unix))]
            NetEndpoint::Unix(_) => Err(io::Error::new(io::ErrorKind::Unsupported, "unix sockets")),
        }
    }

    /// Serves under TLS (mutual TLS if `tls` names a client CA). Clients
    /// dial it with a `TlsEndpoint` of [`local_endpoint`](Self::local_endpoint).
    #[cfg(feature = "tls")]
    pub fn tls(self, tls: &crate::tls::ServerTls) -> Listener {
        Listener::Tls(Box::new(self), tls.clone())
    }

    /// The endpoint clients dial, with the real port (under TLS, the
    /// endpoint underneath).
    pub fn local_endpoint(&self) -> io::Result<NetEndpoint> {
        match self {
            #[cfg(feature = "tls")]
            Listener::Tls(l, _) => l.local_endpoint(),
            Listener::Tcp(l) => Ok(NetEndpoint::Tcp(l.local_addr()?.to_string())),
            #[cfg(unix)]
            Listener::Unix(l) => {
                let addr = l.local_addr()?;
                let path = addr
                    .as_pathname()
                    .ok_or_else(|| io::Error::other("unnamed unix socket"))?;
                Ok(NetEndpoint::Unix(path.to_owned()))
            }
        }
    }

    fn accept(&self) -> BoxFuture<'_, io::Result<(BoxStream, Option<PeerAddr>)>> {
        Box::pin(async move {
            match self {
                #[cfg(feature = "tls")]
                Listener::Tls(l, tls) => {
                    let (stream, peer) = l.accept().await?;
                    Ok((crate::tls::accept(tls, stream), peer))
                }
                other => other.accept_plain().await,
            }
        })
    }

    async fn accept_plain(&self) -> io::Result<(BoxStream, Option<PeerAddr>)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept().await?;
                // A socket that refuses (its peer already gone) is still
                // served, and fails on read.
                if let Err(e) = weft_driver::tcp::configure(&s) {
                    tracing::debug!(error = %e, "TCP_NODELAY and keep-alive");
                }
                Ok((Box::new(s), Some(PeerAddr::Tcp(addr))))
            }
            #[cfg(unix)]
            Listener::Unix(l) => {
                let (s, addr) = l.accept().await?;
                Ok((Box::new(s), Some(PeerAddr::unix(addr.as_pathname()))))
            }
            #[cfg(feature = "tls")]
            Listener::Tls(l, _) => l.accept().await,
        }
    }
}

impl From<tokio::net::TcpListener> for Listener {
    fn from(l: tokio::net::TcpListener) -> Self {
        Listener::Tcp(l)
    }
}

#[cfg(unix)]
impl From<tokio::net::UnixListener> for Listener {
    fn from(l: tokio::net::UnixListener) -> Self {
        Listener::Unix(l)
    }
}

/// Serves `handlers` on every connection `listener` accepts, until accepting
/// fails for good. Running out of descriptors or memory is not that: accepts
/// pause (from 5 ms, doubling up to 1 s) and resume by themselves.
pub async fn serve(
    listener: impl Into<Listener>,
    handlers: HandlerMap,
    opts: ServerOptions,
) -> io::Result<()> {
    serve_until(listener, handlers, opts, std::future::pending()).await
}

/// Serves like [`serve`] until `signal` completes, then shuts down
/// gracefully, as tonic's `serve_with_shutdown`: accepting stops, clients
/// that speak weft's protocol version 1 are told to go elsewhere (goaway),
/// the requests already received run to completion, and after
/// [`ServerOptions::shutdown_grace`] the handlers still running are
/// cancelled and their callers answered with a cancellation error. Returns
/// once every connection is closed. For a second signal that stops at
/// once, use [`serve_with_shutdown`].
///
/// ```no_run
/// # async fn demo() -> std::io::Result<()> {
/// let listener = weft_tokio::Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
/// let mut handlers = weft_tokio::HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: weft_tokio::Request| async move { Ok(req.args) });
/// weft_tokio::serve_until(listener, handlers, Default::default(), async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await
/// # }
/// ```
pub async fn serve_until(
    listener: impl Into<Listener>,
    handlers: HandlerMap,
    opts: ServerOptions,
    signal: impl Future<Output = ()>,
) -> io::Result<()> {
    let shutdown = Shutdown::new();
    let trigger = shutdown.clone();
    let grace = opts.shutdown_grace;
    let serving = serve_with_shutdown(listener, handlers, opts, shutdown);
    let signal = async move {
        signal.await;
        trigger.graceful(grace);
        std::future::pending::<()>().await;
    };
    tokio::select! {
        result = serving => result,
        () = signal => unreachable!("pending"),
    }
}

/// Serves like [`serve`] until `shutdown` is triggered: gracefully
/// ([`Shutdown::graceful`], as [`serve_until`] describes) or at once
/// ([`Shutdown::immediate`], also after a graceful start). Returns once
/// every connection is closed. If accepting fails for good (the listener
/// broke; running out of descriptors only pauses it), the connections
/// drain as in a graceful shutdown of this server alone, with
/// [`ServerOptions::shutdown_grace`], and then the accept error is
/// returned; `shutdown` itself is not triggered.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use std::time::Duration;
/// let listener = weft_tokio::Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
/// let shutdown = weft_tokio::Shutdown::new();
/// let server = tokio::spawn(weft_tokio::serve_with_shutdown(
///     listener,
///     weft_tokio::HandlerMap::new(),
///     Default::default(),
///     shutdown.clone(),
/// ));
/// // From anywhere (a signal handler, an admin endpoint): drain for up to
/// // five seconds, then cancel what still runs.
/// shutdown.graceful(Duration::from_secs(5));
/// server.await.expect("server task")?;
/// # Ok(())
/// # }
/// ```
pub async fn serve_with_shutdown(
    listener: impl Into<Listener>,
    handlers: HandlerMap,
    opts: ServerOptions,
    shutdown: Shutdown,
) -> io::Result<()> {
    let listener = listener.into();
    let handlers = Arc::new(handlers);
    let (stop_tx, stop_rx) = watch::channel(None);
    let mut tasks = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    let pause = tokio::time::sleep(std::time::Duration::ZERO);
    let mut pause = std::pin::pin!(pause);
    let mut paused = false;
    let mut seen = shutdown.generation();
    let result = loop {
        if shutdown.deadline().is_some() {
            break Ok(());
        }
        tokio::select! {
            g = shutdown.changed(seen) => seen = g,
            () = &mut pause, if paused => paused = false,
            // At max_connections the listener is not polled: clients wait
            // in its backlog until a connection ends (reaped below).
            accepted = listener.accept(), if !paused && opts.accepts_more(tasks.len()) => match accepted {
                Ok((stream, peer)) => {
                    backoff.on_success();
                    tasks.spawn(serve_conn(stream, peer, handlers.clone(), opts, stop_rx.clone()));
                }
                Err(e) => match backoff.on_error(&e) {
                    AcceptFailure::Transient => {}
                    AcceptFailure::Exhausted(wait) => {
                        pause.as_mut().reset(tokio::time::Instant::now() + wait);
                        paused = true;
                    }
                    AcceptFailure::Fatal => break Err(e),
                },
            },
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    drop(listener);
    // A listener that broke ends accepting, not the connections: they
    // drain as in a graceful shutdown of this server alone (the caller's
    // trigger, which other servers may share, is left alone), and the
    // error is returned once they have.
    let broken = result
        .is_err()
        .then(|| weft_driver::server::grace_deadline(Instant::now(), opts.shutdown_grace));
    let deadline = |triggered: Option<Instant>| match (triggered, broken) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    // Each connection drains by its core's rules; a later trigger (the
    // second signal) brings every deadline forward. Only a deadline that
    // moved is sent: one already past, sent again, would read as a stop
    // at once to connections finishing their close.
    let mut sent = deadline(shutdown.deadline());
    let _ = stop_tx.send(sent);
    loop {
        tokio::select! {
            g = shutdown.changed(seen) => {
                seen = g;
                let moved = deadline(shutdown.deadline());
                if moved != sent {
                    sent = moved;
                    let _ = stop_tx.send(sent);
                }
            }
            joined = tasks.join_next() => if joined.is_none() { break },
        }
    }
    result
}

/// Serves `handlers` on one established byte stream (an accepted socket,
/// TLS, an in-memory pipe). The task ends when the stream does.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// // A server on one end of an in-memory pipe; anything AsyncRead +
/// // AsyncWrite works the same way.
/// let (server_end, client_end) = tokio::io::duplex(64 * 1024);
/// let mut handlers = weft_tokio::HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: weft_tokio::Request| async move { Ok(req.args) });
/// let task = weft_tokio::serve_on(server_end, handlers, Default::default());
/// drop(client_end); // the peer goes away: the task ends
/// task.await.expect("served");
/// # }
/// ```
pub fn serve_on(
    stream: impl AsyncStream,
    handlers: HandlerMap,
    opts: ServerOptions,
) -> tokio::task::JoinHandle<()> {
    let (_, stop) = watch::channel(None);
    tokio::spawn(serve_conn(
        Box::new(stream),
        None,
        Arc::new(handlers),
        opts,
        stop,
    ))
}

type Finished = (u64, HandlerResult);

struct InlineHandler {
    id: u64,
    started: Instant,
    fut: BoxFuture<'static, HandlerResult>,
    /// The request's span, entered whenever the handler runs.
    span: tracing::Span,
}

struct ServerTask {
    conn: ServerConn,
    requests: Dispatcher<Handler>,
    stream: BoxStream,
    handlers: Arc<HandlerMap>,
    policy: InlinePolicy,
    inline: Vec<InlineHandler>,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Completes with the server's shutdown deadline each time it is set
    /// or brought forward (`None`: the server is gone and it never will
    /// be). Kept across polls: a watch future dropped after `Pending`
    /// would take its wakeup registration with it.
    stop: Option<BoxFuture<'static, StopChange>>,
}

type StopRx = watch::Receiver<Option<Instant>>;
type StopChange = Option<(Instant, StopRx)>;

/// The next shutdown deadline `stop` announces, with the receiver to wait
/// for the one after: the current one if `first`, else the next change.
fn next_stop(mut stop: StopRx, first: bool) -> BoxFuture<'static, StopChange> {
    Box::pin(async move {
        if !first {
            stop.changed().await.ok()?;
        }
        let deadline = *stop.wait_for(Option::is_some).await.ok()?;
        Some((deadline?, stop))
    })
}

async fn serve_conn(
    stream: BoxStream,
    peer: Option<PeerAddr>,
    handlers: Arc<HandlerMap>,
    opts: ServerOptions,
    stop: StopRx,
) {
    let now = Instant::now();
    let config = opts.server_config(weft_driver::random_seed());
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut task = ServerTask {
        conn: ServerConn::new(now, config),
        requests: match peer {
            Some(peer) => Dispatcher::new(&opts).with_peer(peer),
            None => Dispatcher::new(&opts),
        },
        stream,
        handlers,
        policy: InlinePolicy::new(&opts),
        inline: Vec::new(),
        done_tx,
        done_rx,
        sleep: Box::pin(tokio::time::sleep_until(now.into())),
        stop: Some(next_stop(stop, true)),
    };
    poll_fn(|cx| task.poll(cx)).await;
}

impl ServerTask {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..32 {
            let now = Instant::now();
            let mut progressed = false;
            if let Some(stop) = self.stop.as_mut()
                && let Poll::Ready(change) = stop.as_mut().poll(cx)
            {
                self.stop = None;
                if let Some((deadline, rx)) = change {
                    self.conn.shutdown(now, deadline);
                    self.stop = Some(next_stop(rx, false));
                    progressed = true;
                }
            }
            while let Poll::Ready(Some((id, result))) = self.done_rx.poll_recv(cx) {
                self.requests.finish(now, &mut self.conn, id, result);
                progressed = true;
            }
            progressed |= self.poll_inline(cx, now);
            // Any completed read is progress: only a Pending read has
            // registered this task for more bytes. With the requests
            // waiting for a handler at their bound the connection is not
            // read; a finishing handler wakes the task.
            let reading = self.requests.wants_read(&self.conn);
            if reading
                && let Poll::Ready(read) =
                    poll_read(&mut self.stream, cx, self.conn.read_buf(READ_SPARE))
            {
                self.requests.on_read(now, &mut self.conn, read);
                progressed = true;
            }
            if self.conn.next_deadline().is_some_and(|d| d <= now) {
                self.conn.handle_timeout(now);
            }
            progressed |= self
                .requests
                .handle_events(now, &mut self.conn, &self.handlers.0);
            while let Some(d) = self.requests.next_dispatch() {
                progressed = true;
                self.start(cx, now, d);
            }
            self.requests.sync_read_paused(now, &mut self.conn);
            match self.flush(cx, now) {
                Ok(()) => {}
                Err(e) => {
                    self.conn
                        .handle_transport_closed(now, format!("write: {e}"));
                    progressed = true;
                }
            }
            if self.conn.wants_close_write()
                && let Poll::Ready(shut) = Pin::new(&mut *self.stream).poll_shutdown(cx)
            {
                match shut {
                    Ok(()) => self.conn.handle_write_closed(now),
                    Err(e) => self
                        .conn
                        .handle_transport_closed(now, format!("shutting down writes: {e}")),
                }
                progressed = true;
            }
            // Writing may have brought the queued output back under its
            // limit: read again, as nothing else registered this task for
            // more bytes.
            progressed |= !reading && self.requests.wants_read(&self.conn);
            if self.conn.is_finished() {
                if !self.requests.is_closed() {
                    // Failed by this pass's write, after its events were
                    // taken: the failure's event, which cancels the
                    // handlers, is taken on the next pass.
                    continue;
                }
                // Handlers still on this task have been told to stop; let
                // them finish on their own tasks rather than dropping them
                // mid-flight (their answers have nowhere to go, but their
                // cleanup runs).
                for h in std::mem::take(&mut self.inline) {
                    self.spawn(h);
                }
                return Poll::Ready(());
            }
            if progressed {
                continue;
            }
            // Quiet: sleep until the next deadline or inline move-off. The
            // clock was read above, so an already-due instant loops instead.
            let Some(wake) = self.next_wake() else {
                return Poll::Pending;
            };
            if wake <= Instant::now() {
                continue;
            }
            if self.sleep.deadline() != wake.into() {
                self.sleep.as_mut().reset(wake.into());
            }
            if self.sleep.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    fn next_wake(&self) -> Option<Instant> {
        let move_off = self
            .inline
            .iter()
            .filter_map(|h| self.policy.move_off_at(h.started))
            .min();
        [self.conn.next_deadline(), move_off]
            .into_iter()
            .flatten()
            .min()
    }

    /// Runs a new handler inline, or on a task of its own if the policy
    /// says handlers never run inline. A panic, in the handler or its
    /// future, is the call's result.
    fn start(&mut self, cx: &mut Context<'_>, now: Instant, d: Dispatch<Handler>) {
        let made = {
            let _entered = d.span.enter();
            catch_panic(|| (d.handler)(d.request))
        };
        let fut = match made {
            Ok(fut) => fut,
            Err(e) => return self.requests.finish(now, &mut self.conn, d.id, Err(e)),
        };
        let mut h = InlineHandler {
            id: d.id,
            started: now,
            fut,
            span: d.span,
        };
        if !self.policy.starts_inline() {
            return self.spawn(h);
        }
        let polled = {
            let _entered = h.span.enter();
            poll_catching(h.fut.as_mut(), cx)
        };
        match polled {
            Poll::Ready(result) => self.requests.finish(now, &mut self.conn, d.id, result),
            Poll::Pending => self.inline.push(h),
        }
    }

    /// Polls handlers still on this task; moves off those past their time.
    fn poll_inline(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.inline.len() {
            let h = &mut self.inline[i];
            let polled = {
                let _entered = h.span.enter();
                poll_catching(h.fut.as_mut(), cx)
            };
            if let Poll::Ready(result) = polled {
                let h = self.inline.swap_remove(i);
                self.requests.finish(now, &mut self.conn, h.id, result);
                progressed = true;
                continue;
            }
            if self.policy.is_due(self.inline[i].started, now) {
                let h = self.inline.swap_remove(i);
                self.spawn(h);
                continue;
            }
            i += 1;
        }
        progressed
    }

    fn spawn(&self, h: InlineHandler) {
        let done = self.done_tx.clone();
        let handler = tracing::Instrument::instrument(CatchPanic::new(h.fut), h.span);
        tokio::spawn(async move {
            let result = handler.await;
            let _ = done.send((h.id, result));
        });
    }

    fn flush(&mut self, cx: &mut Context<'_>, now: Instant) -> io::Result<()> {
        while !self.conn.transmit().is_empty() {
            match poll_write(&mut self.stream, cx, self.conn.transmit()) {
                Poll::Ready(Ok(n)) => self.conn.advance_transmit(n),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        // Records a TLS stream still holds (see `Transport::poll_flush`):
        // output the connection is not finished without.
        let held = Pin::new(&mut *self.stream).poll_flush(cx);
        self.conn.handle_output_held(now, held.is_pending());
        match held {
            Poll::Ready(r) => r,
            Poll::Pending => Ok(()),
        }
    }
}
