//! Model-based property test of the split pool core as the threaded drivers
//! run it: one [`Router`] and one [`Link`] per open connection, each behind
//! its own lock, so that
//!
//! - router commands reach their link late and in any order (a `Cancel` or
//!   `Expire` may overtake its `Start`), and a command for a connection whose
//!   `Action::Close` the driver has carried out is dropped;
//! - a link's events reach the router in order but late: after the router
//!   emitted more commands, closed the connection, or time moved on;
//! - a command may be applied with the clock its thread read before taking
//!   the router's lock (older than the link's own clock).
//!
//! The world: server cores ([`ServerConn`]) joined to the links by in-memory
//! byte pipes moved in random chunks; dials that succeed, fail, hang (until
//! the connect timeout) or complete after the router gave up on them; a
//! watched resolver whose endpoint set changes, answers late or fails;
//! servers that echo the arguments, answer with an error or a garbled error,
//! or hold the request; servers that die and transports that break; calls
//! with deadlines, `retry` or `wait_for_ready`, cancelled; a virtual clock.
//!
//! Checked after every step: the router's invariants and call count; every
//! call ends exactly once with a result it can have (`Ok` is the echo of its
//! own arguments and comes before its deadline, `Cancelled` only and always
//! after a successful `cancel`, a retried call never ends with a
//! communication error while the router is open); a link only reports calls
//! started on it, once each; commands only go to opened connections, each
//! connection is closed at most once and never handed out after. A `Start`
//! applied after its call's `Expire` ends the call at once. After a flush
//! (every command and event delivered, in random order): no call the
//! application saw end still runs on an open link, and the router counts on
//! each replica exactly the calls its link runs.
//!
//! Then either `close` at once, with calls pending and commands and events
//! in transit, or first liveness: every server healthy, one endpoint, a
//! prompt driver; every call ends and the replica set settles to that one
//! idle replica within bounded rounds and virtual time. After `close` every
//! call has ended and every opened link was told to close.
//!
//! One known defect is let through, by name (see `cancel_overtaking_start`):
//! a `Cancel` that overtakes its `Start` leaves the call running on the link.

use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::{Duration, Instant};
use weft_proto::{
    Action, Command, ConnEvent, ConnId, EndpointsVersion, Link, PoolConfig, PoolEvent,
    ReplicaState, Resolution, ResolverKind, Router,
};
use weft_proto::{
    CallError, CallOptions, ConnConfig, LeastPending, MethodKey, PoolCallId, RemoteError,
    RoundRobin, ServerConn, ServerEvent,
};

mod checks;
mod steps;
mod world;

const SERVERS: [&str; 4] = ["s0", "s1", "s2", "s3"];
/// The one endpoint left in the liveness phase.
const HEALTHY: &str = "s0";

fn method() -> MethodKey {
    MethodKey::new("weft.Test", "Echo")
}

/// What a server does with a request; the last byte of the arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Behavior {
    /// Answers with the arguments.
    Echo,
    /// Answers with a remote error.
    Error,
    /// Holds the request until told to answer (or cancelled, or closed).
    Silent,
    /// Answers with an error payload that does not decode: a communication
    /// error on a healthy connection, which a `retry` call retries.
    Garble,
}

impl Behavior {
    fn from_index(i: u8) -> Self {
        match i % 4 {
            0 => Behavior::Echo,
            1 => Behavior::Error,
            2 => Behavior::Silent,
            _ => Behavior::Garble,
        }
    }

    fn tag(self) -> u8 {
        match self {
            Behavior::Echo => b'e',
            Behavior::Error => b'x',
            Behavior::Silent => b's',
            Behavior::Garble => b'g',
        }
    }

    fn from_args(args: &[u8]) -> Self {
        match args.last() {
            Some(b'x') => Behavior::Error,
            Some(b's') => Behavior::Silent,
            Some(b'g') => Behavior::Garble,
            _ => Behavior::Echo,
        }
    }
}

const REMOTE_ERROR: &str = "boom";

/// Whether a link ends a call whose `Cancel` overtook its `Start` (see
/// `cancel_overtaking_start`). It does not: the Router's contract is that
/// commands for one link are applied in the order emitted, which
/// `weft-driver` keeps with one queue per link. This model reorders them
/// anyway, to show every other command order is safe, and lets exactly
/// these calls run on.
const CANCEL_OVERTAKING_START_FIXED: bool = false;

#[derive(Debug)]
struct CallInfo {
    args: Bytes,
    behavior: Behavior,
    deadline: Option<Instant>,
    retry: bool,
    /// `Router::cancel` returned true for it.
    cancelled: bool,
    result: Option<Result<Bytes, CallError>>,
}

