//! When requests are written: by the caller at once while few calls are
//! outstanding (latency), by the connection's task in one write from
//! `BATCH_WRITES_FROM` on (throughput). Counted on the transport: a stream
//! that counts the writes the client makes, over an in-memory pipe to a
//! weft server.

use bytes::Bytes;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use weft_tokio::{
    BoxFuture, BoxStream, CallOptions, ConstantResolver, Endpoint, HandlerMap, MethodKey, Request,
};

/// The client's end of the pipe, counting write calls.
struct Counting {
    inner: DuplexStream,
    writes: Arc<AtomicUsize>,
}

impl AsyncRead for Counting {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counting {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Dials a pipe whose other end a weft server serves.
struct Pipe {
    writes: Arc<AtomicUsize>,
}

impl Endpoint for Pipe {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            // Room for every request of the test: no write is ever short.
            let (ours, theirs) = tokio::io::duplex(4 << 20);
            let mut handlers = HandlerMap::new();
            handlers.set(
                "weft.Test",
                "Echo",
                |req: Request| async move { Ok(req.args) },
            );
            weft_tokio::serve_on(theirs, handlers, Default::default());
            let counting = Counting {
                inner: ours,
                writes: self.writes.clone(),
            };
            Ok(Box::new(counting) as BoxStream)
        })
    }

    fn address(&self) -> String {
        "pipe://batching".into()
    }
}

/// Starts `n` calls in one burst (each task starts its call before the
/// connection's task runs again: one thread) and returns the writes they
/// took.
async fn burst(conn: &Arc<weft_tokio::Connection>, writes: &AtomicUsize, n: usize) -> usize {
    let before = writes.load(Ordering::SeqCst);
    let key = MethodKey::new("weft.Test", "Echo");
    let calls: Vec<_> = (0..n)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                let args = Bytes::from(vec![i as u8; 64]);
                conn.call(key, args, CallOptions::default()).await
            })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        let out = call.await.expect("call task").expect("call");
        assert_eq!(out, vec![i as u8; 64], "call {i}");
    }
    writes.load(Ordering::SeqCst) - before
}

#[tokio::test(flavor = "current_thread")]
async fn few_calls_write_at_once_many_share_one_write() {
    let writes = Arc::new(AtomicUsize::new(0));
    let pipe = Pipe {
        writes: writes.clone(),
    };
    let conn = weft_tokio::connect(ConstantResolver::new([pipe]), Default::default())
        .await
        .expect("connect");
    let conn = Arc::new(conn);
    // The handshake and a first call: the connection is ready.
    burst(&conn, &writes, 1).await;

    let limit = weft_tokio::proto::BATCH_WRITES_FROM;
    // Below the threshold every caller writes its own request.
    let few = limit - 1;
    assert_eq!(burst(&conn, &writes, few).await, few, "{few} calls");

    // From the threshold on, the requests queue up for the connection's
    // task, which writes them all in one go: the first `limit - 1` calls
    // write their own, the rest share one write.
    let many = 4 * limit;
    assert_eq!(
        burst(&conn, &writes, many).await,
        limit,
        "{many} calls: {} written at once, the rest in one write",
        limit - 1
    );
    conn.close();
}
