//! The client's view of a service: a set of replicas behind one call API.
//!
//! This is Service Weaver's reconnecting connection as a sans-IO core, split
//! the way quinn-proto splits an endpoint from its connections:
//!
//! - [`Router`] decides membership, dials and redials, which replica each
//!   call goes to, retries, every call deadline, and following the
//!   resolver. It owns no connection state.
//! - [`Link`] is one connection: a [`ClientConn`](crate::ClientConn) plus
//!   the map between the router's call ids and the connection's request
//!   ids. A driver owns each `Link` next to its transport and locks it on
//!   its own, so connections never wait for each other.
//! - They talk in values: the router sends [`Command`]s to a link, a link
//!   reports [`ConnEvent`]s back. [`Pool`] joins the two in one value, for
//!   simulations and for drivers that want one lock.
//!
//! Each replica (one per endpoint address) moves through
//!
//! ```text
//! missing -> disconnected -> checking -> idle <-> active -> draining -> missing
//! ```
//!
//! - *disconnected*: no transport; a dial is in progress or a redial is due
//!   after backoff;
//! - *checking*: transport up, version handshake in progress;
//! - *idle* / *active*: ready, without / with calls in flight; only these
//!   are in the balancer;
//! - *draining*: removed by the resolver while calls were in flight, or its
//!   server said goaway; no new calls, closed when the last one ends. After
//!   a goaway the replica then goes back to *disconnected* and is redialed
//!   after its backoff (the server may be restarting).

mod calls;
mod combined;
mod invariants;
mod link;
mod replicas;
mod resolver;
mod router;

pub use combined::Pool;
pub use link::Link;
pub use router::Router;

use crate::MethodKey;
use crate::backoff::Backoff;
use crate::call::{CallError, CallOptions};
use crate::client::ConnConfig;
use crate::error::ConnError;
use crate::handshake::Version;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// How many requests may queue on a connection before the caller whose
/// request brings the queue to that size writes it at once, given the calls
/// `outstanding` (started and not yet collected by the application; the
/// pool forgets a call as soon as its response is read, too early a
/// signal) and the `connections` open that share them (taken as evenly
/// shared; a balancer that favours one connection only makes its batches
/// fill sooner). Below it, requests wait for the connection's I/O thread or
/// task, which writes all that queued in one go on its next turn. At most 1
/// (fewer than 8 outstanding per connection): every caller writes its own
/// request, because with few calls latency is what matters. Connections
/// still in their handshake or going away count too, which only makes
/// batches smaller for a while. Bytes on the wire are the same
/// either way; only how they are split into writes changes.
///
/// Why a quarter of the calls outstanding: it keeps about four batches
/// moving, so each end works on one while the other works on the next.
/// Writing everything that queued (the previous rule, from 12 outstanding)
/// sent the whole window as one batch, which came back as one: each end
/// idled while the other worked, and at 128 in flight a Tokio client did
/// 0.46 M calls/s where a quarter gives 0.8-0.9 M. A sweep (`weft bench
/// --size 64 --pin split`, a half to a sixteenth, 8 to 128 in flight and
/// 4 KiB at 128) found a quarter best or tied at every point.
///
/// ```
/// use weft_proto::write_batch_at;
///
/// // One call in flight: its caller writes its request at once.
/// assert!(write_batch_at(1, 1) <= 1);
/// // 128 in flight on one connection: 32 requests to a write, four
/// // batches in flight.
/// assert_eq!(write_batch_at(128, 1), 32);
/// // ... and on four connections, four batches on each.
/// assert_eq!(write_batch_at(128, 4), 8);
/// ```
pub fn write_batch_at(outstanding: usize, connections: usize) -> usize {
    outstanding / connections.max(1) / 4
}

/// A transport the pool asked the driver to open; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ConnId(pub u64);

/// A call on the pool; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PoolCallId(pub u64);

/// A version of the resolver's endpoint set. Only equality matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EndpointsVersion(pub u64);

/// Whether the resolver's endpoint set can change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolverKind {
    /// Asked once; an empty set is an error.
    Constant,
    /// Followed: asked again after every answer, each answer versioned.
    Watched,
}

/// What a resolver returned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resolution {
    /// The endpoint addresses.
    pub addrs: Vec<String>,
    /// The version of this set (required for watched resolvers).
    pub version: Option<EndpointsVersion>,
}

/// Why a pool could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// A constant resolver named no endpoint.
    #[error("no endpoints available")]
    NoEndpoints,
    /// A watched resolver's first answer had no version, so later answers
    /// could not be told apart from it.
    #[error("the resolver's first answer has no version")]
    Unversioned,
}

impl From<ConnectError> for CallError {
    fn from(e: ConnectError) -> Self {
        CallError::Unreachable(e.to_string())
    }
}

