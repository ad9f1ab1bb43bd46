//! What both drivers' servers share: handler results and server options.

use crate::RemoteError;
use crate::client::ConnConfig;
use crate::server::ServerConfig;
use bytes::Bytes;
use std::time::Duration;

/// What a handler returns on failure: an error for the caller.
///
/// Any `std::error::Error` converts into it (so `?` works in handlers),
/// keeping its `source()` chain for the caller to see.
///
/// ```
/// use weft_proto::handler::{HandlerError, HandlerResult};
/// fn parse(args: &[u8]) -> HandlerResult {
///     let s = std::str::from_utf8(args)?; // Utf8Error converts
///     if s.is_empty() {
///         return Err(HandlerError::new("empty"));
///     }
///     Ok(bytes::Bytes::copy_from_slice(s.as_bytes()))
/// }
/// assert!(parse(b"").is_err());
/// ```
#[derive(Debug)]
pub struct HandlerError(pub(crate) Failure);

#[derive(Debug)]
pub(crate) enum Failure {
    Remote(RemoteError),
    Cancelled,
}

impl HandlerError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        HandlerError(Failure::Remote(RemoteError::new(message)))
    }

    /// The handler stopped because its request was cancelled: the caller
    /// gets Go's `context canceled` or `context deadline exceeded`,
    /// whichever ended the request (see [`ServerConn::finish`](crate::ServerConn::finish)).
    pub fn cancelled() -> Self {
        HandlerError(Failure::Cancelled)
    }
}

impl From<RemoteError> for HandlerError {
    fn from(e: RemoteError) -> Self {
        HandlerError(Failure::Remote(e))
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for HandlerError {
    fn from(e: E) -> Self {
        HandlerError(Failure::Remote(RemoteError::from_error(&e)))
    }
}

/// What a handler returns.
pub type HandlerResult = Result<Bytes, HandlerError>;

/// Server settings, the same for every driver.
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
}

impl Default for ServerOptions {
    fn default() -> Self {
        let conn = ConnConfig::default();
        let server = ServerConfig::default();
        ServerOptions {
            inline_handler_duration: Some(Duration::from_micros(20)),
            write_flatten_limit: conn.flatten_limit,
            max_message_size: conn.max_payload,
            handshake_timeout: server.handshake_timeout,
            body_timeout: server.body_timeout,
            max_queued_output: server.max_queued_output,
        }
    }
}

impl ServerOptions {
    /// The per-connection limits these options set.
    pub fn conn_config(&self) -> ConnConfig {
        ConnConfig {
            max_payload: self.max_message_size,
            flatten_limit: self.write_flatten_limit,
        }
    }

    /// A connection's settings, its request table keyed by `hash_seed`
    /// (draw one per connection from OS randomness).
    pub fn server_config(&self, hash_seed: u64) -> ServerConfig {
        ServerConfig {
            conn: self.conn_config(),
            handshake_timeout: self.handshake_timeout,
            body_timeout: self.body_timeout,
            max_queued_output: self.max_queued_output,
            hash_seed,
        }
    }
}
