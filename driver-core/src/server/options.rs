//! The server options both drivers take.

use std::time::Duration;
use weft_proto::ConnConfig;

/// Default [`ServerOptions::max_concurrent_handlers_per_connection`].
pub const DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONNECTION: usize = 64;

/// Default [`ServerOptions::max_queued_requests`].
pub const DEFAULT_MAX_QUEUED_REQUESTS: usize = 1024;

/// Server settings, the same for every driver.
///
/// The first three are the connection limits of
/// [`weft_proto::ServerOptions`] (whose defaults these take); the rest say
/// how much handler work a driver takes on at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// How long a handler runs on the connection's reader before it moves
    /// off, so one slow handler never stalls the other calls (default
    /// 20 µs, as Go). `None` always moves it off.
    pub inline_handler_duration: Option<Duration>,
    /// Frames up to this size are copied into one write (default 4 KiB).
    pub write_flatten_limit: usize,
    /// Largest request accepted (default 100 MiB).
    pub max_message_size: u64,
    /// Handlers of one connection that may run at once (default 64; 0
    /// counts as 1). Requests past it wait, and the connection is not read
    /// again until one finishes, so a single client cannot take every
    /// thread or task the server has.
    pub max_concurrent_handlers_per_connection: usize,
    /// Requests that may wait for a thread once every handler thread of
    /// the server is busy (default 1024). Past it a request is answered at
    /// once with the error [`OVERLOADED`](super::OVERLOADED). Only weft-mio
    /// has a thread cap; weft-tokio runs every handler as a task.
    pub max_queued_requests: usize,
}

impl Default for ServerOptions {
    fn default() -> Self {
        let proto = weft_proto::ServerOptions::default();
        ServerOptions {
            inline_handler_duration: proto.inline_handler_duration,
            write_flatten_limit: proto.write_flatten_limit,
            max_message_size: proto.max_message_size,
            max_concurrent_handlers_per_connection: DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONNECTION,
            max_queued_requests: DEFAULT_MAX_QUEUED_REQUESTS,
        }
    }
}

impl ServerOptions {
    /// The per-connection limits these options set, for
    /// [`ServerConn::new`](weft_proto::ServerConn::new).
    pub fn conn_config(&self) -> ConnConfig {
        weft_proto::ServerOptions {
            inline_handler_duration: self.inline_handler_duration,
            write_flatten_limit: self.write_flatten_limit,
            max_message_size: self.max_message_size,
        }
        .conn_config()
    }

    /// [`max_concurrent_handlers_per_connection`](Self::max_concurrent_handlers_per_connection),
    /// at least 1.
    pub fn handlers_per_connection(&self) -> usize {
        self.max_concurrent_handlers_per_connection.max(1)
    }
}
