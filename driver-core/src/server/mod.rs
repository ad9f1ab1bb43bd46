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
//!   task.
//!
//! A driver then keeps only its event loop, its listeners and its public
//! API. Per connection it calls, in this order:
//!
//! 1. `ServerConn::new(now, opts.server_config(random_seed()))` and [`Dispatcher::new`]
//!    on accept;
//! 2. an input into the `ServerConn` (`handle_read`, `handle_timeout`,
//!    `handle_transport_closed`, `close`);
//! 3. `poll_event` until it is empty, passing each event to
//!    [`Dispatcher::on_event`], and running each [`Dispatch`] it returns:
//!    inline first if [`InlinePolicy::starts_inline`], moved off once
//!    [`InlinePolicy::is_due`];
//! 4. [`Dispatcher::finish`] with each handler's result, as it comes (then
//!    back to 3: answering may produce events);
//! 5. write `ServerConn::transmit`; once [`Dispatcher::is_closed`], close
//!    the transport.

mod cancel;
mod dispatch;
mod handlers;
mod inline;
mod request;

pub use dispatch::{Dispatch, Dispatcher};
pub use handlers::HandlerMap;
pub use inline::InlinePolicy;
pub use request::Request;
pub use weft_proto::{CancelReason, HandlerError, HandlerResult, ServerOptions};
