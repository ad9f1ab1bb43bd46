//! weft-mio: weft's client and server on a mio event loop, with a blocking
//! API for callers and synchronous handlers.
//!
//! Like weft-tokio, it is a thin driver: [`weft_proto`] decides everything
//! that goes on the wire, which replica a call uses, and when anything times
//! out. It speaks the same protocol, so either driver's client talks to
//! either driver's server.
//!
//! ```
//! use bytes::Bytes;
//! use weft_mio::{Client, ClientOptions, ConstantResolver, HandlerMap, Request, Server, ServerOptions};
//! use weft_proto::{CallOptions, MethodKey};
//!
//! let mut handlers = HandlerMap::new();
//! handlers.set("weft.Test", "Echo", |req: Request| Ok(req.args));
//! let server = Server::bind(&"tcp://127.0.0.1:0".parse()?, handlers, ServerOptions::default())?;
//!
//! let client = Client::connect(ConstantResolver::new([server.local_endpoint().clone()]), ClientOptions::default())?;
//! let out = client.call(MethodKey::new("weft.Test", "Echo"), Bytes::from_static(b"hi"), CallOptions::default())?;
//! assert_eq!(&out[..], b"hi");
//! client.close();
//! server.shutdown();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
mod resolver;
mod server;
mod stream;
#[cfg(feature = "tls")]
pub mod tls;

pub use client::{CancelHandle, Client, ClientOptions, PendingCall};
#[cfg(feature = "dns")]
pub use resolver::DnsResolver;
pub use resolver::{
    ConstantResolver, DynamicResolver, Endpoint, MioEndpoints, ResolveError, Resolved, Resolver,
    SharedEndpoint, UnixDirResolver,
};
pub use server::{
    HandlerError, HandlerMap, HandlerResult, PeerAddr, Request, Server, ServerOptions, Shutdown,
};
pub use stream::Stream;
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
    MethodKey, NetEndpoint, ParseNetEndpoint, PeerError, RemoteError, RoundRobin, ShardHash,
    TraceContext,
};
