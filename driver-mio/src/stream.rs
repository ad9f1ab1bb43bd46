//! The byte streams the mio driver runs over, and moving bytes through them.

use bytes::BytesMut;
use mio::event::Source;
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice, Read, Write};
use std::task::{Context, Poll};
use weft_driver::Transport;
use weft_proto::Transmit;

/// A connected socket: TCP or Unix, maybe under TLS.
#[derive(Debug)]
pub enum Stream {
    /// TCP.
    Tcp(mio::net::TcpStream),
    /// Unix domain socket.
    Unix(mio::net::UnixStream),
    /// TLS over one of the others.
    #[cfg(feature = "tls")]
    Tls(Box<crate::tls::TlsStream>),
}

impl Stream {
    /// Wraps a connected std socket (made non-blocking here).
    pub fn from_std_tcp(s: std::net::TcpStream) -> io::Result<Stream> {
        s.set_nonblocking(true)?;
        weft_driver::tcp::configure(&s)?;
        Ok(Stream::Tcp(mio::net::TcpStream::from_std(s)))
    }

    /// Wraps a connected std Unix socket (made non-blocking here).
    pub fn from_std_unix(s: std::os::unix::net::UnixStream) -> io::Result<Stream> {
        s.set_nonblocking(true)?;
        Ok(Stream::Unix(mio::net::UnixStream::from_std(s)))
    }

    /// Shuts the write half (under TLS, after a close_notify): the peer
    /// reads the end of the stream. `WouldBlock` while TLS records wait
    /// for the socket.
    pub(crate) fn close_write(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.shutdown(std::net::Shutdown::Write),
            Stream::Unix(s) => s.shutdown(std::net::Shutdown::Write),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.close_write(),
        }
    }

    /// Whether bytes already accepted still wait for the socket (TLS
    /// records): a writer flushes even with nothing new to write.
    pub(crate) fn has_pending_output(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.has_pending_output(),
            _ => false,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write_vectored(bufs),
            Stream::Unix(s) => s.write_vectored(bufs),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(r, t, i),
            Stream::Unix(s) => s.register(r, t, i),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.register(r, t, i),
        }
    }
    fn reregister(&mut self, r: &Registry, t: Token, i: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(r, t, i),
            Stream::Unix(s) => s.reregister(r, t, i),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.reregister(r, t, i),
        }
    }
    fn deregister(&mut self, r: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(r),
            Stream::Unix(s) => s.deregister(r),
            #[cfg(feature = "tls")]
            Stream::Tls(s) => s.sock.deregister(r),
        }
    }
}

/// Bytes offered to each read. Larger reads need fewer syscalls but the
/// spare room is zeroed first (see `read_once`), so this stays moderate.
const READ_CHUNK: usize = 16 * 1024;

/// How much of `spare` bytes of room a read is offered: never past the
/// room the core made (growing here would allocate behind the core's buffer
/// policy), and at most a chunk, since it is zeroed first.
pub(crate) fn read_room(spare: usize) -> usize {
    spare.clamp(1, READ_CHUNK)
}

impl Stream {
    /// Whether a read of `n` bytes offered `spare` bytes of room emptied
    /// the socket: a short read takes everything there was, and
    /// edge-triggered readiness reports the next bytes to arrive. Never for
    /// TLS, whose reads come out of what rustls buffered. Not the end of
    /// the stream either: a hang-up that arrived with the bytes was already
    /// reported and will not be again, so after one the socket is read to
    /// the end (the callers' business).
    pub(crate) fn drained_by_short_read(&self, spare: usize, n: usize) -> bool {
        #[cfg(feature = "tls")]
        if matches!(self, Stream::Tls(_)) {
            return false;
        }
        n < read_room(spare)
    }
}

/// Reads once into the spare room of `buf`. `Ok(0)` is end of stream.
pub(crate) fn read_once(stream: &mut Stream, buf: &mut BytesMut) -> io::Result<usize> {
    // Zeroing the spare room keeps this free of unsafe; it costs a memset
    // of the chunk, which the benchmark shows is small next to the syscall.
    let len = buf.len();
    let room = read_room(buf.capacity() - len);
    buf.resize(len + room, 0);
    let r = stream.read(&mut buf[len..]);
    buf.truncate(len + *r.as_ref().unwrap_or(&0));
    r
}

/// One vectored write of the pending bytes of `tx`; returns how many the
/// socket took.
pub(crate) fn write_once(stream: &mut Stream, tx: &Transmit) -> io::Result<usize> {
    if tx.is_empty() && !stream.has_pending_output() {
        return Ok(0);
    }
    let mut slices = [IoSlice::new(&[]); 64];
    let n = tx.io_slices(&mut slices);
    match stream.write_vectored(&slices[..n]) {
        Ok(0) if !tx.is_empty() => Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "socket accepted no bytes",
        )),
        other => other,
    }
}

impl Transport for Stream {
    fn poll_read(&mut self, _: &mut Context<'_>, buf: &mut BytesMut) -> Poll<io::Result<usize>> {
        // Edge-triggered: WouldBlock is the registration's promise of an
        // event when bytes arrive.
        match read_once(self, buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Poll::Pending,
            other => Poll::Ready(other),
        }
    }

    fn drained_by_short_read(&self, spare: usize, n: usize) -> bool {
        Stream::drained_by_short_read(self, spare, n)
    }

    fn poll_write(&mut self, _: &mut Context<'_>, tx: &Transmit) -> Poll<io::Result<usize>> {
        loop {
            match write_once(self, tx) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Poll::Pending,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => return Poll::Ready(other),
            }
        }
    }
}
