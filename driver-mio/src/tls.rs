//! TLS on the event loop: rustls's own connection, driven by the same
//! non-blocking reads and writes as a plain socket (feature `tls`).
//!
//! rustls is sans-IO like weft's cores: bytes in (`read_tls`), records
//! processed (`process_new_packets`), plaintext out (`reader`), and the
//! other way for writes. The handshake happens inside the first reads and
//! writes, so it needs no step of its own: a connection's loop drives it,
//! and the router's connect timeout bounds it (the version handshake
//! cannot finish before it).
//!
//! The settings are weft-driver's, the same on both drivers:
//! [`ClientTls`] and [`TlsEndpoint`] (`tls://host:port`) for clients,
//! [`ServerTls`] for [`Server::bind_tls`](crate::Server::bind_tls).

use crate::stream::Stream;
use std::io::{self, IoSlice, Read, Write};
use weft_driver::tls::closed_in_handshake;
pub use weft_driver::tls::{
    ClientTls, Identity, RootCerts, ServerTls, TlsEndpoint, TlsError, describe, rustls,
};

/// A socket under a rustls client or server connection.
#[derive(Debug)]
pub struct TlsStream {
    pub(crate) sock: Stream,
    conn: rustls::Connection,
    close_notify_sent: bool,
}

impl TlsStream {
    /// Runs `conn` over the connected socket `sock`.
    pub fn new(sock: Stream, conn: impl Into<rustls::Connection>) -> Self {
        TlsStream {
            sock,
            conn: conn.into(),
            close_notify_sent: false,
        }
    }

    /// Says close_notify, then shuts the socket's write half once every
    /// record is out (`WouldBlock` until then).
    pub(crate) fn close_write(&mut self) -> io::Result<()> {
        if !std::mem::replace(&mut self.close_notify_sent, true) {
            self.conn.send_close_notify();
        }
        self.flush_records()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.sock.close_write()
    }

    /// Whether encrypted bytes wait for the socket to take them.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.conn.wants_write()
    }

    /// Writes queued records until the socket would block. Records left
    /// over go out on a later read or write; the socket's writability event
    /// brings one.
    fn flush_records(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A write that fails here (the peer hung up) is reported only once
        // nothing more can be read: what the peer sent before it left (its
        // last records, or an alert saying why) tells more than EPIPE.
        let mut write_failed = None;
        loop {
            // Handshake messages (and alerts) before anything else.
            if write_failed.is_none()
                && let Err(e) = self.flush_records()
            {
                write_failed = Some(weft_driver::tls::describe_write_io(e));
            }
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer hung up without close_notify: an end all the same.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // At the end, reader() reports it on the next turn; during the
            // handshake it is a peer that did not speak TLS.
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) if self.conn.is_handshaking() => return Err(closed_in_handshake()),
                Ok(_) => {}
                Err(e) => return Err(write_failed.unwrap_or(e)),
            }
            if let Err(e) = self.conn.process_new_packets() {
                // The alert rustls queued tells the peer why.
                let _ = self.flush_records();
                return Err(io::Error::new(io::ErrorKind::InvalidData, describe(&e)));
            }
        }
    }

    pub(crate) fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.write_plaintext(bufs)
            .map_err(weft_driver::tls::describe_write_io)
    }

    fn write_plaintext(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        // Plaintext is taken only once earlier records are out, so what is
        // buffered stays bounded by one write's worth.
        self.flush_records()?;
        if self.conn.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = self.conn.writer().write_vectored(bufs)?;
        if n == 0 && bufs.iter().any(|b| !b.is_empty()) {
            // rustls's buffer is full of plaintext waiting for the
            // handshake; the reads that finish it make room.
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.flush_records()?;
        Ok(n)
    }
}
