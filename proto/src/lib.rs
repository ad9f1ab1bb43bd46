//! weft-proto: Service Weaver's call protocol as a sans-IO core.
//!
//! Everything that decides what goes on the wire lives here, as plain data
//! transformations with no sockets, threads, clocks or randomness of their
//! own. Drivers (`weft-tokio`, `weft-mio`) move bytes and time in and out.
//!
//! The wire codec: [`frame`] (headers and the incremental decoder),
//! [`handshake`], [`header`] (request headers), [`error_payload`] (error
//! responses), [`message`] (frames by type) and [`transmit`] (the outgoing
//! queue, ready for vectored writes).
//!
//! The connection state machines: [`client::ClientConn`] and
//! [`server::ServerConn`], one per transport, driven by bytes, commands and
//! the time the driver passes in.
//!
//! ```
//! use bytes::Bytes;
//! use weft_proto::{Message, MethodKey, RequestHeader};
//! use weft_proto::frame::{FrameDecoder, DEFAULT_MAX_PAYLOAD};
//! use weft_proto::transmit::{Transmit, DEFAULT_FLATTEN_LIMIT};
//!
//! // Encode a call to weft.Test.Echo ...
//! let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
//! let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
//! tx.push_request(1, header.fields(), &Bytes::from_static(b"hello"));
//! let mut wire = Vec::new();
//! tx.drain_into(&mut wire);
//!
//! // ... and decode it on the other side, one byte at a time.
//! let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
//! let mut frames = Vec::new();
//! for b in wire {
//!     dec.extend_from_slice(&[b]);
//!     while let Some(f) = dec.decode()? {
//!         frames.push(Message::parse(f)?);
//!     }
//! }
//! assert_eq!(
//!     frames,
//!     [Message::Request { id: 1, header, args: Bytes::from_static(b"hello") }]
//! );
//! # Ok::<(), weft_proto::DecodeError>(())
//! ```
#![forbid(unsafe_code)]

pub mod backoff;
pub mod balance;
pub mod call;
pub mod client;
pub mod endpoint;
pub mod error;
pub mod error_payload;
pub mod frame;
pub mod fuzz;
pub mod handler;
pub mod handshake;
pub mod header;
mod idmap;
pub use idmap::{IdHasher, IdMap, SeededIdHasher, SeededIdMap, SeededIds};
pub mod message;
pub mod metadata;
pub mod method;
pub mod pool;
pub mod rng;
pub mod server;
mod timer;
pub mod trace;
pub mod transmit;

pub use balance::{Balancer, BalancerFn, LeastPending, RoundRobin, ShardHash};
pub use call::{CallError, CallOptions};
pub use client::{CallId, ClientConn, ClientEvent, ConnConfig};
pub use endpoint::{NetEndpoint, ParseNetEndpoint};
pub use error::{ConnError, DecodeError, PeerError};
pub use error_payload::{ErrorPayloadError, RemoteError};
pub use handler::{HandlerError, HandlerResult};
pub use handshake::Version;
pub use header::RequestHeader;
pub use message::Message;
pub use metadata::Metadata;
pub use method::MethodKey;
pub use pool::{
    Action, ConnId, ConnectError, Pool, PoolCallId, PoolConfig, PoolEvent, ReplicaState,
    Resolution, ResolverKind,
};
pub use server::{CancelReason, Request, ServerConfig, ServerConn, ServerEvent};
pub use trace::TraceContext;
