//! Typed components: what the code `#[component]` generates calls.
//!
//! A component is a trait; the macro writes a client whose methods encode
//! their arguments with [`codec`], call through a [`Stub`], and decode the
//! results and the trailing error list, and a server registration whose
//! handlers do the reverse. The bytes are those of Go Service Weaver's
//! generated stubs, so either side can be Go. The drivers plug in through
//! four small traits: [`Caller`] and [`BlockingCaller`] for clients,
//! [`AsyncHandlers`] and [`BlockingHandlers`] for servers.

pub use weft_proto::codec;

use crate::server::{HandlerError, HandlerResult, Request};
use bytes::Bytes;
use codec::{AppError, CodecError, Decode, Decoder, Encode, Encoder};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_proto::{CallError, CallOptions, Metadata, MethodKey};

/// A connection that calls asynchronously (`weft_tokio::Connection`).
pub trait Caller: Send + Sync {
    /// Calls `method`; dropping the future cancels the call.
    fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, CallError>> + Send;
}

/// A connection that calls and blocks (`weft_mio::Client`).
pub trait BlockingCaller: Send + Sync {
    /// Calls `method` and waits for the result.
    fn call_blocking(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError>;
}

impl<C: Caller> Caller for Arc<C> {
    fn call(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> impl Future<Output = Result<Bytes, CallError>> + Send {
        (**self).call(method, args, opts)
    }
}

impl<C: BlockingCaller> BlockingCaller for Arc<C> {
    fn call_blocking(
        &self,
        method: MethodKey,
        args: Bytes,
        opts: CallOptions,
    ) -> Result<Bytes, CallError> {
        (**self).call_blocking(method, args, opts)
    }
}

/// A handler table that runs async handlers (`weft_tokio::HandlerMap`).
pub trait AsyncHandlers {
    /// Serves `component.method` with `handler`.
    fn add<F, Fut>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HandlerResult> + Send + 'static;

    /// Answers Go's `ready` probe for `component` (an empty response).
    fn serve_ready(&mut self, component: &str) {
        self.add(component, "ready", |_| async { Ok(Bytes::new()) });
    }
}

/// A handler table that runs blocking handlers (`weft_mio::HandlerMap`).
pub trait BlockingHandlers {
    /// Serves `component.method` with `handler`.
    fn add<F>(&mut self, component: &str, method: &str, handler: F)
    where
        F: Fn(Request) -> HandlerResult + Send + Sync + 'static;