#[derive(Debug, Default)]
struct Server {
    /// Refuses dials.
    dead: bool,
    /// Answers every request (the liveness phase): holds none, garbles
    /// none; a request for an error still gets its error.
    healthy: bool,
}

/// An open transport: the driver's link, the server's core, the pipes.
struct Conn {
    addr: String,
    link: Link,
    server: ServerConn,
    to_server: VecDeque<u8>,
    to_client: VecDeque<u8>,
    broken: bool,
    /// Link events not yet handed to the router, in order.
    events: VecDeque<ConnEvent>,
    /// Router ids started on this link and not reported ended by it.
    on_link: BTreeSet<PoolCallId>,
    /// Requests the server holds unanswered: request id, arguments.
    held: Vec<(u64, Bytes)>,
    connected_reported: bool,
    failed_reported: bool,
    /// Calls whose `Cancel` or `Expire` reached this link before their
    /// `Start` did, with which command it was.
    overtaken: BTreeMap<PoolCallId, &'static str>,
    /// Bytes the client's socket still takes; `None`: all it is given. A
    /// server that stops reading, so the link's backlog bound and the
    /// router's congestion handling come into play.
    room: Option<usize>,
}

/// A command on its way from the router to a link.
#[derive(Debug)]
struct InTransit {
    conn: ConnId,
    command: Command,
    /// The router's clock when it was emitted.
    emitted: Instant,
}

struct World {
    base: Instant,
    now: Instant,
    router: Router,
    commands: Vec<InTransit>,
    /// `Action::Close`s the driver has not carried out yet.
    closes: Vec<ConnId>,
    /// Dials in progress.
    dials: Vec<(ConnId, String)>,
    resolve_asked: Option<Option<EndpointsVersion>>,
    endpoints: Vec<String>,
    version: u64,
    servers: BTreeMap<String, Server>,
    conns: BTreeMap<ConnId, Conn>,
    calls: BTreeMap<PoolCallId, CallInfo>,
    next_args: u64,
    /// Every connection the router asked to dial, with its address.
    dialed: BTreeMap<ConnId, String>,
    /// Connections `handle_dial_ok` returned a link for.
    opened: BTreeSet<ConnId>,
    /// Opened and not closed by the router (no `Action::Close` yet).
    router_open: BTreeSet<ConnId>,
    /// Connections the router emitted `Action::Close` for.
    told_close: BTreeSet<ConnId>,
    scratch: Vec<u8>,
}

