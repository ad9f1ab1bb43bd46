//! The async server: handler maps, listeners and connection tasks.
//!
//! Each connection is one task that owns a [`weft_proto::ServerConn`]:
//! it reads and decodes in place, runs handlers, and writes every response
//! that is ready in one vectored write. A handler first runs inline on that
//! task; if it has not finished within the inline handler duration it moves
//! to a task of its own, so a slow handler never holds up the others.

use crate::cancel::CancelSignal;
use crate::endpoint::{AsyncStream, BoxFuture, BoxStream, NetEndpoint};
use crate::io::{READ_CHUNK, poll_read, poll_write};
use bytes::Bytes;
use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tokio::sync::{mpsc, watch};
pub use weft_proto::handler::{HandlerError, HandlerResult, ServerOptions};
use weft_proto::server::CancelReason;
use weft_proto::{Metadata, MethodKey, ServerConn, ServerEvent, TraceContext};

type Handler = dyn Fn(Request) -> BoxFuture<'static, HandlerResult> + Send + Sync;

/// Handlers by method.
///
/// ```
/// let mut handlers = weft_tokio::HandlerMap::new();
/// handlers.set("weft.Test", "Echo", |req: weft_tokio::Request| async move { Ok(req.args) });
/// ```
#[derive(Clone, Default)]
pub struct HandlerMap {
    map: HashMap<MethodKey, (Arc<str>, Arc<Handler>)>,
}

impl std::fmt::Debug for HandlerMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries(self.map.values().map(|(n, _)| n))
            .finish()
    }
}

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
        let name: Arc<str> = format!("{component}.{method}").into();
        let h: Arc<Handler> = Arc::new(move |req| Box::pin(handler(req)));
        self.map
            .insert(MethodKey::new(component, method), (name, h));
    }
}

/// A call, as its handler sees it.
#[derive(Debug)]
pub struct Request {
    /// The arguments: a view of the connection's read buffer.
    pub args: Bytes,
    /// `component.method`.
    pub method: Arc<str>,
    /// When the caller gives up, if it set a deadline.
    pub deadline: Option<Instant>,
    /// Metadata from the caller.
    pub metadata: Option<Metadata>,
    /// The caller's span.
    pub trace: Option<TraceContext>,
    cancel: Arc<CancelSignal>,
}

impl Request {
    /// Whether the request was cancelled (by the caller, its deadline, or a
    /// broken connection).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.reason().is_some()
    }

    /// Completes when the request is cancelled, with the reason.
    pub async fn cancelled(&self) -> CancelReason {
        self.cancel.cancelled().await
    }
}

