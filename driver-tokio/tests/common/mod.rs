//! Shared fixtures: test handlers, servers on free ports, fault injection.

#![allow(dead_code, missing_docs)]

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use weft_tokio::{
    BoxFuture, BoxStream, Endpoint, HandlerError, HandlerMap, Listener, NetEndpoint, Request,
    ServerOptions,
};

pub fn key(method: &str) -> weft_tokio::MethodKey {
    weft_tokio::MethodKey::new("weft.Test", method)
}

/// Counts handler cancellations, and signals each one.
#[derive(Clone, Default)]
pub struct Counters {
    pub cancelled: Arc<AtomicUsize>,
    pub calls: Arc<AtomicUsize>,
    changed: Arc<tokio::sync::Notify>,
}

impl Counters {
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }

    fn bump_cancelled(&self) {
        self.cancelled.fetch_add(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits until at least `n` handlers observed cancellation.
    pub async fn wait_cancelled(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.cancelled() >= n {
                return;
            }
            changed.await;
        }
    }
}

/// The test service: Echo, Error, Sleep, Who, CancelWait, Metadata, Trace,
/// Deadline.
pub fn handlers(name: &str, counters: &Counters) -> HandlerMap {
    let mut h = HandlerMap::new();
    let c = counters.clone();
    h.set("weft.Test", "Echo", move |req: Request| {
        c.calls.fetch_add(1, Ordering::SeqCst);
        async move { Ok(req.args) }
    });
    h.set("weft.Test", "Error", |req: Request| async move {
        Err(HandlerError::new(
            String::from_utf8_lossy(&req.args).into_owned(),
        ))
    });
    let c = counters.clone();
    h.set("weft.Test", "Sleep", move |req: Request| {
        let c = c.clone();
        async move {
            let ms: u64 = std::str::from_utf8(&req.args).unwrap().parse().unwrap();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Bytes::new()),
                _ = req.cancelled() => {
                    c.bump_cancelled();
                    Err(HandlerError::cancelled())
                }
            }
        }
    });
    let name: Bytes = Bytes::from(name.to_owned());
    h.set("weft.Test", "Who", move |_req: Request| {
        let n = name.clone();
        async move { Ok(n) }
    });
    let c = counters.clone();
    h.set("weft.Test", "CancelWait", move |req: Request| {
        let c = c.clone();
        async move {
            req.cancelled().await;
            c.bump_cancelled();
            Err(HandlerError::cancelled())
        }
    });
    h.set("weft.Test", "Metadata", |req: Request| async move {
        let md = req.metadata.unwrap_or_default();
        let lines: Vec<String> = md.iter().map(|(k, v)| format!("{k}={v}")).collect();
        Ok(Bytes::from(lines.join("\n")))
    });
    h.set("weft.Test", "Trace", |req: Request| async move {
        let t = req.trace.ok_or_else(|| HandlerError::new("no trace"))?;
        let mut out = t.trace_id.to_vec();
        out.extend_from_slice(&t.span_id);
        out.push(t.flags);
        Ok(Bytes::from(out))
    });
    h.set("weft.Test", "Deadline", |req: Request| async move {
        Ok(Bytes::from(match req.deadline {
            Some(d) => d
                .saturating_duration_since(Instant::now())
                .as_micros()
                .to_string(),
            None => "none".into(),
        }))
    });
    h
}

/// A running server: its endpoint and a handle to stop it.
pub struct Server {
    pub endpoint: NetEndpoint,
    pub counters: Counters,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: tokio::task::JoinHandle<io::Result<()>>,
}

impl Server {
    pub async fn stop(mut self) -> io::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap()
    }
}

pub async fn start(endpoint: NetEndpoint, name: &str) -> Server {
    start_with(endpoint, name, ServerOptions::default()).await
}

pub async fn start_with(endpoint: NetEndpoint, name: &str, opts: ServerOptions) -> Server {
    let listener = Listener::bind(&endpoint).await.unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let counters = Counters::default();
    let h = handlers(name, &counters);
    let (tx, rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(weft_tokio::serve_until(listener, h, opts, async {
        let _ = rx.await;
    }));
    Server {
        endpoint,
        counters,
        stop: Some(tx),
        task,
    }
}

pub async fn tcp_server(name: &str) -> Server {
    start(weft_tokio::tcp("127.0.0.1:0"), name).await
}

/// A fresh Unix socket path in a temp dir, removed on drop.
pub struct TempSock {
    pub path: std::path::PathBuf,
}

impl TempSock {
    pub fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("weft-test-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.sock");
        let _ = std::fs::remove_file(&path);
        TempSock { path }
    }
}

impl Drop for TempSock {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(self.path.parent().unwrap());
    }
}

/// A stream that fails reads after `read_budget` bytes and writes after
/// `write_budget` bytes.
pub struct Faulty {
    inner: BoxStream,
    read_left: usize,
    write_left: usize,
}

impl Faulty {
    pub fn new(inner: BoxStream, read_budget: usize, write_budget: usize) -> Self {
        Faulty {
            inner,
            read_left: read_budget,
            write_left: write_budget,
        }
    }
}

impl AsyncRead for Faulty {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read_left == 0 {
            return Poll::Ready(Err(io::Error::other("injected read error")));
        }
        // Never hand out more than the budget, so the error lands inside
        // the message, not after it.
        let mut tmp = vec![0u8; buf.remaining().min(self.read_left)];
        let mut limited = ReadBuf::new(&mut tmp);
        let r = Pin::new(&mut self.inner).poll_read(cx, &mut limited);
        let n = limited.filled().len();
        buf.put_slice(&tmp[..n]);
        self.read_left -= n;
        r
    }
}

impl AsyncWrite for Faulty {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.write_left == 0 {
            return Poll::Ready(Err(io::Error::other("injected write error")));
        }
        let n = data.len().min(self.write_left);
        let r = Pin::new(&mut self.inner).poll_write(cx, &data[..n]);
        if let Poll::Ready(Ok(k)) = r {
            self.write_left -= k;
        }
        r
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// An endpoint whose connections are [`Faulty`]; counts dials.
pub struct FaultyEndpoint {
    pub inner: NetEndpoint,
    pub read_budget: usize,
    pub write_budget: usize,
    pub dials: Arc<AtomicUsize>,
}

impl Endpoint for FaultyEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            self.dials.fetch_add(1, Ordering::SeqCst);
            let s = self.inner.dial().await?;
            Ok(Box::new(Faulty::new(s, self.read_budget, self.write_budget)) as BoxStream)
        })
    }
    fn address(&self) -> String {
        self.inner.address()
    }
}

/// Serves every accepted TCP connection through a [`Faulty`] wrapper.
pub async fn faulty_tcp_server(read_budget: usize, write_budget: usize) -> (NetEndpoint, Counters) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = weft_tokio::tcp(listener.local_addr().unwrap().to_string());
    let counters = Counters::default();
    let h = handlers("faulty", &counters);
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            let stream = Faulty::new(Box::new(s), read_budget, write_budget);
            weft_tokio::serve_on(stream, h.clone(), ServerOptions::default());
        }
    });
    (endpoint, counters)
}