    /// Answers Go's `ready` probe for `component` (an empty response).
    fn serve_ready(&mut self, component: &str) {
        self.add(component, "ready", |_| Ok(Bytes::new()));
    }
}

/// Why a typed call failed: the method's own error, or the call itself
/// (Go wraps the latter in `weaver.RemoteCallError`).
///
/// ```
/// use weft_driver::component::ComponentError;
/// use weft_proto::{CallError, codec::ErrorList};
///
/// fn explain(e: &ComponentError<ErrorList>) -> String {
///     match e {
///         // The implementation said no: its message, as it wrote it.
///         ComponentError::App(e) => format!("refused: {e}"),
///         // The call may or may not have run.
///         ComponentError::Call(e) if e.is_communication() => format!("lost: {e}"),
///         ComponentError::Call(CallError::DeadlineExceeded) => "too slow".into(),
///         other => format!("failed: {other}"),
///     }
/// }
/// assert_eq!(explain(&ComponentError::App(ErrorList::new("out of stock"))), "refused: out of stock");
/// ```
#[derive(Debug, thiserror::Error)]
pub enum ComponentError<E> {
    /// The implementation returned an error.
    #[error("{0}")]
    App(E),
    /// The call failed: transport, deadline, cancellation, or an error the
    /// server's handler (not the implementation) returned.
    #[error("remote call: {0}")]
    Call(#[from] CallError),
    /// The results could not be decoded (the peer's signature differs).
    #[error("remote call: decoding the results: {0}")]
    Decode(#[source] CodecError),
}

impl<E> ComponentError<E> {
    /// The application error, if that is what this is.
    pub fn app(&self) -> Option<&E> {
        match self {
            ComponentError::App(e) => Some(e),
            _ => None,
        }
    }
}

/// Options for every call a typed client makes.
///
/// ```
/// use std::time::Duration;
/// use weft_driver::component::StubOptions;
/// let opts = StubOptions {
///     timeout: Some(Duration::from_millis(250)),
///     // In tests: run every retriable call three times to flush out
///     // methods that are not idempotent (Go's injectRetries).
///     inject_retries: 2,
///     ..StubOptions::default()
/// };
/// // CartClient::new(conn).with_options(opts)
/// # let _ = opts;
/// ```
#[derive(Debug, Clone, Default)]
pub struct StubOptions {
    /// Each call's deadline is this long after it starts; none by default,
    /// as Go's stubs take the deadline from the caller's context.
    pub timeout: Option<Duration>,
    /// Go's `injectRetries`: a retriable call is made this many extra
    /// times, one after another, and the last result is returned; flushes
    /// out methods that are not idempotent. Testing only.
    pub inject_retries: u32,
    /// Metadata sent with every call.
    pub metadata: Option<Metadata>,
    /// Wait for a ready replica instead of failing fast.
    pub wait_for_ready: bool,
}

#[derive(Debug)]
struct StubMethod {
    key: MethodKey,
    full_name: &'static str,
    retry: bool,
}

/// Go's `call.NewStub`: a connection and the component's methods.
#[derive(Debug, Clone)]
pub struct Stub<C> {
    conn: C,
    methods: Arc<[StubMethod]>,
    opts: StubOptions,
}

impl<C> Stub<C> {
    /// A stub for `component` whose methods are `(wire name, full name,
    /// retriable)`, in the order the generated code indexes them.
    pub fn new(conn: C, component: &str, methods: &[(&str, &'static str, bool)]) -> Self {
        let methods = methods
            .iter()
            .map(|&(name, full_name, retry)| StubMethod {
                key: MethodKey::new(component, name),
                full_name,
                retry,
            })
            .collect();
        Stub {
            conn,
            methods,
            opts: StubOptions::default(),
        }
    }

    /// Replaces the options.
    pub fn set_options(&mut self, opts: StubOptions) {
        self.opts = opts;
    }

    /// The connection.
    pub fn conn(&self) -> &C {
        &self.conn
    }

    fn prepare(&self, index: usize, shard_key: u64) -> (&StubMethod, CallOptions, u32) {
        let m = &self.methods[index];
        let opts = CallOptions {
            // A timeout too long for the clock to represent is no deadline.
            deadline: self
                .opts
                .timeout
                .and_then(|t| Instant::now().checked_add(t)),
            metadata: self.opts.metadata.clone(),
            retry: m.retry,
            shard_key,
            wait_for_ready: self.opts.wait_for_ready,
            method_name: Some(m.full_name),
            ..CallOptions::default()
        };
        let times = if m.retry {
            1 + self.opts.inject_retries
        } else {
            1
        };
        (m, opts, times)
    }
}

impl<C: Caller> Stub<C> {
    /// Calls method `index` with encoded `args` (Go's `Stub.Run`).
    pub async fn call(
        &self,
        index: usize,
        args: Bytes,
        shard_key: u64,
    ) -> Result<Bytes, CallError> {
        let (m, opts, times) = self.prepare(index, shard_key);
        // Injected runs first, their results dropped as Go drops them; the
        // last run takes the arguments without a copy.
        for _ in 1..times {
            let _ = self.conn.call(m.key, args.clone(), opts.clone()).await;
        }
        self.conn.call(m.key, args, opts).await
    }
}

impl<C: BlockingCaller> Stub<C> {
    /// Calls method `index` with encoded `args` and waits.
    pub fn call_blocking(
        &self,
        index: usize,
        args: Bytes,
        shard_key: u64,
    ) -> Result<Bytes, CallError> {
        let (m, opts, times) = self.prepare(index, shard_key);
        for _ in 1..times {
            let _ = self.conn.call_blocking(m.key, args.clone(), opts.clone());
        }
        self.conn.call_blocking(m.key, args, opts)
    }
}

/// Decodes a response: the results, then the error list (Go's generated
/// client stub). Bytes after the list are ignored, as Go ignores them.
///
/// A failed method's results are its zero values, which not every type
/// decodes (an enum with no variant 0): then, if the response starts with
/// exactly those bytes, the error list after them is what the caller gets,
/// rather than a decode error that hides it.
pub fn decode_results<T: Decode + Encode, E: AppError>(
    bytes: &[u8],
) -> Result<T, ComponentError<E>> {
    let mut dec = Decoder::new(bytes);
    let value = match T::decode(&mut dec) {
        Ok(v) => v,
        Err(e) => return Err(error_after_zero::<T, E>(bytes).unwrap_or(ComponentError::Decode(e))),
    };
    match E::decode_error(&mut dec).map_err(ComponentError::Decode)? {
        None => Ok(value),
        Some(e) => Err(ComponentError::App(e)),
    }
}

/// The application error after `T`'s zero values, if `bytes` start with
/// them and a non-empty error list follows.
fn error_after_zero<T: Encode, E: AppError>(bytes: &[u8]) -> Option<ComponentError<E>> {
    let mut zero = Encoder::new();
    T::encode_zero(&mut zero);
    let rest = bytes.strip_prefix(zero.as_slice())?;
    let app = E::decode_error(&mut Decoder::new(rest)).ok()??;
    Some(ComponentError::App(app))
}

/// What a failed method whose error list is empty sends instead (an empty
/// list would read as success).
pub const EMPTY_ERROR: &str = "error with no entries";

/// Encodes a method's outcome as Go's generated server stub does: the
/// results (Go's zero values when the method failed), then the error list.
pub fn encode_results<T: Encode, E: AppError>(result: &Result<T, E>) -> Bytes {
    let mut enc = Encoder::new();
    match result {
        Ok(v) => {
            v.encode(&mut enc);
            enc.put_u8(0);
        }
        Err(e) => {
            T::encode_zero(&mut enc);
            let mut list = Encoder::new();
            e.encode_error(&mut list);
            if list.as_slice() == [0] {
                // Only the terminator: the caller would read success.
                weft_proto::codec::ErrorList::<weft_proto::codec::NoRegisteredErrors>::new(
                    EMPTY_ERROR,
                )
                .encode_error(&mut enc);
            } else {
                enc.put_raw(list.as_slice());
            }
        }
    }
    enc.finish()
}

/// Decodes one argument; a failure is the handler's error (a type-3
/// response), as in Go.
pub fn decode_arg<T: Decode>(dec: &mut Decoder<'_>, method: &str) -> Result<T, HandlerError> {
    T::decode(dec)
        .map_err(|e| HandlerError::new(format!("decoding the arguments of {method}: {e}")))
}

/// Runs an implementation's future until it completes or the request is
/// cancelled (by the caller, its deadline or a lost connection), whichever
/// is first; on cancellation the future is dropped, as a caller dropping
/// its own future would expect, and the caller gets Go's context error.
pub async fn until_cancelled<F: Future>(req: &Request, fut: F) -> Result<F::Output, HandlerError> {
    let mut fut = std::pin::pin!(fut);
    let mut cancelled = std::pin::pin!(req.cancelled());
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(v) = fut.as_mut().poll(cx) {
            return std::task::Poll::Ready(Ok(v));
        }
        cancelled
            .as_mut()
            .poll(cx)
            .map(|_| Err(HandlerError::cancelled()))
    })
    .await
}

#[doc(hidden)]
pub mod __rt {
    //! Names the generated code uses; not an API.
    pub use super::codec::{Decoder, Encode, Encoder, shard_key};
    pub use super::{
        AsyncHandlers, BlockingCaller, BlockingHandlers, Caller, ComponentError, Stub, StubOptions,
        decode_arg, decode_results, encode_results, until_cancelled,
    };
    pub use crate::server::Request;
    pub use std::future::Future;
    pub use std::sync::Arc;
}