/// A socket to accept connections on.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(tokio::net::TcpListener),
    /// Unix domain socket.
    #[cfg(unix)]
    Unix(tokio::net::UnixListener),
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

    /// The endpoint clients dial, with the real port.
    pub fn local_endpoint(&self) -> io::Result<NetEndpoint> {
        match self {
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

    async fn accept(&self) -> io::Result<BoxStream> {
        match self {
            Listener::Tcp(l) => {
                let (s, _) = l.accept().await?;
                s.set_nodelay(true)?;
                Ok(Box::new(s))
            }
            #[cfg(unix)]
            Listener::Unix(l) => Ok(Box::new(l.accept().await?.0)),
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
/// fails.
pub async fn serve(
    listener: impl Into<Listener>,
    handlers: HandlerMap,
    opts: ServerOptions,
) -> io::Result<()> {
    serve_until(listener, handlers, opts, std::future::pending()).await
}

/// Serves like [`serve`] until `shutdown` completes; then stops accepting,
/// closes every connection (cancelling their handlers) and returns.
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
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let listener = listener.into();
    let handlers = Arc::new(handlers);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let result = loop {
        tokio::select! {
            _ = &mut shutdown => break Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(stream) => {
                    tasks.spawn(serve_conn(stream, handlers.clone(), opts, stop_rx.clone()));
                }
                Err(e) if is_transient(&e) => {
                    tracing::warn!(error = %e, "accept failed; continuing");
                }
                Err(e) => break Err(e),
            },
            // Reap finished connections so the set does not grow.
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    };
    let _ = stop_tx.send(true);
    while tasks.join_next().await.is_some() {}
    result
}

fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    ) || e.raw_os_error().is_some_and(|c| c == 24 || c == 23) // EMFILE, ENFILE
}

/// Serves `handlers` on one established byte stream (an accepted socket,
/// TLS, an in-memory pipe). The task ends when the stream does.
pub fn serve_on(
    stream: impl AsyncStream,
    handlers: HandlerMap,
    opts: ServerOptions,
) -> tokio::task::JoinHandle<()> {
    let (_, stop) = watch::channel(false);
    tokio::spawn(serve_conn(Box::new(stream), Arc::new(handlers), opts, stop))
}

type Finished = (u64, HandlerResult);

struct InlineHandler {
    id: u64,
    started: Instant,
    fut: BoxFuture<'static, HandlerResult>,
}

struct ServerTask {
    conn: ServerConn,
    stream: BoxStream,
    handlers: Arc<HandlerMap>,
    opts: ServerOptions,
    inline: Vec<InlineHandler>,
    cancels: HashMap<u64, Arc<CancelSignal>>,
    done_tx: mpsc::UnboundedSender<Finished>,
    done_rx: mpsc::UnboundedReceiver<Finished>,
    sleep: Pin<Box<tokio::time::Sleep>>,
    /// Completes with `true` when the server shuts down (`false`: it never
    /// will). Kept across polls: a watch future dropped after `Pending`
    /// would take its wakeup registration with it.
    stop: Option<BoxFuture<'static, bool>>,
    failed: bool,
}

async fn serve_conn(
    stream: BoxStream,
    handlers: Arc<HandlerMap>,
    opts: ServerOptions,
    stop: watch::Receiver<bool>,
) {
    let now = Instant::now();
    let config = opts.conn_config();
    let (done_tx, done_rx) = mpsc::unbounded_channel();
    let mut task = ServerTask {
        conn: ServerConn::new(now, config),
        stream,
        handlers,
        opts,
        inline: Vec::new(),
        cancels: HashMap::new(),
        done_tx,
        done_rx,
        sleep: Box::pin(tokio::time::sleep_until(now.into())),
        stop: Some(Box::pin(async move {
            let mut stop = stop;
            stop.wait_for(|s| *s).await.is_ok()
        })),
        failed: false,
    };
    poll_fn(|cx| task.poll(cx)).await;
}

impl ServerTask {
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        for _ in 0..32 {
            let now = Instant::now();
            let mut progressed = false;
            if let Some(stop) = self.stop.as_mut()
                && let Poll::Ready(stopping) = stop.as_mut().poll(cx)
            {
                self.stop = None;
                if stopping {
                    self.conn.close(now);
                    progressed = true;
                }
            }
            while let Poll::Ready(Some((id, result))) = self.done_rx.poll_recv(cx) {
                self.respond(now, id, result);
                progressed = true;
            }
            progressed |= self.poll_inline(cx, now);
            if !self.failed {
                // Any completed read is progress: only a Pending read has
                // registered this task for more bytes.
                progressed |= match poll_read(&mut self.stream, cx, self.conn.read_buf(READ_CHUNK))
                {
                    Poll::Ready(Ok(0)) => {
                        self.conn
                            .handle_transport_closed(now, "client closed the connection");
                        true
                    }
                    Poll::Ready(Ok(_)) => {
                        self.conn.handle_read(now);
                        true
                    }
                    Poll::Ready(Err(e)) => {
                        self.conn.handle_transport_closed(now, format!("read: {e}"));
                        true
                    }
                    Poll::Pending => false,
                };
            }
            if self.conn.next_deadline().is_some_and(|d| d <= now) {
                self.conn.handle_timeout(now);
            }
            while let Some(event) = self.conn.poll_event() {
                progressed = true;
                self.on_event(cx, now, event);
            }
            match self.flush(cx) {
                Ok(()) => {}
                Err(e) => {
                    self.conn
                        .handle_transport_closed(now, format!("write: {e}"));
                    progressed = true;
                }
            }
            if self.failed && self.conn.transmit().is_empty() {
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
            .opts
            .inline_handler_duration
            .and_then(|d| self.inline.iter().map(|h| h.started + d).min());
        [self.conn.next_deadline(), move_off]
            .into_iter()
            .flatten()
            .min()
    }

    fn on_event(&mut self, cx: &mut Context<'_>, now: Instant, event: ServerEvent) {
        match event {
            ServerEvent::Request(req) => {
                let Some((name, handler)) = self.handlers.map.get(&req.method) else {
                    self.conn.respond_unknown_method(now, req.id);
                    return;
                };
                let cancel = Arc::new(CancelSignal::default());
                self.cancels.insert(req.id, cancel.clone());
                let fut = handler(Request {
                    args: req.args,
                    method: name.clone(),
                    deadline: req.deadline,
                    metadata: req.metadata,
                    trace: req.trace,
                    cancel,
                });
                let mut h = InlineHandler {
                    id: req.id,
                    started: now,
                    fut,
                };
                match self.opts.inline_handler_duration {
                    Some(_) => match h.fut.as_mut().poll(cx) {
                        Poll::Ready(result) => self.respond(now, h.id, result),
                        Poll::Pending => self.inline.push(h),
                    },
                    None => self.spawn(h),
                }
            }
            ServerEvent::Cancel { id, reason } => {
                if let Some(c) = self.cancels.get(&id) {
                    c.cancel(reason);
                }
            }
            ServerEvent::Failed(err) => {
                tracing::debug!(error = %err, "server connection closed");
                self.failed = true;
                for (_, c) in self.cancels.drain() {
                    c.cancel(CancelReason::ConnectionLost);
                }
            }
        }
    }

    /// Polls handlers still on this task; moves off those past their time.
    fn poll_inline(&mut self, cx: &mut Context<'_>, now: Instant) -> bool {
        let mut progressed = false;
        let mut i = 0;
        while i < self.inline.len() {
            if let Poll::Ready(result) = self.inline[i].fut.as_mut().poll(cx) {
                let h = self.inline.swap_remove(i);
                self.respond(now, h.id, result);
                progressed = true;
                continue;
            }
            let limit = self.opts.inline_handler_duration.unwrap_or_default();
            if now.duration_since(self.inline[i].started) >= limit {
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
        tokio::spawn(async move {
            let result = h.fut.await;
            let _ = done.send((h.id, result));
        });
    }

    fn respond(&mut self, now: Instant, id: u64, result: HandlerResult) {
        self.cancels.remove(&id);
        self.conn.finish(now, id, result);
    }

    fn flush(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        while !self.conn.transmit().is_empty() {
            match poll_write(&mut self.stream, cx, self.conn.transmit()) {
                Poll::Ready(Ok(n)) => self.conn.advance_transmit(n),
                Poll::Ready(Err(e)) => return Err(e),
                Poll::Pending => return Ok(()),
            }
        }
        Ok(())
    }
}
