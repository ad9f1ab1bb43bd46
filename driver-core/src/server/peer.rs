//! Who is on the other end of a server connection.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The address of the client a server connection was accepted from, as
/// [`Request::peer_addr`](super::Request::peer_addr) reports it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PeerAddr {
    /// A TCP (or TLS over TCP) client.
    Tcp(SocketAddr),
    /// A Unix-socket client: the path it bound, which clients usually do
    /// not (`None`).
    Unix(Option<PathBuf>),
}

impl PeerAddr {
    /// The address of a Unix-socket peer as the OS reports it.
    pub fn unix(path: Option<&Path>) -> Self {
        PeerAddr::Unix(path.map(Path::to_owned))
    }
}

impl From<SocketAddr> for PeerAddr {
    fn from(addr: SocketAddr) -> Self {
        PeerAddr::Tcp(addr)
    }
}

impl fmt::Display for PeerAddr {
    /// `tcp://127.0.0.1:40312`, `unix:///run/client.sock`, or `unix:` for
    /// an unnamed Unix socket.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(a) => write!(f, "tcp://{a}"),
            PeerAddr::Unix(Some(p)) => write!(f, "unix://{}", p.display()),
            PeerAddr::Unix(None) => f.write_str("unix:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_as_an_address() {
        let tcp = PeerAddr::from("127.0.0.1:9".parse::<SocketAddr>().unwrap());
        assert_eq!(tcp.to_string(), "tcp://127.0.0.1:9");
        assert_eq!(PeerAddr::unix(None).to_string(), "unix:");
        let named = PeerAddr::unix(Some(Path::new("/run/c.sock")));
        assert_eq!(named.to_string(), "unix:///run/c.sock");
    }
}
