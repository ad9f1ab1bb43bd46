//! The server half of a driver that does not depend on the runtime.
//!
//! [`weft_proto::ServerConn`] decides everything about one connection; what
//! is left for a driver is to move bytes, to run handlers, and to tell each
//! handler when its request is cancelled. The last two are the same for
//! every runtime and live here:
//!
//! - [`Request`]: what a handler gets, with one cancellation API for async
//!   handlers ([`Request::cancelled`], built on `std::task::Waker`) and
//!   blocking ones ([`Request::wait_cancelled`]);
//! - [`HandlerMap`]: handlers by method, generic over the handler type, so
//!   each driver keeps its own handler signature;
//! - [`Dispatcher`]: one connection's requests in flight, turning each
//!   [`ServerEvent`](weft_proto::ServerEvent) into a handler to run or
//!   handling it itself (unknown method, cancel, failure);
//! - [`InlinePolicy`]: when a handler moves off the connection's thread or
//!   task;
//! - [`ServerOptions`]: the options of both drivers' servers;
//! - [`catch_panic`], [`poll_catching`], [`CatchPanic`]: a panicking
//!   handler fails its own call (`handler panicked: ...`) and nothing else;
//! - [`AcceptBackoff`]: how an accept loop waits out a lack of descriptors;
//! - [`Shutdown`]: the trigger of a graceful shutdown (what each connection
//!   then does is `ServerConn::shutdown`'s).
//!
//! A driver then keeps only its event loop, its listeners and its public
//! API. Per connection it calls, in this order:
//!
//! 1. `ServerConn::new(now, opts.server_config(random_seed()))` and [`Dispatcher::new`]
//!    (with [`Dispatcher::with_peer`] when the peer's address is known) on accept;
//! 2. an input: while [`Dispatcher::wants_read`], a read into
//!    `ServerConn::read_buf` whose outcome goes to [`Dispatcher::on_read`];
//!    `ServerConn::handle_timeout` when due; `ServerConn::close`;
//! 3. [`Dispatcher::handle_events`], then [`Dispatcher::next_dispatch`]
//!    until it is empty, running each [`Dispatch`]: inline first if
//!    [`InlinePolicy::starts_inline`], moved off once
//!    [`InlinePolicy::is_due`], a panic caught either way;
//! 4. [`Dispatcher::finish`] with each handler's result, as it comes (then
//!    back to 3: answering may produce events and free a slot);
//! 5. write `ServerConn::transmit`; once [`Dispatcher::is_closed`], close
//!    the transport.

mod accept;
mod cancel;
mod dispatch;
mod handlers;
mod inline;
mod options;
mod panic;
mod peer;
mod request;
mod shutdown;

pub use accept::{ACCEPT_BACKOFF_MAX, ACCEPT_BACKOFF_MIN, AcceptBackoff, AcceptFailure};
pub use dispatch::{Dispatch, Dispatcher, OVERLOADED, READ_AHEAD};
pub use handlers::HandlerMap;
pub use inline::InlinePolicy;
pub use options::{
    DEFAULT_MAX_CONCURRENT_HANDLERS_PER_CONNECTION, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_QUEUED_REQUESTS, ServerOptions,
};
pub use panic::{
    CatchPanic, HANDLER_PANICKED, catch_panic, panic_message, panic_text, panicked, poll_catching,
};
pub use peer::PeerAddr;
pub use request::Request;
pub use shutdown::{Changed, DEFAULT_SHUTDOWN_GRACE, Shutdown, grace_deadline};
pub use weft_proto::{CancelReason, HandlerError, HandlerResult};
