//! Several simulated servers behind one `Pool`: the world of Service
//! Weaver's reconnecting-connection tests, with a virtual clock.

use super::Rng;
use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};
use std::time::{Duration, Instant};
use weft_proto::{
    Action, ConnId, EndpointsVersion, Pool, PoolConfig, PoolEvent, Resolution, ResolverKind,
};
use weft_proto::{
    Balancer, CallError, CallOptions, ConnConfig, MethodKey, PoolCallId, ServerConfig, ServerConn,
    ServerEvent,
};

/// How a simulated server behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// Answers every call with its own address after `delay`.
    Live { delay: Duration },
    /// Refuses connections.
    Dead,
    /// Accepts connections and never says a word.
    Hang,
}

#[derive(Debug, Clone)]
pub struct Server {
    pub kind: Kind,
    /// Each connection breaks after this many bytes from the client.
    pub fail_after: Option<usize>,
    /// Each connection closes right after the server's version reply has
    /// reached the client.
    pub close_after_handshake: bool,
    pub served: usize,
    pub accepted: usize,
    /// Shutting down gracefully: refuses new connections, and each of its
    /// connections closes once its core is finished.
    pub stopping: bool,
    /// Stopped reading: its connections' sockets take only this many more
    /// bytes (all together), so the client's requests stay queued on its
    /// side. `None` reads everything.
    pub room: Option<usize>,
}

struct SimConn {
    addr: String,
    server: ServerConn,
    to_server: VecDeque<(Instant, Vec<u8>)>,
    to_client: VecDeque<(Instant, Vec<u8>)>,
    received: usize,
    /// Its server is shutting down: closed once its core is finished.
    stopping: bool,
}

pub struct Cluster {
    pub now: Instant,
    pub rng: Rng,
    pub pool: Pool,
    pub servers: BTreeMap<String, Server>,
    conns: BTreeMap<ConnId, SimConn>,
    dials: Vec<(Instant, ConnId, String)>,
    responses: BinaryHeap<Reverse<(Instant, ConnId, u64)>>,
    pub link_delay: Duration,
    // The resolver.
    pub endpoints: Vec<String>,
    pub version: u64,
    pub resolve_asked: Option<Option<EndpointsVersion>>,
    pub resolver_failures: usize,
    pub resolves: usize,
    // What happened.
    pub events: Vec<PoolEvent>,
    pub dialed: Vec<(Instant, String)>,
    pub closed: Vec<ConnId>,
    /// The arguments of every call.
    pub args: Bytes,
    /// Connections with bytes a server's socket had no room for.
    stalled: BTreeSet<ConnId>,
    /// Every server's settings, for the connections it accepts from now.
    pub server_config: ServerConfig,
}

pub const ECHO: fn() -> MethodKey = || MethodKey::new("weft.Test", "Who");

impl Cluster {
    pub fn new(
        seed: u64,
        servers: &[(&str, Kind)],
        endpoints: &[&str],
        constant: bool,
        balancer: Box<dyn Balancer>,
    ) -> Result<Self, CallError> {
        Self::with_config(
            seed,
            servers,
            endpoints,
            constant,
            balancer,
            ConnConfig::default(),
        )
    }

    /// [`new`](Self::new) with the client's connection settings.
    pub fn with_config(
        seed: u64,
        servers: &[(&str, Kind)],
        endpoints: &[&str],
        constant: bool,
        balancer: Box<dyn Balancer>,
        conn: ConnConfig,
    ) -> Result<Self, CallError> {
        let config = PoolConfig {
            seed,
            conn,
            ..PoolConfig::default()
        };
        Self::with_pool_config(servers, endpoints, constant, balancer, config)
    }

    /// [`new`](Self::new) with the whole pool configuration (its seed
    /// seeds the simulation too).
    pub fn with_pool_config(
        servers: &[(&str, Kind)],
        endpoints: &[&str],
        constant: bool,
        balancer: Box<dyn Balancer>,
        config: PoolConfig,
    ) -> Result<Self, CallError> {
        let now = Instant::now();
        let seed = config.seed;
        let endpoints: Vec<String> = endpoints.iter().map(|s| s.to_string()).collect();
        let initial = Resolution {
            addrs: endpoints.clone(),
            version: Some(EndpointsVersion(1)),
        };
        let kind = if constant {
            ResolverKind::Constant
        } else {
            ResolverKind::Watched
        };
        let pool = Pool::connect(now, config, balancer, kind, initial)?;
        Ok(Cluster {
            now,
            rng: Rng::new(seed),
            pool,
            servers: servers
                .iter()
                .map(|(a, k)| {
                    (
                        a.to_string(),
                        Server {
                            kind: *k,
                            fail_after: None,
                            close_after_handshake: false,
                            served: 0,
                            accepted: 0,
                            stopping: false,
                            room: None,
                        },
                    )
                })
                .collect(),
            conns: BTreeMap::new(),
            dials: Vec::new(),
            responses: BinaryHeap::new(),
            link_delay: Duration::from_micros(50),
            endpoints,
            version: 1,
            resolve_asked: None,
            resolver_failures: 0,
            resolves: 0,
            events: Vec::new(),
            dialed: Vec::new(),
            closed: Vec::new(),
            args: Bytes::from_static(b"?"),
            stalled: BTreeSet::new(),
            server_config: ServerConfig::default(),
        })
    }

