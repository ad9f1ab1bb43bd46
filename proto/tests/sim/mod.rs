//! A deterministic in-memory world for the connection cores, after
//! quinn-proto's test `Pair`: a client core and a server core joined by a
//! link whose seeded RNG splits and delays the bytes, and a virtual clock that
//! jumps straight to the next delivery or timeout.

#![allow(dead_code)]

use bytes::Bytes;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::time::{Duration, Instant};
use weft_proto::{ClientConn, ClientEvent, ConnConfig, RemoteError, ServerConn, ServerEvent};

/// The core's own seeded RNG, with the one helper the harness needs.
#[derive(Debug, Clone)]
pub struct Rng(weft_proto::Rng);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(weft_proto::Rng::new(seed))
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.0.next_u64() % (hi - lo + 1)
    }
}

/// One direction of the link: in-order byte chunks with delivery times.
#[derive(Debug, Default)]
pub struct Link {
    queue: VecDeque<(Instant, Vec<u8>)>,
    pub delivered: usize,
    /// The sender shut its writes: end of stream after the queued bytes.
    pub shut: bool,
    /// The receiver has been told of the end.
    pub ended: bool,
}

impl Link {
    /// Queues `bytes` split into random chunks, each arriving after a random
    /// delay but never before the chunk ahead of it (a byte stream keeps order).
    fn send(&mut self, rng: &mut Rng, now: Instant, mut bytes: &[u8], max_delay_us: u64) {
        while !bytes.is_empty() {
            let n = rng.range(1, bytes.len().min(8192) as u64) as usize;
            let delay = Duration::from_micros(rng.range(1, max_delay_us.max(1)));
            let at = self
                .queue
                .back()
                .map_or(now + delay, |(prev, _)| (*prev).max(now + delay));
            self.queue.push_back((at, bytes[..n].to_vec()));
            bytes = &bytes[n..];
        }
    }

    fn next(&self, now: Instant) -> Option<Instant> {
        match self.queue.front() {
            Some((at, _)) => Some(*at),
            None => self.end_due().then_some(now),
        }
    }

    /// Every byte is delivered and the end of stream is not yet.
    fn end_due(&self) -> bool {
        self.queue.is_empty() && self.shut && !self.ended
    }

    /// Whether every byte sent has been delivered.
    pub fn next_is_none(&self) -> bool {
        self.queue.is_empty()
    }

    fn pop_due(&mut self, now: Instant) -> Option<Vec<u8>> {
        match self.queue.front() {
            Some((at, _)) if *at <= now => self.queue.pop_front().map(|(_, b)| {
                self.delivered += b.len();
                b
            }),
            _ => None,
        }
    }
}

/// How the simulated server application answers requests.
#[derive(Debug, Clone, Copy)]
pub enum ServerApp {
    /// Tests call `server.respond` themselves.
    Manual,
    /// Echo the arguments after a random delay up to `max_delay`; a
    /// cancelled request is answered at once with the cancellation error.
    Echo { max_delay: Duration },
}

pub struct Pair {
    pub now: Instant,
    pub rng: Rng,
    pub client: ClientConn,
    pub server: ServerConn,
    pub c2s: Link,
    pub s2c: Link,
    pub max_delay_us: u64,
    pub app: ServerApp,
    /// Echo responses scheduled by the app, earliest first.
    pub scheduled: BinaryHeap<Reverse<(Instant, u64, Bytes)>>,
    pub client_events: Vec<ClientEvent>,
    pub server_events: Vec<ServerEvent>,
    scratch: Vec<u8>,
}