/// Whether a call started now could be placed: what a pool's readiness
/// (e.g. `tower::Service::poll_ready`) reports. See [`Router::readiness`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Readiness {
    /// Some replica is ready: a call is placed at once.
    Ready,
    /// No replica is ready yet but some may become so (dialing, in its
    /// handshake, or restarting after a goaway): a call waits.
    Connecting,
    /// Every replica that is up is congested: its server is not reading
    /// requests as fast as they are started (see
    /// [`ConnConfig::max_request_backlog`]). A call waits for one to catch
    /// up.
    Congested,
    /// No replica can take a call and none is expected to: a call fails at
    /// once with [`CallError::Unreachable`] carrying this text (unless it
    /// asked to wait for a replica).
    Unreachable(String),
    /// The pool was closed: every call fails.
    Closed,
}

/// Where a replica is in its life (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReplicaState {
    /// Not known to the pool.
    Missing,
    /// No transport: dialing, or waiting to redial.
    Disconnected,
    /// Transport up, handshake in progress.
    Checking,
    /// Ready, no calls in flight.
    Idle,
    /// Ready, calls in flight.
    Active,
    /// Leaving (removed by the resolver, or its server said goaway): calls
    /// in flight finish, no new ones.
    Draining,
}

/// Something the driver must do with a transport or the resolver.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Open a transport to `addr`, then report the outcome for `conn`
    /// (`handle_dial_ok` or `handle_dial_failed`).
    Dial {
        /// Names the transport in every later call.
        conn: ConnId,
        /// Endpoint address.
        addr: Arc<str>,
    },
    /// Close the transport of `conn` (opened, or still being dialed) and
    /// drop its [`Link`]; commands still queued for it are moot.
    Close {
        /// Which transport.
        conn: ConnId,
    },
    /// Ask the resolver for endpoints newer than `version`, then report
    /// `handle_resolved` or `handle_resolve_failed`.
    Resolve {
        /// The version the pool has.
        version: Option<EndpointsVersion>,
    },
}

/// What the router asks of one connection's [`Link`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Command {
    /// Send a call.
    Start {
        /// The router's id for it.
        call: PoolCallId,
        /// The method.
        method: MethodKey,
        /// The encoded arguments.
        args: Bytes,
        /// Deadline, trace context and metadata travel with the request.
        opts: CallOptions,
    },
    /// The caller gave up: end the call and tell the server.
    Cancel {
        /// Which call.
        call: PoolCallId,
    },
    /// The call's deadline passed: end it without a cancel frame, since the
    /// server's own deadline stops the handler.
    Expire {
        /// Which call.
        call: PoolCallId,
    },
    /// Report [`ConnEvent::Congested`] next, even if unchanged: the router
    /// has placed a backlog's worth of requests since the link last told
    /// it, and places no more there until it hears how much went out.
    ReportCongestion,
}

/// What a [`Link`] reports to the router.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnEvent {
    /// The handshake is done: calls can go out.
    Connected {
        /// The negotiated version.
        version: Version,
    },
    /// A call on this connection ended.
    Done {
        /// Which call.
        call: PoolCallId,
        /// The response bytes or why there are none.
        result: Result<Bytes, CallError>,
    },
    /// The server is going away (protocol version 1): no call may be
    /// placed on this connection any more. Calls it did not run follow as
    /// [`ConnEvent::Done`] with [`CallError::Unprocessed`], and the router
    /// places them again.
    GoAway {
        /// The server's reason.
        reason: String,
    },
    /// The connection's queue went over its bound, or back within it
    /// ([`ClientConn::is_congested`](crate::ClientConn::is_congested)):
    /// while congested, the router places no call on the connection.
    Congested {
        /// Whether requests now wait.
        congested: bool,
    },
    /// The connection is finished; nothing more will be written.
    Failed(ConnError),
}

/// What the pool reports to the application.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PoolEvent {
    /// A call ended. Every call started ends exactly once.
    Done {
        /// Which call.
        id: PoolCallId,
        /// The response bytes or why there are none.
        result: Result<Bytes, CallError>,
    },
}

/// Settings of a pool.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolConfig {
    /// Limits of each connection.
    pub conn: ConnConfig,
    /// Backoff for redials, call retries and resolver retries.
    pub backoff: Backoff,
    /// Seed of the pool's RNG (jitter, balancer choices).
    pub seed: u64,
    /// How long a dial plus the version handshake may take before the
    /// attempt counts as failed (default 5 s).
    pub connect_timeout: Duration,
}

/// The default [`PoolConfig::connect_timeout`].
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

impl Default for PoolConfig {
    fn default() -> Self {
        PoolConfig {
            conn: ConnConfig::default(),
            backoff: Backoff::default(),
            seed: 0x5eed,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}
