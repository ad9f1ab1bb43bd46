//! tower integration (feature `tower`): the client is a
//! [`tower::Service`](tower_service::Service) and a handler can be one, so
//! tower's layers (timeouts, concurrency limits, load shedding, retries)
//! stack on either side as they do for tonic.
//!
//! ```no_run
//! # async fn demo(conn: weft_tokio::Connection) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use bytes::Bytes;
//! use tower::{ServiceBuilder, ServiceExt};
//! use weft_tokio::{MethodKey, tower::CallRequest};
//!
//! // A client that waits at most a second and keeps 64 calls in flight.
//! let client = ServiceBuilder::new()
//!     .timeout(std::time::Duration::from_secs(1))
//!     .concurrency_limit(64)
//!     .service(conn);
//! let req = CallRequest::new(MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"));
//! let out = client.oneshot(req).await?;
//! # Ok(()) }
//! ```

use crate::Request;
use crate::client::{Connection, Tokio};
use crate::server::HandlerMap;
use bytes::Bytes;
use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::task::{Context, Poll};
use tower_service::Service;
use weft_driver::client::Client;
use weft_proto::{CallError, CallOptions, HandlerError, MethodKey, PoolCallId, RemoteError};

/// The error type tower's layers use.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One call as a tower request: the method, its arguments and options.
///
/// ```no_run
/// # async fn demo(conn: weft_tokio::Connection) -> Result<(), weft_tokio::tower::BoxError> {
/// use bytes::Bytes;
/// use std::time::Duration;
/// use tower::{ServiceBuilder, ServiceExt};
/// use weft_tokio::MethodKey;
/// use weft_tokio::tower::CallRequest;
/// // tower's layers over the connection, as over any tower service.
/// let svc = ServiceBuilder::new()
///     .timeout(Duration::from_secs(1))
///     .concurrency_limit(64)
///     .service(conn);
/// let req = CallRequest::new(MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"));
/// let out = svc.oneshot(req).await?;
/// assert_eq!(&out[..], b"hi");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct CallRequest {
    /// The method to call.
    pub method: MethodKey,
    /// The encoded arguments.
    pub args: Bytes,
    /// Deadline, retry, metadata and the rest.
    pub opts: CallOptions,
}

impl CallRequest {
    /// A call of `method` with `args` and default options.
    pub fn new(method: MethodKey, args: Bytes) -> Self {
        CallRequest {
            method,
            args,
            opts: CallOptions::default(),
        }
    }

    /// The same call with `opts`.
    pub fn with_options(mut self, opts: CallOptions) -> Self {
        self.opts = opts;
        self
    }
}

/// The client as a tower service.
///
/// `poll_ready` is pending while every replica is still connecting, and
/// ready once one is ready — or once none can be reached, so that the call
/// fails at once with [`CallError::Unreachable`] naming each endpoint's
/// cause. It fails only after [`Connection::close`]. A call's request is
/// sent by `call` itself; dropping the returned future cancels it.
impl Service<CallRequest> for Connection {
    type Response = Bytes;
    type Error = CallError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), CallError>> {
        self.handle.client.poll_ready(cx)
    }

    fn call(&mut self, req: CallRequest) -> ResponseFuture {
        let id = self
            .handle
            .client
            .start_call(req.method, req.args, req.opts);
        ResponseFuture {
            conn: self.clone(),
            id,
            finished: false,
        }
    }
}

/// A call started through [`Service::call`]; it owns a handle on the client,
/// so it may outlive the service it came from.
#[derive(Debug)]
#[must_use = "dropping the future cancels the call"]
pub struct ResponseFuture {
    conn: Connection,
    id: PoolCallId,
    finished: bool,
}

impl ResponseFuture {
    fn client(&self) -> &Arc<Client<Tokio>> {
        &self.conn.handle.client
    }
}

impl Future for ResponseFuture {
    type Output = Result<Bytes, CallError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let result = self.client().poll_call(self.id, cx);
        if result.is_ready() {
            self.finished = true;
        }
        result
    }
}

impl Drop for ResponseFuture {
    fn drop(&mut self) {
        if !self.finished {
            self.client().abandon(self.id);
        }
    }
}

impl HandlerMap {
    /// Serves `component.method` with a tower service, so that tower's
    /// layers wrap a handler. Each request goes to a clone of `service`
    /// (clones of tower's layers share their state, e.g. a concurrency
    /// limit's permits) once it is ready.
    ///
    /// An error becomes the caller's application error ([`CallError::Remote`])
    /// carrying the error's chain: a tower timeout arrives as
    /// `request timed out`, a load shedder's refusal as `service overloaded`.
    /// A request cancelled (by its caller, its deadline or a lost
    /// connection) while it waits for the service to be ready, or while the
    /// service runs it, is dropped there, so it holds no permit and never
    /// runs late.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use tower::ServiceBuilder;
    /// use weft_tokio::{HandlerMap, Request};
    ///
    /// let echo = tower::service_fn(|req: Request| async move { Ok::<Bytes, std::io::Error>(req.args) });
    /// let mut handlers = HandlerMap::new();
    /// handlers.set_service("weft.Test", "Echo", ServiceBuilder::new().concurrency_limit(8).service(echo));
    /// ```
    pub fn set_service<S>(&mut self, component: &str, method: &str, service: S)
    where
        S: Service<Request, Response = Bytes> + Clone + Send + Sync + 'static,
        S::Error: Into<BoxError>,
        S::Future: Send + 'static,
    {
        self.set(component, method, move |req: Request| {
            let mut service = service.clone();
            let cancelled = req.cancellation();
            async move {
                let run = async {
                    poll_fn(|cx| service.poll_ready(cx))
                        .await
                        .map_err(handler_error)?;
                    service.call(req).await.map_err(handler_error)
                };
                // The server never drops a handler's future: a layer that
                // waits (a concurrency limit) would otherwise keep a
                // cancelled request queued and then run it.
                let (mut run, mut cancelled) = (pin!(run), pin!(cancelled));
                poll_fn(|cx| {
                    if let Poll::Ready(out) = run.as_mut().poll(cx) {
                        return Poll::Ready(out);
                    }
                    cancelled
                        .as_mut()
                        .poll(cx)
                        .map(|_| Err(HandlerError::cancelled()))
                })
                .await
            }
        });
    }
}

fn handler_error(e: impl Into<BoxError>) -> HandlerError {
    RemoteError::from_error(&*e.into()).into()
}
