//! Where replicas live and how to reach them.

use std::fmt;
use std::future::Future;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use tokio::io::{AsyncRead, AsyncWrite};

/// A byte stream weft can run over: TCP, a Unix socket, TLS, an in-memory
/// pipe, or a fault injector wrapping any of them.
pub trait AsyncStream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> AsyncStream for T {}

/// A boxed [`AsyncStream`].
pub type BoxStream = Box<dyn AsyncStream>;

/// A boxed, sendable future.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A replica that can be dialed.
///
/// Implement it to plug in TLS, in-memory pipes or fault injection:
///
/// ```
/// use weft_tokio::{BoxFuture, BoxStream, Endpoint};
///
/// /// Dials an in-memory pipe whose other end is served by `weft_tokio::serve_on`.
/// struct Pipe(tokio::sync::mpsc::UnboundedSender<tokio::io::DuplexStream>);
///
/// impl Endpoint for Pipe {
///     fn dial(&self) -> BoxFuture<'_, std::io::Result<BoxStream>> {
///         Box::pin(async move {
///             let (ours, theirs) = tokio::io::duplex(64 * 1024);
///             self.0.send(theirs).map_err(|_| std::io::Error::other("server gone"))?;
///             Ok(Box::new(ours) as BoxStream)
///         })
///     }
///     fn address(&self) -> String {
///         "pipe://test".into()
///     }
/// }
/// ```
pub trait Endpoint: Send + Sync + 'static {
    /// Opens a new byte stream to the replica.
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>>;
    /// The replica's address: how the resolver's sets are compared.
    fn address(&self) -> String;
}

/// A TCP or Unix socket endpoint: `tcp://host:port`, `unix:///abs/path` or
/// `unix://relative.sock`.
///
/// ```
/// use weft_tokio::NetEndpoint;
/// let e: NetEndpoint = "tcp://127.0.0.1:8000".parse()?;
/// assert_eq!(e.to_string(), "tcp://127.0.0.1:8000");
/// assert!("http://x".parse::<NetEndpoint>().is_err());
/// # Ok::<(), weft_tokio::ParseNetEndpoint>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NetEndpoint {
    /// A TCP address, `host:port`.
    Tcp(String),
    /// A Unix socket path.
    Unix(PathBuf),
}

/// A TCP endpoint at `addr` (`host:port`).
pub fn tcp(addr: impl Into<String>) -> NetEndpoint {
    NetEndpoint::Tcp(addr.into())
}

/// A Unix socket endpoint at `path`.
pub fn unix(path: impl Into<PathBuf>) -> NetEndpoint {
    NetEndpoint::Unix(path.into())
}

/// Why a string is not a [`NetEndpoint`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad endpoint {input:?}: {reason}")]
pub struct ParseNetEndpoint {
    input: String,
    reason: &'static str,
}

impl FromStr for NetEndpoint {
    type Err = ParseNetEndpoint;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseNetEndpoint {
            input: s.to_owned(),
            reason,
        };
        if let Some(addr) = s.strip_prefix("tcp://") {
            match addr.rsplit_once(':') {
                Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                    Ok(NetEndpoint::Tcp(addr.to_owned()))
                }
                _ => Err(err("want tcp://host:port")),
            }
        } else if let Some(path) = s.strip_prefix("unix://") {
            if path.is_empty() {
                Err(err("want unix:///path or unix://relative.sock"))
            } else {
                Ok(NetEndpoint::Unix(path.into()))
            }
        } else {
            Err(err("scheme must be tcp:// or unix://"))
        }
    }
}

impl fmt::Display for NetEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetEndpoint::Tcp(a) => write!(f, "tcp://{a}"),
            NetEndpoint::Unix(p) => write!(f, "unix://{}", p.display()),
        }
    }
}

impl Endpoint for NetEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            match self {
                NetEndpoint::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    // Calls are small and latency-bound; never wait to batch.
                    s.set_nodelay(true)?;
                    Ok(Box::new(s) as BoxStream)
                }
                #[cfg(unix)]
                NetEndpoint::Unix(path) => {
                    let s = tokio::net::UnixStream::connect(path).await?;
                    Ok(Box::new(s) as BoxStream)
                }
                #[cfg(not(unix))]
                NetEndpoint::Unix(_) => Err(io::Error::new(
                    io::ErrorKind::Unsupported,
                    "unix sockets need a unix platform",
                )),
            }
        })
    }

    fn address(&self) -> String {
        self.to_string()
    }
}
