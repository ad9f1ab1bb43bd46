//! The socket a server accepts on.

use crate::stream::Stream;
use mio::net::{TcpListener, UnixListener};
use std::io;
use weft_driver::server::PeerAddr;

pub(super) enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    pub(super) fn accept(&self) -> io::Result<(Stream, PeerAddr)> {
        match self {
            Listener::Tcp(l) => {
                let (s, addr) = l.accept()?;
                // A socket that refuses (its peer already gone) is still
                // served, and fails on read.
                if let Err(e) = weft_driver::tcp::configure(&s) {
                    tracing::debug!(error = %e, "TCP_NODELAY and keep-alive");
                }
                Ok((Stream::Tcp(s), PeerAddr::Tcp(addr)))
            }
            Listener::Unix(l) => {
                let (s, addr) = l.accept()?;
                Ok((Stream::Unix(s), PeerAddr::unix(addr.as_pathname())))
            }
        }
    }
}
