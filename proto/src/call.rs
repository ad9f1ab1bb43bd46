//! What a caller asks for and what it gets back.

use crate::error::ConnError;
use crate::{ErrorPayloadError, Metadata, RemoteError, TraceContext};
use std::time::Instant;

/// Options for one call.
///
/// ```
/// use std::time::{Duration, Instant};
/// use weft_proto::{CallOptions, Metadata};
/// let opts = CallOptions {
///     deadline: Some(Instant::now() + Duration::from_secs(1)),
///     metadata: Some(Metadata::from_iter([("tenant", "acme")])),
///     retry: true,
///     ..CallOptions::default()
/// };
/// assert_eq!(opts.shard_key, 0);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallOptions {
    /// When the call must have finished. It is sent to the server as the time
    /// left, so both sides give up at about the same moment.
    pub deadline: Option<Instant>,
    /// Metadata for the handler.
    pub metadata: Option<Metadata>,
    /// The caller's span, propagated to the handler.
    pub trace: Option<TraceContext>,
    /// Try again (with backoff) after a communication or unreachable error,
    /// until success, another error, or the deadline. Only for idempotent
    /// methods: a retried call may have run on the server already.
    pub retry: bool,
    /// A routing hint for the balancer; 0 means none.
    pub shard_key: u64,
    /// Wait for a replica to become ready (bounded by the deadline) even
    /// when every replica is failing, as Service Weaver does. By default a
    /// call fails at once with [`CallError::Unreachable`] when no replica is
    /// ready and every one the resolver names failed its last connection
    /// attempt (gRPC's fail-fast). Calls with `retry` always wait.
    pub wait_for_ready: bool,
    /// The method's name, `component.method` (for example
    /// `github.com/acme/shop/Cart.AddItem`), for spans and metric labels
    /// only: it never goes on the wire, where the [`MethodKey`](crate::MethodKey)
    /// names the method. Without it they show the key in hex. A `'static`
    /// string, so that naming a call costs nothing per call: a name made at
    /// run time is leaked once (`Box::leak`), as a program names its
    /// methods once.
    pub method_name: Option<&'static str>,
}

/// Why a call failed.
///
/// Matching on it says who failed and whether trying again is safe:
///
/// ```
/// use weft_proto::CallError;
/// fn retry_is_safe(e: &CallError, idempotent: bool) -> bool {
///     match e {
///         // The handler ran and answered: trying again changes nothing.
///         CallError::Remote(_) => false,
///         // Never reached a replica: nothing ran.
///         e if e.is_unreachable() => true,
///         // Lost in transit: it may have run.
///         e if e.is_communication() => idempotent,
///         _ => false,
///     }
/// }
/// assert!(!retry_is_safe(&CallError::DeadlineExceeded, true));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The handler returned an error; its message is kept.
    #[error("{0}")]
    Remote(RemoteError),
    /// The call's deadline passed before a response arrived.
    #[error("context deadline exceeded")]
    DeadlineExceeded,
    /// The caller cancelled the call.
    #[error("context canceled")]
    Cancelled,
    /// The connection carrying the call failed or was closed.
    #[error("communication error: {0}")]
    Connection(ConnError),
    /// The server's error response could not be decoded (Go's "could not
    /// decode error"); treated as a communication error.
    #[error("communication error: could not decode error: {0}")]
    BadErrorPayload(ErrorPayloadError),
    /// The request is larger than the connection's payload limit; it was
    /// not sent.
    #[error("request of {size} bytes exceeds the limit of {limit} bytes")]
    RequestTooLarge {
        /// The request's payload size (header and arguments).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The response was larger than the client accepts
    /// (`ConnConfig::max_payload`): it was discarded as it arrived, and
    /// the connection's other calls go on.
    #[error("response of {size} bytes exceeds the limit of {limit} bytes")]
    ResponseTooLarge {
        /// The response's size.
        size: u64,
        /// The client's limit.
        limit: u64,
    },
    /// No replica could be reached: the text names each endpoint and its
    /// last connection error.
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The deadline passed while the call waited for a replica, and the
    /// replicas were failing: the text names each endpoint and its last
    /// connection error.
    #[error("context deadline exceeded waiting for a replica: {0}")]
    DeadlineWaitingForReplica(String),
    /// The server is going away (a goaway frame, protocol version 1) and
    /// did not run the call: it is safe to send again, and a pool sends it
    /// to another replica by itself. Only a [`ClientConn`](crate::ClientConn)
    /// used on its own, or a pool that closed meanwhile, reports it. The
    /// text is the server's reason.
    #[error("not processed: the server is going away ({0})")]
    Unprocessed(String),
    /// The connection failed while the request still waited to be queued
    /// for it (behind a server that stopped reading, or before the
    /// handshake): it never went out, so sending it again is safe, and a
    /// pool sends it to another replica by itself.
    #[error("not sent: the connection failed first: {0}")]
    NotSent(ConnError),
    /// The client's [`Balancer`](crate::Balancer) panicked picking a
    /// replica for this call (the text is the panic's message). The call
    /// never went out; the client carries on, and its next calls ask the
    /// balancer again.
    #[error("not sent: the balancer panicked: {0}")]
    BalancerPanicked(String),
}

impl CallError {
    /// A failure of the transport rather than of the handler: the call may
    /// or may not have run. Retrying applies to these.
    pub fn is_communication(&self) -> bool {
        matches!(self, Self::Connection(_) | Self::BadErrorPayload(_))
    }

    /// The server did not run the call (it is going away, or the request
    /// never went out): sending it again is safe.
    pub fn is_unprocessed(&self) -> bool {
        matches!(self, Self::Unprocessed(_) | Self::NotSent(_))
    }

    /// No replica was reachable (including a deadline that passed while
    /// waiting for one that was failing).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            Self::Unreachable(_) | Self::DeadlineWaitingForReplica(_)
        )
    }

    /// The deadline passed, locally or at the server (a remote
    /// `context.DeadlineExceeded` counts, as Go's `errors.Is` would).
    pub fn is_deadline_exceeded(&self) -> bool {
        match self {
            Self::DeadlineExceeded | Self::DeadlineWaitingForReplica(_) => true,
            Self::Remote(e) => e.is_deadline_exceeded(),
            _ => false,
        }
    }

    /// The call was cancelled, locally or at the server.
    pub fn is_cancelled(&self) -> bool {
        match self {
            Self::Cancelled => true,
            Self::Remote(e) => e.is_canceled(),
            _ => false,
        }
    }

    /// A short, stable name for the kind of failure, for metric labels and
    /// logs: `remote`, `deadline_exceeded`, `cancelled`, `communication`,
    /// `too_large`, `unreachable`, `unprocessed` or `balancer`.
    ///
    /// ```
    /// assert_eq!(weft_proto::CallError::DeadlineExceeded.kind(), "deadline_exceeded");
    /// ```
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Remote(_) => "remote",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Cancelled => "cancelled",
            Self::Connection(_) | Self::BadErrorPayload(_) => "communication",
            Self::RequestTooLarge { .. } | Self::ResponseTooLarge { .. } => "too_large",
            Self::Unreachable(_) | Self::DeadlineWaitingForReplica(_) => "unreachable",
            Self::Unprocessed(_) | Self::NotSent(_) => "unprocessed",
            Self::BalancerPanicked(_) => "balancer",
        }
    }

    /// The handler's error, if the call reached one.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            Self::Remote(e) => Some(e),
            _ => None,
        }
    }
}
