//! The server options both drivers take.

use std::time::Duration;
use weft_proto::ConnConfig;
use weft_proto::ServerConfig;

/// Default [`ServerOptions::max_concurrent_handlers_per_connection`].
pub const DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONNECTION: usize = 64;

/// Default [`ServerOptions::max_queued_requests`].
pub const DEFAULT_MAX_QUEUED_REQUESTS: usize = 1024;

/// Default [`ServerOptions::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 10_000;

/// Server settings, the same for every driver.
///
/// The connection limits go to each connection's core
/// ([`server_config`](Self::server_config)); the handler limits say how
/// much handler work a driver takes on at once.
///
/// ```
/// use std::time::Duration;
/// use weft_driver::server::ServerOptions;
/// let opts = ServerOptions {
///     body_timeout: Duration::from_secs(5),
///     ..ServerOptions::default()
/// };
/// assert_eq!(opts.server_config(7).body_timeout, Duration::from_secs(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a handler runs on the connection's reader before it moves
    /// off, so one slow handler never stalls the other calls (default
    /// 20 µs, as Go). `None` always moves it off.
    pub inline_handler_duration: Option<Duration>,
    /// Frames up to this size are copied into one write (default 4 KiB).
    pub write_flatten_limit: usize,
    /// Largest request accepted (default 100 MiB). A larger one is
    /// answered with an error naming the limit, its body discarded unread.
    pub max_message_size: u64,
    /// How long a new connection may take to send its version (default
    /// 10 s).
    pub handshake_timeout: Duration,
    /// How long a frame may take to arrive once it has begun (default
    /// 30 s).
    pub body_timeout: Duration,
    /// Bytes of responses queued for one client above which its connection
    /// is not read until it takes them (default 4 MiB).
    pub max_queued_output: usize,
    /// Handlers of one connection that may run at once (default 64; 0
    /// counts as 1), so a single client cannot take every thread or task
    /// the server has. Requests past it wait (cancels still reach them and
    /// the running handlers); once those waiting hold
    /// [`READ_AHEAD`](super::READ_AHEAD) the connection is not read until
    /// one runs.
    pub max_concurrent_handlers_per_connection: usize,
    /// Requests that may wait for a thread once every handler thread of
    /// the server is busy (default 1024). Past it a request is answered at
    /// once with the error [`OVERLOADED`](super::OVERLOADED). Only weft-mio
    /// has a thread cap; weft-tokio runs every handler as a task.
    pub max_queued_requests: usize,
    /// How long a graceful shutdown lets the requests already received run
    /// before their handlers are cancelled (default 10 s). See
    /// [`Shutdown`](super::Shutdown).
    pub shutdown_grace: Duration,
    /// Connections open at once (default 10 000; 0 counts as 1). At the
    /// limit the server stops accepting, and new clients wait in the
    /// listen backlog until a connection closes, rather than the server
    /// running out of descriptors or memory.
    pub max_connections: usize,
    /// How long a connection may stay open with nothing in flight (default
    /// `None`: kept). A weft (version 1) client is sent a goaway first and
    /// closes the connection itself; a version-0 client's is closed. The
    /// weft client dials again after its backoff, so this trades a
    /// reconnect per interval for not holding idle sockets.
    pub idle_timeout: Option<Duration>,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let core = ServerConfig::default();
        ServerOptions {
            inline_handler_duration: Some(Duration::from_micros(20)),
            write_flatten_limit: core.conn.flatten_limit,
            max_message_size: core.conn.max_payload,
            handshake_timeout: core.handshake_timeout,
            body_timeout: core.body_timeout,
            max_queued_output: core.max_queued_output,
            max_concurrent_handlers_per_connection: DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONNECTION,
            max_queued_requests: DEFAULT_MAX_QUEUED_REQUESTS,
            shutdown_grace: super::DEFAULT_SHUTDOWN_GRACE,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            idle_timeout: core.idle_timeout,
        }
    }
}

impl ServerOptions {
    /// One connection's settings, for
    /// [`ServerConn::new`](weft_proto::ServerConn::new), its request table
    /// keyed by `hash_seed` (draw one per connection:
    /// [`random_seed`](crate::random_seed)).
    pub fn server_config(&self, hash_seed: u64) -> ServerConfig {
        ServerConfig {
            conn: ConnConfig {
                max_payload: self.max_message_size,
                flatten_limit: self.write_flatten_limit,
                ..ConnConfig::default()
            },
            handshake_timeout: self.handshake_timeout,
            body_timeout: self.body_timeout,
            max_queued_output: self.max_queued_output,
            idle_timeout: self.idle_timeout,
            hash_seed,
        }
    }

    /// Whether a server with `open` connections may accept another
    /// ([`max_connections`](Self::max_connections), at least 1).
    pub fn accepts_more(&self, open: usize) -> bool {
        open < self.max_connections.max(1)
    }

    /// [`max_concurrent_handlers_per_connection`](Self::max_concurrent_handlers_per_connection),
    /// at least 1.
    pub fn handlers_per_connection(&self) -> usize {
        self.max_concurrent_handlers_per_connection.max(1)
    }
}
