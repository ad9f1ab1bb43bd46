//! weft-tokio: weft's async client and server on Tokio.
//!
//! A thin driver around [`weft_proto`]: every protocol decision - framing,
//! handshakes, deadlines, which replica a call uses, when to redial - is the
//! core's; this crate moves bytes and time between it and Tokio sockets.
//!
//! ```
//! use bytes::Bytes;
//! use weft_proto::{CallOptions, MethodKey};
//! use weft_tokio::{ClientOptions, ConstantResolver, HandlerMap, Listener, Request};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A server on a free port...
//! let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
//! let endpoint = listener.local_endpoint()?;
//! let mut handlers = HandlerMap::new();
//! handlers.set("weft.Test", "Echo", |req: Request| async move { Ok(req.args) });
//! tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
//!
//! // ... and a client calling it.
//! let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default()).await?;
//! let key = MethodKey::new("weft.Test", "Echo");
//! let out = conn.call(key, Bytes::from_static(b"hello"), CallOptions::default()).await?;
//! assert_eq!(&out[..], b"hello");
//! conn.close();
//! # Ok(())
//! # }
//! ```
//!
//! Typed components (Service Weaver's generated stubs, in Rust; see the
//! [`component`](mod@component) module and the README):
//!
//! ```
//! use weft_tokio::codec::ErrorList;
//!
//! #[weft_tokio::component(name = "github.com/acme/hello/Greeter")]
//! trait Greeter {
//!     async fn greet(&self, name: String) -> Result<String, ErrorList>;
//! }
//!
//! struct English;
//! impl Greeter for English {
//!     async fn greet(&self, name: String) -> Result<String, ErrorList> {
//!         Ok(format!("hello, {name}"))
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut handlers = weft_tokio::HandlerMap::new();
//! GreeterServer::register(&mut handlers, English);
//! let listener = weft_tokio::Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
//! let endpoint = listener.local_endpoint()?;
//! tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
//!
//! let conn = weft_tokio::connect(weft_tokio::ConstantResolver::new([endpoint]), Default::default()).await?;
//! let greeter = GreeterClient::new(conn);
//! assert_eq!(greeter.greet("ann".into()).await?, "hello, ann");
//! # Ok(())
//! # }
//! ```

mod client;
mod endpoint;
mod io;
mod resolver;
mod server;
#[cfg(feature = "tls")]
pub mod tls;
#[cfg(feature = "tower")]
pub mod tower;

pub use client::{ClientOptions, Connection, connect};
pub use endpoint::{
    AsyncStream, BoxFuture, BoxStream, Endpoint, NetEndpoint, ParseNetEndpoint, tcp, unix,
};
#[cfg(feature = "dns")]
pub use resolver::DnsResolver;
#[cfg(unix)]
pub use resolver::UnixDirResolver;
pub use resolver::{
    ConstantResolver, DynamicResolver, ResolveError, Resolved, Resolver, SharedEndpoint,
    TokioEndpoints,
};
pub use server::{
    HandlerError, HandlerMap, HandlerResult, Listener, PeerAddr, Request, ServerOptions, Shutdown,
    serve, serve_on, serve_until, serve_with_shutdown,
};
#[cfg(feature = "dns")]
pub use weft_driver::dns;
pub use weft_proto as proto;
pub use weft_proto::codec;
// Typed components: the runtime module and, in the macro namespace, the
// attribute of the same name.
pub use weft_driver::component;
pub use weft_driver::component::ComponentError;
pub use weft_macros::{Decode, Encode, component};
pub use weft_proto::Backoff;
pub use weft_proto::EndpointsVersion;
pub use weft_proto::ReadyReplica;
pub use weft_proto::{
    Balancer, BalancerFn, CallError, CallOptions, CancelReason, ConnError, LeastPending, Metadata,
    MethodKey, PeerError, RemoteError, RoundRobin, ShardHash, TraceContext,
};