    /// Makes `addr`'s server stop or resume reading its connections.
    pub fn set_deaf(&mut self, addr: &str, deaf: bool) {
        self.servers.get_mut(addr).unwrap().room = deaf.then_some(0);
    }

    /// Makes `addr`'s server read `bytes` more, then stop again.
    pub fn set_room(&mut self, addr: &str, bytes: usize) {
        self.servers.get_mut(addr).unwrap().room = Some(bytes);
    }

    /// Bytes queued on the client's side of `conn`.
    pub fn queued(&self, conn: ConnId) -> usize {
        self.pool.transmit(conn).map_or(0, |t| t.len())
    }

    /// Changes the resolver's endpoint set (a new version).
    pub fn set_endpoints(&mut self, addrs: &[&str]) {
        self.endpoints = addrs.iter().map(|s| s.to_string()).collect();
        self.version += 1;
    }

    /// Runs until the pool has taken in the resolver's current endpoints.
    pub fn sync_endpoints(&mut self) {
        self.drive_until(|c| c.resolve_asked == Some(Some(EndpointsVersion(c.version))));
    }

    pub fn call(&mut self, opts: &CallOptions) -> PoolCallId {
        let now = self.now;
        let args = self.args.clone();
        self.pool.start_call(now, ECHO(), args, opts.clone())
    }

    pub fn result(&self, id: PoolCallId) -> Option<&Result<Bytes, CallError>> {
        let mut found = self.events.iter().filter_map(|e| match e {
            PoolEvent::Done { id: i, result } if *i == id => Some(result),
            _ => None,
        });
        let first = found.next();
        assert!(found.next().is_none(), "{id:?} ended twice");
        first
    }

    /// Which server answered call `id`.
    pub fn served_by(&self, id: PoolCallId) -> String {
        match self.result(id) {
            Some(Ok(b)) => String::from_utf8(b.to_vec()).unwrap(),
            other => panic!("{id:?}: {other:?}"),
        }
    }

