//! A call as its handler sees it.

use super::PeerAddr;
use super::cancel::CancelToken;
use bytes::Bytes;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_proto::{CancelReason, Metadata, TraceContext};

/// A call, as its handler sees it.
///
/// The same type for async and blocking handlers: an async handler awaits
/// [`cancelled`](Self::cancelled), a blocking one calls
/// [`wait_cancelled`](Self::wait_cancelled) or checks
/// [`is_cancelled`](Self::is_cancelled) between steps.
///
/// A blocking handler (weft-mio) checks between steps; an async one
/// (weft-tokio) races its work against the cancellation, which
/// `component::until_cancelled` does:
///
/// ```
/// use bytes::Bytes;
/// use weft_driver::server::{HandlerError, HandlerResult, Request};
///
/// fn batch(req: Request) -> HandlerResult {
///     for chunk in req.args.chunks(4096) {
///         if req.is_cancelled() {
///             return Err(HandlerError::cancelled()); // the caller gets Go's context error
///         }
///         let _ = chunk; // ... work on it
///     }
///     Ok(Bytes::new())
/// }
///
/// async fn query(req: Request) -> HandlerResult {
///     let work = async { Bytes::from_static(b"results") };
///     // The work's future is dropped if the caller cancels or its
///     // deadline passes first.
///     weft_driver::component::until_cancelled(&req, work).await
/// }
/// # let _ = (batch, query);
/// ```
#[derive(Debug)]
pub struct Request {
    /// The arguments: a view of the connection's read buffer.
    pub args: Bytes,
    /// `component.method`.
    pub method: Arc<str>,
    /// When the caller gives up, if it set a deadline.
    pub deadline: Option<Instant>,
    /// Metadata from the caller.
    pub metadata: Option<Metadata>,
    /// The caller's span.
    pub trace: Option<TraceContext>,
    pub(crate) cancel: Arc<CancelToken>,
    pub(crate) peer: Option<Arc<PeerAddr>>,
}

impl Request {
    /// The address of the client that sent the request, if the driver
    /// knows it (not for a stream handed to `serve_on`).
    pub fn peer_addr(&self) -> Option<&PeerAddr> {
        self.peer.as_deref()
    }

    /// Whether the request was cancelled (by the caller, its deadline, or a
    /// broken connection).
    pub fn is_cancelled(&self) -> bool {
        self.cancel.reason().is_some()
    }

    /// Why the request was cancelled, if it was.
    pub fn cancel_reason(&self) -> Option<CancelReason> {
        self.cancel.reason()
    }

    /// Completes when the request is cancelled, with the reason. Works on
    /// any executor: it waits through the task's `Waker`.
    pub async fn cancelled(&self) -> CancelReason {
        self.cancel.cancelled().await
    }

    /// The caller's span as an OpenTelemetry parent: weft's `weft.handle`
    /// span (DEBUG) continues the caller's trace by itself, and a handler
    /// whose subscriber filters it out makes its own spans continue it
    /// with `span.set_parent(req.otel_context())`. Empty when the request
    /// carried no trace context.
    #[cfg(feature = "opentelemetry")]
    pub fn otel_context(&self) -> opentelemetry::Context {
        crate::otel::remote_context(self.trace.as_ref())
    }

    /// The same as [`cancelled`](Self::cancelled), as a future that owns
    /// what it needs: for code that hands the request itself on (to a
    /// `tower::Service`, say) and must still see it cancelled.
    pub fn cancellation(&self) -> impl Future<Output = CancelReason> + Send + use<> {
        let token = self.cancel.clone();
        async move { token.cancelled().await }
    }

    /// Blocks the thread until the request is cancelled or `timeout`
    /// passes; the reason if it was cancelled. For blocking handlers; an
    /// async handler awaits [`cancelled`](Self::cancelled) instead.
    pub fn wait_cancelled(&self, timeout: Duration) -> Option<CancelReason> {
        self.cancel.wait(timeout)
    }
}
