//! A stream that takes bytes before it can send them, as TLS takes
//! plaintext and holds the records the socket had no room for: the client
//! must push them out itself, or a request waits for an event that never
//! comes.

mod common;

use bytes::Bytes;
use common::{Counters, handlers, key};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream, ReadBuf};
use weft_tokio::{
    BoxFuture, BoxStream, CallOptions, ClientOptions, ConstantResolver, Endpoint, ServerOptions,
};

/// Bytes the stream takes beyond what the pipe has room for, like rustls's
/// buffer of records.
const HOLD: usize = 64 * 1024;
/// The pipe to the server: far smaller than one request.
const PIPE: usize = 16 * 1024;

/// Takes up to [`HOLD`] bytes at once and passes on what the pipe accepts;
/// the rest waits for the next write or a flush (tokio-rustls's
/// `poll_write` and `poll_flush` behave so).
struct Holding {
    pipe: DuplexStream,
    held: Vec<u8>,
}

impl Holding {
    fn push(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.held.is_empty() {
            match Pin::new(&mut self.pipe).poll_write(cx, &self.held) {
                Poll::Ready(Ok(n)) => drop(self.held.drain(..n)),
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for Holding {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl AsyncWrite for Holding {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Err(e)) = self.push(cx) {
            return Poll::Ready(Err(e));
        }
        let take = data.len().min(HOLD.saturating_sub(self.held.len()));
        if take == 0 {
            return Poll::Pending;
        }
        self.held.extend_from_slice(&data[..take]);
        // Taken, whether or not the pipe had room: the pipe's waker, if
        // it had none, is whatever `cx` was.
        if let Poll::Ready(Err(e)) = self.push(cx) {
            return Poll::Ready(Err(e));
        }
        Poll::Ready(Ok(take))
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.push(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// A pipe to a server, with the client's end holding (`true`) or the
/// server's.
struct HoldingEndpoint(bool);

impl Endpoint for HoldingEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        let holding = |pipe| Holding {
            pipe,
            held: Vec::new(),
        };
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(PIPE);
            let (ours, theirs): (BoxStream, BoxStream) = if self.0 {
                (Box::new(holding(ours)), Box::new(theirs))
            } else {
                (Box::new(ours), Box::new(holding(theirs)))
            };
            weft_tokio::serve_on(
                theirs,
                handlers("held", &Counters::default()),
                ServerOptions::default(),
            );
            Ok(ours)
        })
    }
    fn address(&self) -> String {
        "holding://a".into()
    }
}

/// A request the caller writes itself (one call in flight), taken whole by
/// the stream with the pipe full: the stream's waker is the caller's,
/// which wakes nobody, so only a flush that hands the rest to the
/// connection's loop gets it out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_the_stream_holds_back_still_leaves() {
    echo_through(HoldingEndpoint(true)).await;
}

/// The server's connection task writes with its own waker, but once its
/// queue is empty it writes no more: its flush sends what the stream held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_the_stream_holds_back_still_leaves() {
    echo_through(HoldingEndpoint(false)).await;
}

async fn echo_through(endpoint: HoldingEndpoint) {
    let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
        .await
        .unwrap();
    for size in [40 * 1024, 3 * HOLD / 2, 300 * 1024] {
        let args = Bytes::from(vec![0x5a; size]);
        let call = conn.call(key("Echo"), args.clone(), CallOptions::default());
        // A guard against the hang this test is about; nothing here is
        // about how long a call takes.
        let out = tokio::time::timeout(Duration::from_secs(30), call)
            .await
            .unwrap_or_else(|_| panic!("a {size}-byte request never left the stream"))
            .unwrap();
        assert_eq!(out, args);
    }
    conn.close();
}