/// An error response whose payload does not decode.
fn garbled_error(id: u64) -> Vec<u8> {
    let payload = [0xee_u8];
    let mut frame = Vec::with_capacity(16 + payload.len());
    frame.extend_from_slice(&id.to_le_bytes());
    frame.extend_from_slice(&(3u64 | ((payload.len() as u64) << 8)).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

fn mask_endpoints(mask: u8) -> Vec<String> {
    SERVERS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, s)| s.to_string())
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Call {
        deadline_us: Option<u32>,
        retry: bool,
        wait_for_ready: bool,
        behavior: u8,
    },
    Cancel(usize),
    Advance(u32),
    Command {
        pick: usize,
        stale: bool,
    },
    Events {
        pick: usize,
        n: u8,
    },
    Bytes {
        pick: usize,
        to_server: bool,
        n: u16,
    },
    Dial {
        pick: usize,
        ok: bool,
    },
    Close(usize),
    Resolver {
        fail: bool,
    },
    SetEndpoints(u8),
    Break(usize),
    Answer(usize),
    Dead {
        server: usize,
        dead: bool,
    },
    Flush(u64),
    /// One round of a prompt driver: everything in transit delivered.
    Prompt,
    /// A connection's socket takes only `n` more bytes, or everything.
    Room {
        pick: usize,
        n: Option<u16>,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (prop::option::of(1u32..100_000), any::<bool>(), any::<bool>(), 0u8..4)
            .prop_map(|(deadline_us, retry, wait_for_ready, behavior)| Op::Call {
                deadline_us,
                retry,
                wait_for_ready,
                behavior,
            }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => prop_oneof![9 => 0u32..20_000, 1 => 0u32..6_000_000].prop_map(Op::Advance),
        6 => (any::<usize>(), any::<bool>()).prop_map(|(pick, stale)| Op::Command { pick, stale }),
        4 => (any::<usize>(), 1u8..4).prop_map(|(pick, n)| Op::Events { pick, n }),
        6 => (any::<usize>(), any::<bool>(), 1u16..200)
            .prop_map(|(pick, to_server, n)| Op::Bytes { pick, to_server, n }),
        2 => (any::<usize>(), prop::bool::weighted(0.8)).prop_map(|(pick, ok)| Op::Dial { pick, ok }),
        1 => any::<usize>().prop_map(Op::Close),
        1 => prop::bool::weighted(0.2).prop_map(|fail| Op::Resolver { fail }),
        1 => (0u8..16).prop_map(Op::SetEndpoints),
        1 => any::<usize>().prop_map(Op::Break),
        1 => any::<usize>().prop_map(Op::Answer),
        1 => (0usize..SERVERS.len(), prop::bool::weighted(0.3))
            .prop_map(|(server, dead)| Op::Dead { server, dead }),
        1 => any::<u64>().prop_map(Op::Flush),
        1 => Just(Op::Prompt),
        4 => (any::<usize>(), prop::option::weighted(0.7, 0u16..300))
            .prop_map(|(pick, n)| Op::Room { pick, n }),
    ]
}

/// Runs a schedule, then either closes at once (calls pending, commands and
/// events in transit) or after the liveness phase.
fn run(seed: u64, least_pending: bool, initial: u8, ops: &[Op], close_early: bool) {
    let mut w = World::new(seed, least_pending, initial);
    w.check();
    for op in ops {
        match *op {
            Op::Call {
                deadline_us,
                retry,
                wait_for_ready,
                behavior,
            } => w.start_call(
                deadline_us,
                retry,
                wait_for_ready,
                Behavior::from_index(behavior),
            ),
            Op::Cancel(pick) => w.cancel(pick),
            Op::Advance(us) => w.advance(Duration::from_micros(us.into())),
            Op::Command { pick, stale } => w.deliver_command(pick, stale),
            Op::Events { pick, n } => w.deliver_events(pick, n.into()),
            Op::Bytes { pick, to_server, n } => w.move_bytes(pick, to_server, n.into()),
            Op::Dial { pick, ok } => w.complete_dial(pick, ok),
            Op::Close(pick) => w.carry_close(pick),
            Op::Resolver { fail } => w.answer_resolver(fail),
            Op::SetEndpoints(mask) => w.set_endpoints(mask_endpoints(mask)),
            Op::Break(pick) => {
                let ids = w.conn_ids(|c| !c.broken);
                if !ids.is_empty() {
                    w.break_conn(ids[pick % ids.len()]);
                }
            }
            Op::Answer(pick) => w.server_answers(pick),
            Op::Dead { server, dead } => w.set_dead(SERVERS[server], dead),
            Op::Room { pick, n } => w.set_room(pick, n.map(usize::from)),
            Op::Prompt => {
                w.prompt_round();
            }
            Op::Flush(seed) => {
                w.flush(seed);
                w.check();
                w.check_flushed();
            }
        }
        w.check();
    }
    if !close_early {
        w.flush(0);
        w.check_flushed();
        w.settle_healthy();
        w.check_flushed();
    }
    w.close_and_check();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn router_and_links_keep_their_promises(
        seed: u64,
        least_pending: bool,
        initial in 0u8..16,
        ops in prop::collection::vec(op(), 1..200),
        close_early in prop::bool::weighted(0.25),
    ) {
        run(seed, least_pending, initial, &ops, close_early);
    }
}

// ---- regressions, driven by hand ----

/// One replica, "a", ready on one connection; its link and the server's
/// core, driven by hand.
struct One {
    now: Instant,
    router: Router,
    conn: ConnId,
    link: Link,
    server: ServerConn,
}

impl One {
    fn new() -> One {
        let now = Instant::now();
        let initial = Resolution {
            addrs: vec!["a".into()],
            version: Some(EndpointsVersion(1)),
        };
        let mut router = Router::new(
            now,
            PoolConfig::default(),
            Box::new(RoundRobin::new()),
            ResolverKind::Watched,
            initial,
        )
        .expect("a versioned resolver");
        let mut dialed = None;
        while let Some(action) = router.poll_action() {
            if let Action::Dial { conn, .. } = action {
                dialed = Some(conn);
            }
        }
        let conn = dialed.expect("a dial");
        let link = router.handle_dial_ok(now, conn).expect("a link");
        let server = ServerConn::new(now, ConnConfig::default());
        let mut one = One {
            now,
            router,
            conn,
            link,
            server,
        };
        one.write_to_server();
        one.write_to_client();
        assert_eq!(one.router.replica_state("a"), ReplicaState::Idle);
        one
    }

    /// The next command, which must be for the one connection.
    fn command(&mut self) -> Command {
        let (conn, command) = self.router.poll_command().expect("a command");
        assert_eq!(conn, self.conn);
        command
    }

    /// Writes what the link queued to the server; returns what the server
    /// made of it.
    fn write_to_server(&mut self) -> Vec<ServerEvent> {
        let mut buf = Vec::new();
        self.link.drain_transmit(&mut buf);
        self.server.handle_input(self.now, &buf);
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    /// Writes what the server queued to the link and hands the link's
    /// events to the router.
    fn write_to_client(&mut self) {
        let mut buf = Vec::new();
        self.server.drain_transmit(&mut buf);
        self.link.handle_input(self.now, &buf);
        while let Some(e) = self.link.poll_event() {
            self.router.handle_conn_event(self.now, self.conn, e);
        }
    }

    fn replicas(&self) -> Vec<(String, ReplicaState, usize)> {
        self.router
            .replicas()
            .map(|(a, s, n)| (a.to_string(), s, n))
            .collect()
    }
}

/// An `Expire` applied before its call's `Start`, the `Start` with the
/// older clock of the thread that emitted it (the router clamps time, so
/// may a driver's threads). The link used to ignore the `Expire` without
/// looking at the clock, then sent the request after the deadline and kept
/// the call in flight until some later input; the router counted it on
/// the replica all that time (for ever, if the server never answers and
/// nothing else arrives).
#[test]
fn expire_overtaking_start_ends_the_call_at_once() {
    let mut w = One::new();
    let t0 = w.now;
    let deadline = t0 + Duration::from_millis(1);
    let opts = CallOptions {
        deadline: Some(deadline),
        ..CallOptions::default()
    };
    let id = w
        .router
        .start_call(t0, method(), Bytes::from_static(b"late"), opts);
    let start = w.command();
    w.router.handle_timeout(deadline);
    assert_eq!(
        w.router.poll_event(),
        Some(PoolEvent::Done {
            id,
            result: Err(CallError::DeadlineExceeded)
        })
    );
    let expire = w.command();
    assert_eq!(expire, Command::Expire { call: id });
    w.link.apply(deadline, expire);
    w.link.apply(t0, start);
    assert!(
        w.link.transmit().is_empty(),
        "the request went out after its deadline"
    );
    assert_eq!(
        w.link.poll_event(),
        Some(ConnEvent::Done {
            call: id,
            result: Err(CallError::DeadlineExceeded)
        })
    );
    w.now = deadline;
    w.router.handle_conn_event(
        deadline,
        w.conn,
        ConnEvent::Done {
            call: id,
            result: Err(CallError::DeadlineExceeded),
        },
    );
    assert_eq!(w.replicas(), [("a".into(), ReplicaState::Idle, 0)]);
    w.router.assert_invariants();
}

/// A `Cancel` applied before its call's `Start` (the caller cancels on its
/// thread while the thread that placed the call has not applied the `Start`
/// yet). The link ignores the `Cancel`, so the `Start` then sends the
/// request of a call the application already saw cancelled, and no cancel
/// frame ever follows: the handler runs, and the link keeps the call until
/// the server answers. The router counts it on the replica until then; if
/// the server never answers, for ever: a replica the resolver drops drains
/// and never closes its connection.
#[test]
fn cancel_overtaking_start() {
    let mut w = One::new();
    let now = w.now;
    let args = Bytes::from_static(b"cancelled");
    let id = w
        .router
        .start_call(now, method(), args.clone(), CallOptions::default());
    let start = w.command();
    assert!(w.router.cancel(now, id));
    assert_eq!(
        w.router.poll_event(),
        Some(PoolEvent::Done {
            id,
            result: Err(CallError::Cancelled)
        })
    );
    let cancel = w.command();
    assert_eq!(cancel, Command::Cancel { call: id });
    w.link.apply(now, cancel);
    w.link.apply(now, start);
    let at_server = w.write_to_server();
    w.write_to_client();
    // The resolver drops "a": with no call in flight it should close.
    let empty = Resolution {
        addrs: Vec::new(),
        version: Some(EndpointsVersion(2)),
    };
    w.router.handle_resolved(now, empty);
    let closes: Vec<Action> = std::iter::from_fn(|| w.router.poll_action())
        .filter(|a| matches!(a, Action::Close { .. }))
        .collect();
    w.router.assert_invariants();
    if CANCEL_OVERTAKING_START_FIXED {
        assert_eq!(at_server, [], "the request of a cancelled call went out");
        assert_eq!(w.link.conn().in_flight(), 0);
        assert_eq!(w.replicas(), []);
        assert_eq!(closes, [Action::Close { conn: w.conn }]);
    } else {
        // Today's behaviour, pinned so that the fix is noticed: flip
        // `CANCEL_OVERTAKING_START_FIXED` with it.
        assert!(
            matches!(&at_server[..], [ServerEvent::Request(r)] if r.args == args),
            "{at_server:?}"
        );
        assert_eq!(w.link.conn().in_flight(), 1);
        assert_eq!(w.replicas(), [("a".into(), ReplicaState::Draining, 1)]);
        assert_eq!(closes, []);
    }
}
