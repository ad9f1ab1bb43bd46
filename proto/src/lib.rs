//! weft-proto: Service Weaver's call protocol as a sans-IO core.
//!
//! Everything that decides what goes on the wire lives here, as plain data
//! transformations with no sockets, threads, clocks or randomness of their
//! own. Drivers (`weft-tokio`, `weft-mio`) move bytes and time in and out.
//!
//! The wire codec: frames ([`FrameHeader`] and the incremental
//! [`FrameDecoder`]), the version handshake ([`Version`]), request headers
//! ([`RequestHeader`]), error responses ([`RemoteError`]), frames by type
//! ([`Message`]) and the outgoing queue, ready for vectored writes
//! ([`Transmit`]).
//!
//! The connection state machines: [`client::ClientConn`] and
//! [`server::ServerConn`], one per transport, driven by bytes, commands and
//! the time the driver passes in.
//!
//! ```
//! use bytes::Bytes;
//! use weft_proto::{Message, MethodKey, RequestHeader};
//! use weft_proto::{FrameDecoder, DEFAULT_MAX_PAYLOAD};
//! use weft_proto::{Transmit, DEFAULT_FLATTEN_LIMIT};
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

// The derive macros name this crate by its path, also from inside it.
extern crate self as weft_proto;

mod backoff;
mod balance;
mod call;
mod client;
pub mod codec;
mod endpoint;
mod error;
mod error_payload;
mod frame;
mod goaway;
mod handler;
mod handshake;
mod header;
mod idmap;
mod large_frames;
mod message;
mod metadata;
mod method;
mod pool;
mod rng;
mod server;
mod timer;
mod trace;
mod transmit;

/// Fuzz target bodies: `fuzz/` calls them, and `cargo test` replays the
/// checked-in corpus through them. Not part of the API.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;

// The wire: frames, messages, the outgoing queue.
pub use error::{DecodeError, PeerError};
pub use error_payload::{
    ErrorEntry, ErrorPayloadError, GO_CANCELED_FMT, GO_DEADLINE_FMT, RemoteError,
};
pub use frame::{
    DEFAULT_MAX_PAYLOAD, Frame, FrameDecoder, FrameHeader, HEADER_LEN, MAX_ENCODABLE_PAYLOAD,
    MessageType, READ_BUFFER_UNIT,
};
pub use goaway::{GoAway, MAX_GOAWAY_REASON};
pub use handshake::Version;
pub use header::{HeaderFields, MAX_METADATA_ENTRIES, RequestHeader, decode_request};
pub use message::Message;
pub use metadata::Metadata;
pub use method::MethodKey;
pub use trace::TraceContext;
pub use transmit::{DEFAULT_FLATTEN_LIMIT, Transmit};

// One connection, either side.
pub use call::{CallError, CallOptions};
pub use client::{CallId, ClientConn, ClientEvent, ConnConfig, DEFAULT_MAX_REQUEST_BACKLOG};
pub use error::ConnError;
pub use handler::{HandlerError, HandlerResult, panic_text};
pub use server::{
    CancelReason, DEFAULT_BODY_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, DEFAULT_MAX_QUEUED_OUTPUT,
    IDLE_REASON, LINGER, Request, SHUTDOWN_REASON, ServerConfig, ServerConn, ServerEvent,
};

// The client over many replicas.
pub use backoff::Backoff;
pub use balance::{
    Balancer, BalancerFn, LeastPending, ReadyReplica, ReplicaId, RoundRobin, ShardHash,
};
pub use endpoint::{NetEndpoint, ParseNetEndpoint, tcp, unix};
pub use pool::{
    Action, Command, ConnEvent, ConnId, ConnectError, DEFAULT_CONNECT_TIMEOUT, EndpointsVersion,
    Link, Pool, PoolCallId, PoolConfig, PoolEvent, Readiness, ReplicaState, Resolution,
    ResolverKind, Router, write_batch_at,
};
pub use rng::Rng;

// Maps keyed by ids.
pub use idmap::{IdHasher, IdMap, SeededIdHasher, SeededIdMap, SeededIds};
