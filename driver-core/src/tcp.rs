//! What weft sets on every TCP socket it dials or accepts, in both drivers.
//!
//! - `TCP_NODELAY`: calls are small and latency-bound; never wait to batch.
//! - Keep-alive, as Go's `net` package sets it by default (so Service
//!   Weaver's peers have it): a peer whose host died or whose network went
//!   away, without a FIN or a reset, is found out after [`KEEPALIVE`] of
//!   silence and [`KEEPALIVE_PROBES`] unanswered probes [`KEEPALIVE`]
//!   apart (about 2.5 minutes), and the connection fails. Without it a
//!   call with no deadline on such a connection would wait forever, and a
//!   server would keep the connection (and its place under
//!   `max_connections`) for good.
//!
//! ```
//! let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
//! let socket = std::net::TcpStream::connect(listener.local_addr()?)?;
//! weft_driver::tcp::configure(&socket)?;
//! assert!(socket.nodelay()?);
//! # Ok::<(), std::io::Error>(())
//! ```

use socket2::{SockRef, TcpKeepalive};
use std::io;
use std::time::Duration;

/// Silence after which the kernel starts probing a connection, and the
/// time between probes (Go's default for both).
pub const KEEPALIVE: Duration = Duration::from_secs(15);

/// Unanswered probes after which the kernel fails the connection (Go's
/// default; where the platform lets it be set).
pub const KEEPALIVE_PROBES: u32 = 9;

/// Sets `TCP_NODELAY` and keep-alive on a connected TCP socket.
pub fn configure<'s, S>(socket: &'s S) -> io::Result<()>
where
    SockRef<'s>: From<&'s S>,
{
    let socket = SockRef::from(socket);
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&keepalive())
}

fn keepalive() -> TcpKeepalive {
    let k = TcpKeepalive::new().with_time(KEEPALIVE);
    #[cfg(any(
        target_os = "linux",
        target_os = "android",
        target_os = "macos",
        target_os = "ios",
        target_os = "freebsd",
        target_os = "netbsd",
    ))]
    let k = k.with_interval(KEEPALIVE).with_retries(KEEPALIVE_PROBES);
    k
}
