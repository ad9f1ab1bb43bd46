//! The client's write path, observed through an instrumented stream: where
//! requests are written from, how frames coalesce, and that large payloads
//! leave without being copied.

mod common;

use bytes::Bytes;
use common::{Counters, handlers, key};
use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use weft_tokio::proto::write_batch_at;
use weft_tokio::{
    BoxFuture, BoxStream, CallOptions, ClientOptions, ConstantResolver, Endpoint, ServerOptions,
};

#[derive(Debug, Clone)]
struct Write {
    task: Option<tokio::task::Id>,
    bytes: usize,
    slices: Vec<(usize, usize)>, // (address, length) of each slice
}

#[derive(Default)]
struct Log {
    writes: Mutex<Vec<Write>>,
    /// While closed, writes return Pending (the socket is "full").
    gate_closed: AtomicBool,
    parked: Mutex<Option<Waker>>,
    /// Writes tried while the gate was closed.
    refused: AtomicUsize,
}

impl Log {
    fn open_gate(&self) {
        self.gate_closed.store(false, Ordering::SeqCst);
        if let Some(w) = self.parked.lock().unwrap().take() {
            w.wake();
        }
    }
}

struct Spy {
    inner: DuplexStream,
    log: Arc<Log>,
}

impl Spy {
    fn record(&self, slices: &[IoSlice<'_>], n: usize) {
        self.log.writes.lock().unwrap().push(Write {
            task: tokio::task::try_id(),
            bytes: n,
            slices: slices
                .iter()
                .map(|s| (s.as_ptr() as usize, s.len()))
                .collect(),
        });
    }

    fn gated(&self, cx: &mut Context<'_>) -> bool {
        if self.log.gate_closed.load(Ordering::SeqCst) {
            self.log.refused.fetch_add(1, Ordering::SeqCst);
            *self.log.parked.lock().unwrap() = Some(cx.waker().clone());
            return true;
        }
        false
    }
}

impl AsyncRead for Spy {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Spy {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.gated(cx) {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_write(cx, data);
        if let Poll::Ready(Ok(n)) = r {
            self.record(&[IoSlice::new(data)], n);
        }
        r
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.gated(cx) {
            return Poll::Pending;
        }
        let r = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = r {
            self.record(bufs, n);
        }
        r
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts futures that have been polled once (for a call: its request is
/// queued by then).
#[derive(Default)]
struct Started {
    count: std::sync::atomic::AtomicUsize,
    changed: tokio::sync::Notify,
}

impl Started {
    async fn after_first_poll<F: std::future::Future>(&self, fut: F) -> F::Output {
        let mut fut = std::pin::pin!(fut);
        let mut first = true;
        std::future::poll_fn(|cx| {
            let r = fut.as_mut().poll(cx);
            if std::mem::take(&mut first) {
                self.count.fetch_add(1, Ordering::SeqCst);
                self.changed.notify_waiters();
            }
            r
        })
        .await
    }

    async fn wait_for(&self, n: usize) {
        loop {
            let changed = self.changed.notified();
            if self.count.load(Ordering::SeqCst) >= n {
                return;
            }
            changed.await;
        }
    }
}

struct SpyEndpoint(Arc<Log>, &'static str);

impl Endpoint for SpyEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(4 << 20);
            weft_tokio::serve_on(
                theirs,
                handlers("spy", &Counters::default()),
                ServerOptions::default(),
            );
            Ok(Box::new(Spy {
                inner: ours,
                log: self.0.clone(),
            }) as BoxStream)
        })
    }
    fn address(&self) -> String {
        format!("spy://{}", self.1)
    }
}

async fn connected() -> (weft_tokio::Connection, Arc<Log>) {
    let log = Arc::new(Log::default());
    let conn = weft_tokio::connect(
        ConstantResolver::new([SpyEndpoint(log.clone(), "a")]),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    // Handshake and warm up with one call.
    conn.call(
        key("Echo"),
        Bytes::from_static(b"warm"),
        CallOptions::default(),
    )
    .await
    .unwrap();
    log.writes.lock().unwrap().clear();
    (conn, log)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_written_from_the_callers_own_task() {
    let (conn, log) = connected().await;
    let caller = tokio::spawn(async move {
        let me = tokio::task::id();
        conn.call(
            key("Echo"),
            Bytes::from_static(b"hi"),
            CallOptions::default(),
        )
        .await
        .unwrap();
        me
    });
    let me = caller.await.unwrap();
    let writes = log.writes.lock().unwrap().clone();
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert_eq!(
        writes[0].task,
        Some(me),
        "written by the caller, not a writer task"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_frames_queued_behind_a_full_socket_leave_in_one_write() {
    let (conn, log) = connected().await;
    log.gate_closed.store(true, Ordering::SeqCst);
    let started = Arc::new(Started::default());
    let mut calls = Vec::new();
    for i in 0..50u8 {
        let conn = conn.clone();
        let started = started.clone();
        calls.push(tokio::spawn(async move {
            let call = conn.call(
                key("Echo"),
                Bytes::from(vec![i; 16]),
                CallOptions::default(),
            );
            started.after_first_poll(call).await
        }));
    }
    // A call's first poll queues its request; the gate keeps every request
    // in the transmit queue until all 50 are there.
    started.wait_for(50).await;
    log.open_gate();
    for c in calls {
        assert_eq!(c.await.unwrap().unwrap().len(), 16);
    }
    let writes = log.writes.lock().unwrap().clone();
    let frame = 16 + 4 + 26 + 16; // header, header length, request header, args
    let total: usize = writes.iter().map(|w| w.bytes).sum();
    assert_eq!(total, 50 * frame);
    assert!(
        writes.len() <= 2,
        "50 requests took {} writes",
        writes.len()
    );
    // Once a write finds the socket full (the first caller's), callers
    // leave theirs to the connection's task, which tries once and waits
    // for room, rather than each trying again.
    let refused = log.refused.load(Ordering::SeqCst);
    assert!(refused <= 4, "{refused} writes tried against a full socket");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_payload_is_written_vectored_from_the_callers_buffer() {
    let (conn, log) = connected().await;
    let args = Bytes::from(vec![9u8; 1 << 20]);
    let (start, end) = (args.as_ptr() as usize, args.as_ptr() as usize + args.len());
    let out = conn
        .call(key("Echo"), args.clone(), CallOptions::default())
        .await
        .unwrap();
    assert_eq!(out, args);
    let writes = log.writes.lock().unwrap().clone();
    let from_args: usize = writes
        .iter()
        .flat_map(|w| w.slices.iter())
        .filter(|(addr, _)| *addr >= start && *addr < end)
        .map(|(_, len)| *len)
        .max()
        .unwrap_or(0);
    assert!(
        from_args > 0,
        "no write pointed into the caller's buffer: {writes:?}"
    );
    let first = &writes[0];
    assert!(
        first.slices.len() >= 2,
        "header and payload as separate slices: {first:?}"
    );
}

/// Starts `n` calls in one burst and waits for them all; the bytes of each
/// write the client made meanwhile. On a current-thread runtime tasks run
/// in the order they were woken, so every caller starts its call before
/// the connection's task (or the server's) runs again: the writes follow
/// from the batching rule alone.
async fn burst(conn: &weft_tokio::Connection, log: &Log, n: usize) -> Vec<usize> {
    let before = log.writes.lock().unwrap().len();
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let args = Bytes::from(vec![i as u8; 64]);
                conn.call(key("Echo"), args, CallOptions::default()).await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let out = call.await.expect("call task").expect("call");
        assert_eq!(out, vec![i as u8; 64], "call {i}");
    }
    let writes = log.writes.lock().unwrap();
    writes[before..].iter().map(|w| w.bytes).collect()
}

/// The writes `write_batch_at` asks for when `n` calls start back to back
/// and none ends meanwhile: the caller whose request fills a batch writes it,
/// the connection's task writes the last, partial one.
fn model_writes(n: usize) -> usize {
    let (mut writes, mut queued) = (0, 0);
    for outstanding in 1..=n {
        queued += 1;
        if queued >= write_batch_at(outstanding, 1) {
            writes += 1;
            queued = 0;
        }
    }
    writes + usize::from(queued > 0)
}

/// With few calls outstanding each caller writes its own request at once
/// (latency). With more, requests queue for the connection's task and leave
/// in batches of a quarter of the calls outstanding (throughput), never the
/// whole window in one write, which would make both ends wait in turn.
#[tokio::test(flavor = "current_thread")]
async fn few_calls_write_at_once_many_share_writes_in_batches() {
    let (conn, log) = connected().await;
    let few = (1..).take_while(|&n| write_batch_at(n, 1) <= 1).count();
    let writes = burst(&conn, &log, few).await;
    assert_eq!(writes.len(), few, "{few} calls: one write each");
    let frame = writes[0];
    assert!(writes.iter().all(|&b| b == frame), "one frame per write");

    let many = 64;
    let writes = burst(&conn, &log, many).await;
    assert_eq!(writes.len(), model_writes(many), "{many} calls: {writes:?}");
    assert!(
        writes.len() < many / 2,
        "{many} calls mostly share writes: {writes:?}"
    );
    let largest = writes.iter().max().unwrap();
    assert!(
        *largest <= frame * many / 4,
        "{many} calls: no write carries over a quarter of them: {writes:?}"
    );
    conn.close();
}

/// Calls shared by two connections leave in batches of a quarter of each
/// connection's share, not of all calls outstanding, which would let each
/// connection's whole share go in one write.
#[tokio::test(flavor = "current_thread")]
async fn batches_are_a_quarter_of_each_connections_share() {
    let logs = [Arc::new(Log::default()), Arc::new(Log::default())];
    let conn = weft_tokio::connect(
        ConstantResolver::new([
            SpyEndpoint(logs[0].clone(), "a"),
            SpyEndpoint(logs[1].clone(), "b"),
        ]),
        ClientOptions::default(),
    )
    .await
    .unwrap();
    // Until both connections carried a call.
    while logs.iter().any(|l| l.writes.lock().unwrap().len() < 2) {
        let args = Bytes::from(vec![0; 64]);
        conn.call(key("Echo"), args, CallOptions::default())
            .await
            .unwrap();
    }
    let frame = logs[0].writes.lock().unwrap().last().unwrap().bytes;
    for log in &logs {
        log.writes.lock().unwrap().clear();
    }
    let many = 128;
    burst(&conn, &logs[0], many).await;
    let writes = logs
        .map(|log| -> Vec<usize> { log.writes.lock().unwrap().iter().map(|w| w.bytes).collect() });
    let total: usize = writes.iter().flatten().sum();
    assert_eq!(total, many * frame, "every request written once");
    let quarter = write_batch_at(many, 2);
    for writes in writes {
        assert!(writes.len() < many / 2 / 2, "{writes:?}");
        let largest = writes.iter().max().unwrap();
        assert!(
            *largest <= frame * quarter,
            "no write over {quarter} requests: {writes:?}"
        );
    }
    conn.close();
}
