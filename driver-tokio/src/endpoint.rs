//! Where replicas live and how to reach them.

use std::future::Future;
use std::io;
use std::pin::Pin;
use tokio::io::{AsyncRead, AsyncWrite};
pub use weft_proto::{NetEndpoint, ParseNetEndpoint, tcp, unix};

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

impl Endpoint for NetEndpoint {
    fn dial(&self) -> BoxFuture<'_, io::Result<BoxStream>> {
        Box::pin(async move {
            match self {
                NetEndpoint::Tcp(addr) => {
                    let s = tokio::net::TcpStream::connect(addr.as_str()).await?;
                    weft_driver::tcp::configure(&s)?;
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
