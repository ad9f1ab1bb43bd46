//! Model-based property test of the connection cores: random interleavings
//! of commands, time and partial byte delivery, with the invariants checked
//! after every step.

use bytes::Bytes;
use proptest::prelude::*;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};
use weft_proto::{
    CallError, CallId, CallOptions, ClientConn, ClientEvent, ConnConfig, MethodKey, RemoteError,
    ServerConn, ServerEvent,
};

#[derive(Debug, Clone)]
enum Op {
    Start { deadline_us: Option<u32> },
    Cancel(usize),
    Advance(u32),
    Respond(usize),
    RespondError(usize),
    RespondCancelled(usize),
    DeliverToServer(usize),
    DeliverToClient(usize),
    DropLink,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::option::of(0u32..5_000).prop_map(|deadline_us| Op::Start { deadline_us }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0u32..3_000).prop_map(Op::Advance),
        2 => any::<usize>().prop_map(Op::Respond),
        1 => any::<usize>().prop_map(Op::RespondError),
        1 => any::<usize>().prop_map(Op::RespondCancelled),
        4 => (1usize..200).prop_map(Op::DeliverToServer),
        4 => (1usize..200).prop_map(Op::DeliverToClient),
        1 => Just(Op::DropLink),
    ]
}

struct World {
    now: Instant,
    client: ClientConn,
    server: ServerConn,
    c2s: VecDeque<u8>,
    s2c: VecDeque<u8>,
    started: Vec<CallId>,
    deadlines: HashMap<CallId, Instant>,
    ended: HashMap<CallId, Result<Bytes, CallError>>,
    cancelled: HashSet<CallId>,
    /// Requests the server app has and has not answered yet.
    requests: Vec<u64>,
    server_deadlines: HashMap<u64, Instant>,
    seen_requests: HashSet<u64>,
    link_up: bool,
}

impl World {
    fn new() -> Self {
        let now = Instant::now();
        World {
            now,
            client: ClientConn::new(now, ConnConfig::default()),
            server: ServerConn::new(now, ConnConfig::default()),
            c2s: VecDeque::new(),
            s2c: VecDeque::new(),
            started: Vec::new(),
            deadlines: HashMap::new(),
            ended: HashMap::new(),
            cancelled: HashSet::new(),
            requests: Vec::new(),
            server_deadlines: HashMap::new(),
            seen_requests: HashSet::new(),
            link_up: true,
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::Start { deadline_us } => {
                let opts = CallOptions {
                    deadline: deadline_us.map(|us| now + Duration::from_micros(us.into())),
                    ..Default::default()
                };
                let id = self.client.start_call(
                    now,
                    MethodKey::new("m", "Echo"),
                    Bytes::from_static(b"args"),
                    &opts,
                );
                assert!(
                    self.started.last().is_none_or(|last| id > *last),
                    "ids increase"
                );
                self.started.push(id);
                if let Some(d) = opts.deadline {
                    self.deadlines.insert(id, d);
                }
            }
            Op::Cancel(i) if !self.started.is_empty() => {
                let id = self.started[i % self.started.len()];
                if self.client.cancel(now, id) {
                    assert!(
                        !self.ended.contains_key(&id),
                        "cancelled a call that had ended"
                    );
                    self.cancelled.insert(id);
                }
            }
            Op::Advance(us) => {
                self.now += Duration::from_micros(us.into());
                self.client.handle_timeout(self.now);
                self.server.handle_timeout(self.now);
            }
            Op::Respond(i) | Op::RespondError(i) | Op::RespondCancelled(i)
                if !self.requests.is_empty() =>
            {
                let id = self.requests.swap_remove(i % self.requests.len());
                match op {
                    Op::Respond(_) => self.server.respond(now, id, Ok(Bytes::from_static(b"ok"))),
                    Op::RespondError(_) => {
                        self.server.respond(now, id, Err(RemoteError::new("no")))
                    }
                    _ => self.server.respond_cancelled(now, id),
                }
                self.server_deadlines.remove(&id);
            }
            Op::DeliverToServer(k) if self.link_up => {
                let chunk: Vec<u8> = self.c2s.drain(..k.min(self.c2s.len())).collect();
                self.server.handle_input(now, &chunk);
            }
            Op::DeliverToClient(k) if self.link_up => {
                let chunk: Vec<u8> = self.s2c.drain(..k.min(self.s2c.len())).collect();
                self.client.handle_input(now, &chunk);
            }
            Op::DropLink if self.link_up => {
                self.link_up = false;
                self.c2s.clear();
                self.s2c.clear();
                self.client.handle_transport_closed(now, "dropped");
                self.server.handle_transport_closed(now, "dropped");
            }
            _ => {}
        }
    }

