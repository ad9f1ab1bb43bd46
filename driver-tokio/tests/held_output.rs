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
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use weft_proto::{FrameDecoder, Message, MethodKey, RequestHeader, Transmit, Version};
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

/// The answer sits in the stream (the pipe is full) when the client breaks
/// the protocol: the connection fails, but it is not finished while the
/// stream still holds the answer, so the client reads it whole before
/// the close.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_connection_still_sends_what_the_stream_holds() {
    let (mut peer, theirs) = tokio::io::duplex(PIPE);
    let server = weft_tokio::serve_on(
        Holding {
            pipe: theirs,
            held: Vec::new(),
        },
        handlers("held", &Counters::default()),
        ServerOptions::default(),
    );
    // Taken whole by the stream, which passes on what the pipe holds.
    let args = Bytes::from(vec![0x5a; HOLD / 2 + PIPE]);
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    tx.push_request(1, header.fields(), &args);
    let mut hello = Vec::new();
    tx.drain_into(&mut hello);
    peer.write_all(&hello).await.unwrap();
    // The answer has begun, so the stream took all of it: the
    // connection's queue is empty and the stream holds the rest.
    let mut got = vec![0; 1024];
    peer.read_exact(&mut got).await.unwrap();
    // A frame of a type no version knows: the client broke the protocol.
    let mut unknown = vec![0; 8];
    unknown.extend_from_slice(&9u64.to_le_bytes());
    peer.write_all(&unknown).await.unwrap();
    // A guard against a hang; nothing here is about how long it takes.
    tokio::time::timeout(Duration::from_secs(30), peer.read_to_end(&mut got))
        .await
        .expect("the server closes")
        .unwrap();
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(&got);
    let frames: Vec<Message> =
        std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect();
    // Said by size: a failure printing the payload would hide itself.
    let whole = matches!(
        frames.as_slice(),
        [Message::Version(Version::CURRENT), Message::Response { id: 1, payload }] if *payload == args
    );
    assert!(whole, "{} of {} bytes read", got.len(), hello.len());
    server.await.unwrap();
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