    pub fn live_conns(&self, addr: &str) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.addr == addr)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Breaks `conn` as if the network failed.
    pub fn break_conn(&mut self, conn: ConnId) {
        if let Some(mut c) = self.conns.remove(&conn) {
            c.server.handle_transport_closed(self.now, "network broke");
            let now = self.now;
            self.pool
                .handle_transport_closed(now, conn, "network broke");
        }
    }

    /// Starts a graceful shutdown of `addr`'s server: it accepts nothing
    /// more, and each of its connections drains within `grace`.
    pub fn shutdown_server(&mut self, addr: &str, grace: Duration) {
        self.servers.get_mut(addr).unwrap().stopping = true;
        let deadline = self.now + grace;
        for c in self.conns.values_mut().filter(|c| c.addr == addr) {
            c.stopping = true;
            c.server.shutdown(self.now, deadline);
        }
    }

    /// Whether `addr`'s server shut down and every connection it had is
    /// closed.
    pub fn server_stopped(&self, addr: &str) -> bool {
        self.servers[addr].stopping && self.live_conns(addr).is_empty()
    }

    /// A new server on the same address, once the old one stopped.
    pub fn restart_server(&mut self, addr: &str) {
        assert!(self.server_stopped(addr), "{addr} is still running");
        self.servers.get_mut(addr).unwrap().stopping = false;
    }

    /// Lets `addr` accept new connections again while its old ones still
    /// drain (a new server process beside the old one).
    pub fn restart_server_early(&mut self, addr: &str) {
        self.servers.get_mut(addr).unwrap().stopping = false;
    }

    /// Carries out every action, transmit and event the pool has queued.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            while let Some(action) = self.pool.poll_action() {
                progressed = true;
                match action {
                    Action::Dial { conn, addr } => {
                        self.dialed.push((self.now, addr.to_string()));
                        let at = self.now + self.link_delay;
                        self.dials.push((at, conn, addr.to_string()));
                    }
                    Action::Close { conn } => {
                        self.closed.push(conn);
                        if let Some(mut c) = self.conns.remove(&conn) {
                            // Requests that arrived just before count as
                            // served: their handlers would have started.
                            while let Some(e) = c.server.poll_event() {
                                if matches!(e, ServerEvent::Request(_)) {
                                    self.servers.get_mut(&c.addr).unwrap().served += 1;
                                }
                            }
                            c.server.handle_transport_closed(self.now, "client closed");
                        }
                        self.dials.retain(|(_, id, _)| *id != conn);
                    }
                    Action::Resolve { version } => self.resolve_asked = Some(version),
                    other => panic!("an action the simulation does not know: {other:?}"),
                }
            }
            // A deaf server's socket takes what room it has; the rest goes
            // once it reads again.
            let resumed: Vec<ConnId> = self
                .stalled
                .iter()
                .copied()
                .filter(|id| {
                    self.conns
                        .get(id)
                        .is_none_or(|c| self.servers[&c.addr].room != Some(0))
                })
                .collect();
            for id in resumed {
                progressed = true;
                self.stalled.remove(&id);
                self.send_to_server(id);
            }
            while let Some(conn) = self.pool.poll_transmit() {
                progressed = true;
                self.send_to_server(conn);
            }
            while let Some(e) = self.pool.poll_event() {
                progressed = true;
                self.events.push(e);
            }
            for (id, c) in self.conns.iter_mut() {
                let mut buf = Vec::new();
                c.server.drain_transmit(&mut buf);
                if !buf.is_empty() {
                    progressed = true;
                    let at = (self.now + self.link_delay)
                        .max(c.to_client.back().map_or(self.now, |b| b.0));
                    c.to_client.push_back((at, buf));
                }
                while let Some(e) = c.server.poll_event() {
                    progressed = true;
                    let server = self.servers.get_mut(&c.addr).unwrap();
                    match (e, server.kind) {
                        (ServerEvent::Request(req), Kind::Live { delay }) => {
                            server.served += 1;
                            self.responses
                                .push(Reverse((self.now + delay, *id, req.id)));
                        }
                        (ServerEvent::Cancel { id: rid, .. }, _) => {
                            c.server.respond_cancelled(self.now, rid)
                        }
                        _ => {}
                    }
                }
            }
            // The resolver answers when it has something newer.
            if let Some(v) = self.resolve_asked {
                if self.resolver_failures > 0 {
                    self.resolver_failures -= 1;
                    self.resolve_asked = None;
                    self.resolves += 1;
                    let now = self.now;
                    self.pool.handle_resolve_failed(now, "resolver down");
                    progressed = true;
                } else if v != Some(EndpointsVersion(self.version)) {
                    self.resolve_asked = None;
                    self.resolves += 1;
                    let res = Resolution {
                        addrs: self.endpoints.clone(),
                        version: Some(EndpointsVersion(self.version)),
                    };
                    let now = self.now;
                    self.pool.handle_resolved(now, res);
                    progressed = true;
                }
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    /// Moves what `conn`'s client queued onto the link, as far as its
    /// server's socket has room.
    fn send_to_server(&mut self, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        let mut buf = Vec::new();
        match self.servers[&c.addr].room {
            None => self.pool.drain_transmit(conn, &mut buf),
            Some(room) => {
                let mut left = room;
                while left > 0 {
                    let Some(chunk) = self.pool.transmit(conn).map(|t| t.first_chunk()) else {
                        break;
                    };
                    let n = chunk.len().min(left);
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    left -= n;
                    self.pool.advance_transmit(self.now, conn, n);
                }
                let addr = c.addr.clone();
                self.servers.get_mut(&addr).unwrap().room = Some(left);
                if self.pool.transmit(conn).is_some_and(|t| !t.is_empty()) {
                    self.stalled.insert(conn);
                }
            }
        }
        if let Some(c) = self.conns.get_mut(&conn)
            && !buf.is_empty()
        {
            let at = (self.now + self.link_delay).max(c.to_server.back().map_or(self.now, |b| b.0));
            c.to_server.push_back((at, buf));
        }
    }

    pub fn next_time(&self) -> Option<Instant> {
        let conns = self.conns.values().flat_map(|c| {
            [
                c.to_server.front().map(|b| b.0),
                c.to_client.front().map(|b| b.0),
                c.server.poll_timeout(),
            ]
        });
        [
            self.pool.poll_timeout(),
            self.dials.iter().map(|d| d.0).min(),
            self.responses.peek().map(|r| r.0.0),
        ]
        .into_iter()
        .chain(conns)
        .flatten()
        .min()
    }

    pub fn step(&mut self) -> bool {
        let drained = self.drain();
        let Some(t) = self.next_time() else {
            return drained;
        };
        self.now = self.now.max(t);
        let now = self.now;
        // Dials that complete now.
        let (due, later): (Vec<_>, Vec<_>) = self.dials.drain(..).partition(|d| d.0 <= now);
        self.dials = later;
        for (_, conn, addr) in due {
            let server = self.servers.get_mut(&addr);
            match server {
                Some(s) if s.kind != Kind::Dead && !s.stopping => {
                    s.accepted += 1;
                    self.conns.insert(
                        conn,
                        SimConn {
                            addr,
                            server: ServerConn::new(now, self.server_config),
                            to_server: VecDeque::new(),
                            to_client: VecDeque::new(),
                            received: 0,
                            stopping: false,
                        },
                    );
                    self.pool.handle_dial_ok(now, conn);
                }
                _ => self
                    .pool
                    .handle_dial_failed(now, conn, "connection refused"),
            }
        }
        // Bytes that arrive now.
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            let hang = self.servers[&c.addr].kind == Kind::Hang;
            let fail_after = self.servers[&c.addr].fail_after;
            while c.to_server.front().is_some_and(|b| b.0 <= now) {
                let (_, b) = c.to_server.pop_front().unwrap();
                c.received += b.len();
                if !hang {
                    c.server.handle_input(now, &b);
                }
            }
            if fail_after.is_some_and(|n| c.received >= n) {
                self.break_conn(id);
                continue;
            }
            let mut delivered = false;
            while c.to_client.front().is_some_and(|b| b.0 <= now) {
                let (_, b) = c.to_client.pop_front().unwrap();
                self.pool.handle_input(now, id, &b);
                delivered = true;
            }
            if delivered && self.servers[&c.addr].close_after_handshake {
                self.break_conn(id);
                continue;
            }
            if let Some(c) = self.conns.get_mut(&id)
                && c.server.poll_timeout().is_some_and(|t| t <= now)
            {
                c.server.handle_timeout(now);
            }
            // A stopping server closes a connection its core is done with,
            // after the client has had every byte it sent: it shuts its
            // writes, the client sees the end and closes, and the server
            // reads that end (all at once here).
            if let Some(c) = self.conns.get_mut(&id)
                && c.stopping
                && (c.server.is_finished() || c.server.wants_close_write())
                && c.to_client.is_empty()
            {
                c.server.handle_write_closed(now);
                c.server.handle_transport_closed(now, "client closed");
                assert!(c.server.is_finished());
                self.conns.remove(&id);
                self.pool.handle_transport_closed(now, id, "server closed");
            }
        }
        while self.responses.peek().is_some_and(|r| r.0.0 <= now) {
            let Reverse((_, conn, rid)) = self.responses.pop().unwrap();
            if let Some(c) = self.conns.get_mut(&conn) {
                c.server.respond(now, rid, Ok(Bytes::from(c.addr.clone())));
            }
        }
        if self.pool.poll_timeout().is_some_and(|t| t <= now) {
            self.pool.handle_timeout(now);
        }
        self.drain();
        self.pool.assert_invariants();
        true
    }

    pub fn drive_until(&mut self, mut done: impl FnMut(&Cluster) -> bool) {
        for _ in 0..5_000_000 {
            if done(self) {
                return;
            }
            assert!(self.step(), "world went quiet before the condition held");
        }
        panic!("condition never held");
    }

    /// Steps until `t`, handling everything due on the way.
    pub fn run_until(&mut self, t: Instant) {
        // Drain first: queued output (a resolver answer, say) happens now,
        // before the clock jumps.
        loop {
            let drained = self.drain();
            if self.next_time().is_some_and(|n| n <= t) {
                self.step();
            } else if !drained {
                break;
            }
        }
        self.now = self.now.max(t);
        let now = self.now;
        self.pool.handle_timeout(now);
        self.drain();
    }

    pub fn run_for(&mut self, d: Duration) {
        let t = self.now + d;
        self.run_until(t);
    }

    /// Makes one call and runs until it ends.
    pub fn call_and_wait(&mut self, opts: &CallOptions) -> (PoolCallId, Result<Bytes, CallError>) {
        let id = self.call(opts);
        self.drive_until(|c| c.result(id).is_some());
        (id, self.result(id).unwrap().clone())
    }
}
