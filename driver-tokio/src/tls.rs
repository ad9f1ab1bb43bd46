//! TLS and mutual TLS with tokio-rustls (feature `tls`).
//!
//! The settings are weft-driver's, the same on both drivers: [`ClientTls`]
//! and [`TlsEndpoint`] (`tls://host:port`) for clients, [`ServerTls`] for
//! [`Listener::tls`](crate::Listener::tls).
//!
//! The handshake is not a step of its own: a dialed or accepted stream
//! starts handshaking, and its connection's first reads finish it. So a
//! client's handshake is bounded by the router's connect timeout (the
//! version handshake cannot finish before it) and a server's by its
//! handshake timeout, and neither leaves a task behind that waits forever.

use crate::endpoint::{BoxFuture, BoxStream, Endpoint};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
pub use weft_driver::tls::{
    ClientTls, Identity, RootCerts, ServerTls, TlsEndpoint, TlsError, describe, rustls,
};
use weft_driver::tls::{closed_in_handshake, describe_io, describe_write_io};

type Handshake<S> = Pin<Box<dyn Future<Output = io::Result<S>> + Send>>;

/// A TLS stream whose handshake finishes in its first reads.
pub(crate) struct LazyTls<S> {
    state: State<S>,
}

enum State<S> {
    Handshaking(Handshake<S>),
    Ready(S),
    Failed,
}

impl<S: AsyncRead + AsyncWrite + Unpin> LazyTls<S> {
    fn new(handshake: impl Future<Output = io::Result<S>> + Send + 'static) -> Self {
        LazyTls {
            state: State::Handshaking(Box::pin(handshake)),
        }
    }

    /// Drives the handshake. Only reads call this: a connection's loop
    /// always reads, with its own waker, while a caller's write may pass a
    /// waker that wakes nobody and must not take the socket's registration.
    fn poll_handshake(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<&mut S>> {
        if let State::Handshaking(h) = &mut self.state {
            match ready!(h.as_mut().poll(cx)) {
                Ok(s) => self.state = State::Ready(s),
                Err(e) => {
                    self.state = State::Failed;
                    return Poll::Ready(Err(handshake_error(e)));
                }
            }
        }
        self.ready()
    }

    fn ready(&mut self) -> Poll<io::Result<&mut S>> {
        match &mut self.state {
            State::Ready(s) => Poll::Ready(Ok(s)),
            State::Handshaking(_) => Poll::Pending,
            State::Failed => Poll::Ready(Err(io::Error::other("TLS: the handshake failed"))),
        }
    }
}

fn handshake_error(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::UnexpectedEof {
        closed_in_handshake()
    } else {
        describe_io(e)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for LazyTls<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let s = ready!(self.get_mut().poll_handshake(cx))?;
        match ready!(Pin::new(s).poll_read(cx, buf)) {
            // A peer that hangs up without a close_notify (a crash, or a
            // server closing an idle connection) ends the stream, as it
            // does on the mio driver and over plaintext: the frames tell
            // whether anything was cut short, so the error would say
            // nothing more than "closed", only less plainly.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
            read => Poll::Ready(read.map_err(describe_io)),
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for LazyTls<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let s = ready!(self.get_mut().ready())?;
        Pin::new(s).poll_write(cx, buf).map_err(describe_write_io)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let s = ready!(self.get_mut().ready())?;
        Pin::new(s)
            .poll_write_vectored(cx, bufs)
            .map_err(describe_write_io)
    }

    fn is_write_vectored(&self) -> bool {
        match &self.state {
            State::Ready(s) => s.is_write_vectored(),
            _ => false,
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(s) => Pin::new(s).poll_flush(cx).map_err(describe_write_io),
            _ => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().state {
            State::Ready(s) => Pin::new(s).poll_shutdown(cx),
            // No session to say close_notify in, and the socket is inside
            // the handshake: the caller closes the connection outright.
            State::Handshaking(_) => Poll::Ready(Err(io::Error::other(
                "TLS: shut down before the handshake finished",
            ))),
            State::Failed => Poll::Ready(Err(io::Error::other("TLS: the handshake failed"))),
        }
    }
}

impl Endpoint for TlsEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            let name = self
                .tls()
                .server_name(self.endpoint().host())
                .map_err(io::Error::other)?;
            let sock = self.endpoint().dial().await?;
            let connector = tokio_rustls::TlsConnector::from(self.tls().config().clone());
            Ok(Box::new(LazyTls::new(connector.connect(name, sock))) as BoxStream)
        })
    }

    fn address(&self) -> String {
        TlsEndpoint::address(self)
    }
}

/// An accepted stream, handshaking as the server.
pub(crate) fn accept(tls: &ServerTls, sock: BoxStream) -> BoxStream {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls.config().clone());
    Box::new(LazyTls::new(acceptor.accept(sock)))
}
