//! The byte streams the mio driver runs over, and moving bytes through them.

use bytes::BytesMut;
use mio::event::Source;
use mio::{Interest, Registry, Token};
use std::io::{self, IoSlice, Read, Write};
use std::os::fd::{AsRawFd, RawFd};
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

/// Bytes offered to each read, at most.
const READ_CHUNK: usize = 64 * 1024;

/// How much of `spare` bytes of room a read is offered: never past the
/// room the core made (growing here would allocate behind the core's buffer
/// policy), and at most a chunk.
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
    let room = read_room(buf.capacity() - buf.len());
    match stream {
        Stream::Tcp(s) => recv_into_spare(s.as_raw_fd(), buf, room),
        Stream::Unix(s) => recv_into_spare(s.as_raw_fd(), buf, room),
        #[cfg(feature = "tls")]
        Stream::Tls(s) => {
            // rustls copies out of its own buffer into initialized bytes:
            // zero the room first.
            let len = buf.len();
            buf.resize(len + room, 0);
            let r = s.read(&mut buf[len..]);
            buf.truncate(len + *r.as_ref().unwrap_or(&0));
            r
        }
    }
}

/// One `recv` of up to `room` bytes straight into the spare capacity of
/// `buf`. Through `Read` the room would have to be zeroed first: a memset
/// of the whole room per read, 1.6 % of both processes' time at one small
/// call in flight on one core, and a second pass over every byte of a
/// large response.
fn recv_into_spare(fd: RawFd, buf: &mut BytesMut, room: usize) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    let room = room.min(spare.len());
    // SAFETY: `recv` writes at most `room` bytes at `spare`'s start, which
    // is memory `buf` owns (its spare capacity, `room` long at least) and
    // nothing else refers to while `buf` is borrowed here; it never reads
    // them. A `MaybeUninit` pointer is fine to write through.
    let n = unsafe { libc::recv(fd, spare.as_mut_ptr().cast(), room, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = n as usize;
    debug_assert!(n <= room);
    // SAFETY: `recv` initialized the first `n` (<= `room`) bytes of the
    // spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (Stream, std::os::unix::net::UnixStream) {
        let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
        (Stream::from_std_unix(a).unwrap(), b)
    }

    /// A read appends what arrived after the bytes already held, within
    /// the room the buffer has: no growth, nothing past what the socket
    /// gave.
    #[test]
    fn a_read_appends_into_the_spare_room_only() {
        let (mut s, mut peer) = pair();
        let mut buf = BytesMut::with_capacity(64);
        buf.extend_from_slice(b"held:");
        let cap = buf.capacity();
        let sent: Vec<u8> = (0..200u8).collect();
        peer.write_all(&sent).unwrap();
        let n = read_once(&mut s, &mut buf).unwrap();
        assert_eq!(n, cap - 5, "the room, all of it, and no more");
        assert_eq!(buf.capacity(), cap, "no growth behind the core's policy");
        assert_eq!(&buf[..5], b"held:");
        assert_eq!(&buf[5..], &sent[..n]);
        buf.clear();
        buf.reserve(4096);
        let m = read_once(&mut s, &mut buf).unwrap();
        assert_eq!(&buf[..], &sent[n..], "the rest, short of the room");
        assert!(s.drained_by_short_read(4096, m));
    }

    #[test]
    fn an_empty_socket_would_block_and_a_closed_one_ends() {
        let (mut s, peer) = pair();
        let mut buf = BytesMut::with_capacity(16);
        let e = read_once(&mut s, &mut buf).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
        assert!(buf.is_empty());
        drop(peer);
        assert_eq!(read_once(&mut s, &mut buf).unwrap(), 0);
        assert!(buf.is_empty());
    }
}