    /// Checks the invariants that hold before outputs are drained, then
    /// drains them as a driver would.
    fn check_and_drain(&mut self) {
        let client_output = !self.client.transmit().is_empty();
        let server_output = !self.server.transmit().is_empty();
        if client_output {
            assert_eq!(
                self.client.poll_timeout(),
                Some(self.now),
                "client output queued"
            );
        }
        if server_output {
            assert_eq!(
                self.server.poll_timeout(),
                Some(self.now),
                "server output queued"
            );
        }
        let mut buf = Vec::new();
        self.client.drain_transmit(&mut buf);
        if self.link_up {
            self.c2s.extend(&buf);
        }
        buf.clear();
        self.server.drain_transmit(&mut buf);
        if self.link_up {
            self.s2c.extend(&buf);
        }

        while let Some(e) = self.client.poll_event() {
            if let ClientEvent::Done { id, result } = e {
                assert!(self.started.contains(&id), "unknown call {id:?}");
                if self.cancelled.contains(&id) {
                    assert_eq!(
                        result,
                        Err(CallError::Cancelled),
                        "a cancelled call reported"
                    );
                }
                assert!(
                    self.ended.insert(id, result).is_none(),
                    "{id:?} ended twice"
                );
            }
        }
        while let Some(e) = self.server.poll_event() {
            match e {
                ServerEvent::Request(r) => {
                    assert!(
                        self.seen_requests.insert(r.id),
                        "request id {} reused",
                        r.id
                    );
                    self.requests.push(r.id);
                    if let Some(d) = r.deadline {
                        self.server_deadlines.insert(r.id, d);
                    }
                }
                ServerEvent::Cancel { id, .. } => {
                    self.server_deadlines.remove(&id);
                }
                ServerEvent::Failed(_) => {
                    self.requests.clear();
                    self.server_deadlines.clear();
                }
            }
        }

        // poll_timeout is never later than the earliest pending deadline.
        let earliest_client = self
            .deadlines
            .iter()
            .filter(|(id, _)| !self.ended.contains_key(id))
            .map(|(_, d)| *d)
            .min();
        if let Some(d) = earliest_client {
            let t = self
                .client
                .poll_timeout()
                .expect("a live deadline needs a timer");
            assert!(t <= d, "client timer {t:?} after deadline {d:?}");
        }
        if let Some(d) = self.server_deadlines.values().min() {
            let t = self
                .server
                .poll_timeout()
                .expect("a live server deadline needs a timer");
            assert!(t <= *d);
        }
        // No deadline that has passed is still pending.
        for (id, d) in &self.deadlines {
            if *d <= self.now {
                assert!(self.ended.contains_key(id), "{id:?} outlived its deadline");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn connection_cores_keep_their_invariants(ops in prop::collection::vec(op(), 1..200)) {
        let mut w = World::new();
        w.check_and_drain();
        for op in &ops {
            w.apply(op);
            w.check_and_drain();
        }
        // However the run went, once the link is gone every call has ended,
        // exactly once.
        w.apply(&Op::DropLink);
        w.check_and_drain();
        for id in &w.started {
            prop_assert!(w.ended.contains_key(id), "{:?} never ended", id);
        }
        prop_assert_eq!(w.ended.len(), w.started.len());
        prop_assert_eq!(w.client.in_flight(), 0);
        prop_assert_eq!(w.server.in_flight(), 0);
    }
}
