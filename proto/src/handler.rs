//! What a handler returns, and how the core turns it into a response.

use crate::RemoteError;
use bytes::Bytes;

/// What a handler returns on failure: an error for the caller.
///
/// Any `std::error::Error` converts into it (so `?` works in handlers),
/// keeping its `source()` chain for the caller to see.
///
/// ```
/// use weft_proto::{HandlerError, HandlerResult};
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

    /// Whether the handler gave up because its request was cancelled.
    pub fn is_cancelled(&self) -> bool {
        matches!(self.0, Failure::Cancelled)
    }

    /// The error the caller gets, unless the handler was cancelled.
    pub fn remote(&self) -> Option<&RemoteError> {
        match &self.0 {
            Failure::Remote(e) => Some(e),
            Failure::Cancelled => None,
        }
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

/// What a panic said: its `&str` or `String` payload (what `panic!`
/// makes), `Box<dyn Any>` otherwise. For a panic in application code the
/// protocol catches (a balancer) or a driver does (a handler).
pub fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    }
}