impl Pair {
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, ConnConfig::default())
    }

    pub fn with_config(seed: u64, config: ConnConfig) -> Self {
        let now = Instant::now();
        Pair {
            now,
            rng: Rng::new(seed),
            client: ClientConn::new(now, config),
            server: ServerConn::new(now, config),
            c2s: Link::default(),
            s2c: Link::default(),
            max_delay_us: 200,
            app: ServerApp::Manual,
            scheduled: BinaryHeap::new(),
            client_events: Vec::new(),
            server_events: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Drains every output of both sides: the drain rule drivers follow.
    pub fn drain(&mut self) -> bool {
        let mut any = false;
        loop {
            let mut progressed = false;
            if !self.client.transmit().is_empty() {
                self.scratch.clear();
                self.client.drain_transmit(&mut self.scratch);
                self.c2s
                    .send(&mut self.rng, self.now, &self.scratch, self.max_delay_us);
                progressed = true;
            }
            if !self.server.transmit().is_empty() {
                self.scratch.clear();
                self.server.drain_transmit(&mut self.scratch);
                self.s2c
                    .send(&mut self.rng, self.now, &self.scratch, self.max_delay_us);
                progressed = true;
            }
            if self.server.wants_close_write() {
                self.server.handle_write_closed(self.now);
                self.s2c.shut = true;
                progressed = true;
            }
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
                progressed = true;
            }
            while let Some(e) = self.server.poll_event() {
                self.on_server_event(&e);
                self.server_events.push(e);
                progressed = true;
            }
            if !progressed {
                return any;
            }
            any = true;
        }
    }

    fn on_server_event(&mut self, e: &ServerEvent) {
        let ServerApp::Echo { max_delay } = self.app else {
            return;
        };
        match e {
            ServerEvent::Request(req) => {
                let delay = self.rng.range(0, max_delay.as_micros() as u64);
                let due = self.now + Duration::from_micros(delay);
                self.scheduled
                    .push(Reverse((due, req.id, req.args.clone())));
            }
            ServerEvent::Cancel { id, .. } => {
                self.scheduled.retain(|Reverse((_, sid, _))| sid != id);
                self.server.respond_cancelled(self.now, *id);
            }
            ServerEvent::Failed(_) => self.scheduled.clear(),
        }
    }

    /// The earliest moment anything happens, if anything will.
    pub fn next_time(&self) -> Option<Instant> {
        [
            self.client.poll_timeout(),
            self.server.poll_timeout(),
            self.c2s.next(self.now),
            self.s2c.next(self.now),
            self.scheduled.peek().map(|Reverse((at, ..))| *at),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Advances to the next event and handles everything due then. Returns
    /// false when the world is quiet.
    pub fn step(&mut self) -> bool {
        let drained = self.drain();
        let Some(t) = self.next_time() else {
            return drained;
        };
        self.now = self.now.max(t);
        let now = self.now;
        if let Some(b) = self.c2s.pop_due(now) {
            self.server.handle_input(now, &b);
        }
        if let Some(b) = self.s2c.pop_due(now) {
            self.client.handle_input(now, &b);
        }
        // A side that reads the end of the stream closes its own end, as
        // drivers do.
        if self.s2c.end_due() {
            self.s2c.ended = true;
            self.client.handle_transport_closed(now, "server closed");
            self.c2s.shut = true;
        }
        if self.c2s.end_due() {
            self.c2s.ended = true;
            self.server.handle_transport_closed(now, "client closed");
        }
        while self
            .scheduled
            .peek()
            .is_some_and(|Reverse((at, ..))| *at <= now)
        {
            let Reverse((_, id, payload)) = self.scheduled.pop().expect("peeked");
            self.server.respond(now, id, Ok(payload));
        }
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeout(now);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeout(now);
        }
        self.drain();
        true
    }

    /// Steps until `done` holds, panicking if the world goes quiet first or
    /// after `limit` steps.
    pub fn drive_until(&mut self, mut done: impl FnMut(&Pair) -> bool) {
        for _ in 0..10_000_000 {
            if done(self) {
                return;
            }
            assert!(self.step(), "world went quiet before the condition held");
        }
        panic!("condition never held");
    }

    /// Steps until nothing is left to happen.
    pub fn settle(&mut self) {
        while self.step() {}
    }

    /// Advances the virtual clock to `t`, handling everything due on the way.
    pub fn advance_to(&mut self, t: Instant) {
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
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        self.drain();
    }

    /// Breaks the link: queued bytes are lost and both sides see the
    /// transport close.
    pub fn break_link(&mut self) {
        self.c2s.queue.clear();
        self.s2c.queue.clear();
        self.client
            .handle_transport_closed(self.now, "link dropped");
        self.server
            .handle_transport_closed(self.now, "link dropped");
        self.drain();
    }

    /// Delivers raw bytes to the client as if the server had sent them.
    pub fn inject_to_client(&mut self, bytes: &[u8]) {
        self.s2c
            .send(&mut self.rng, self.now, bytes, self.max_delay_us);
    }

    /// Delivers raw bytes to the server as if the client had sent them.
    pub fn inject_to_server(&mut self, bytes: &[u8]) {
        self.c2s
            .send(&mut self.rng, self.now, bytes, self.max_delay_us);
    }

    /// Responds to request `id` with an error.
    pub fn respond_error(&mut self, id: u64, msg: &str) {
        self.server
            .respond(self.now, id, Err(RemoteError::new(msg)));
    }

    /// `Done` events for call `id`.
    pub fn done_for(&self, id: weft_proto::CallId) -> Vec<&Result<Bytes, weft_proto::CallError>> {
        self.client_events
            .iter()
            .filter_map(|e| match e {
                ClientEvent::Done { id: i, result } if *i == id => Some(result),
                _ => None,
            })
            .collect()
    }

    pub fn connected(&self) -> bool {
        self.client_events
            .iter()
            .any(|e| matches!(e, ClientEvent::Connected { .. }))
    }
}
pub mod cluster;
