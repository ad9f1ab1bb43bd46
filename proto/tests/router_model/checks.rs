//! What is checked: invariants after every step, the state after a flush, liveness (every call ends and the replicas settle), and close.

use super::*;

impl World {
    /// Delivers every command and event in transit, commands in an order
    /// drawn from `seed`, until none is left; closes stay pending.
    pub(super) fn flush(&mut self, mut seed: u64) {
        for _ in 0..100_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let r = (seed >> 33) as usize;
            if !self.commands.is_empty() {
                self.deliver_command(r, r & 1 == 1);
            } else if self.conns.values().any(|c| !c.events.is_empty()) {
                self.deliver_events(r, usize::MAX);
            } else {
                return;
            }
        }
        panic!("flush never ended");
    }

    // ---- checks ----

    /// Holds after every step.
    pub(super) fn check(&self) {
        self.router.assert_invariants();
        let pending = self.calls.values().filter(|c| c.result.is_none()).count();
        assert_eq!(self.router.pending_calls(), pending, "pending calls");
    }

    /// Holds once every command and event has been delivered: the links
    /// run exactly the calls the router thinks they run, and none the
    /// application has seen end.
    pub(super) fn check_flushed(&self) {
        for (id, c) in &self.conns {
            if !self.router_open.contains(id) {
                continue;
            }
            for call in &c.on_link {
                let info = &self.calls[call];
                if !CANCEL_OVERTAKING_START_FIXED
                    && info.result.is_some()
                    && c.overtaken.get(call) == Some(&"Cancel")
                {
                    continue;
                }
                assert!(
                    info.result.is_none(),
                    "{call:?} ended for the application ({:?}) but still runs on {id:?} \
                     (link in flight: {}; overtaken by {:?})",
                    info.result,
                    c.link.conn().in_flight(),
                    c.overtaken.get(call)
                );
            }
        }
        for (addr, state, n) in self.router.replicas() {
            let open: Vec<ConnId> = self
                .router_open
                .iter()
                .filter(|c| self.dialed[c] == addr)
                .copied()
                .collect();
            assert!(open.len() <= 1, "{addr}: several open connections {open:?}");
            let running = open.first().map_or(0, |c| self.conns[c].on_link.len());
            assert_eq!(
                n, running,
                "{addr} ({state:?}): the router counts {n} calls, its link runs {running}"
            );
        }
    }

    // ---- the end ----

    /// One round of a prompt driver: everything queued is carried out.
    pub(super) fn prompt_round(&mut self) -> bool {
        let mut progressed = false;
        while !self.closes.is_empty() {
            self.carry_close(0);
            progressed = true;
        }
        while !self.commands.is_empty() {
            self.deliver_command(0, false);
            progressed = true;
        }
        for id in self.conn_ids(|_| true) {
            while self.conns.get(&id).is_some_and(|c| !c.to_server.is_empty()) {
                self.move_bytes_of(id, true);
                progressed = true;
            }
            while self.conns.get(&id).is_some_and(|c| !c.to_client.is_empty()) {
                self.move_bytes_of(id, false);
                progressed = true;
            }
            while self.conns.get(&id).is_some_and(|c| !c.events.is_empty()) {
                let e = self
                    .conns
                    .get_mut(&id)
                    .and_then(|c| c.events.pop_front())
                    .expect("checked");
                self.router.handle_conn_event(self.now, id, e);
                self.drain_router();
                progressed = true;
            }
        }
        while !self.dials.is_empty() {
            self.complete_dial(0, true);
            progressed = true;
        }
        // A watcher answers when it has something new.
        if self
            .resolve_asked
            .is_some_and(|v| v != Some(EndpointsVersion(self.version)))
        {
            self.answer_resolver(false);
            progressed = true;
        }
        self.drain_router();
        progressed
    }

    pub(super) fn move_bytes_of(&mut self, id: ConnId, to_server: bool) {
        let now = self.now;
        let c = self.conns.get_mut(&id).expect("checked");
        if to_server {
            let chunk: Vec<u8> = c.to_server.drain(..).collect();
            c.server.handle_input(now, &chunk);
        } else {
            let chunk: Vec<u8> = c.to_client.drain(..).collect();
            c.link.handle_input(now, &chunk);
        }
        self.pump_conn(id);
    }

    pub(super) fn next_time(&self) -> Option<Instant> {
        let servers = self.conns.values().filter_map(|c| c.server.poll_timeout());
        self.router.poll_timeout().into_iter().chain(servers).min()
    }

    pub(super) fn settled(&self) -> bool {
        let replicas: Vec<(&str, ReplicaState, usize)> = self.router.replicas().collect();
        self.calls.values().all(|c| c.result.is_some())
            && replicas == [(HEALTHY, ReplicaState::Idle, 0)]
            && self.commands.is_empty()
            && self.closes.is_empty()
            && self.conns.values().all(|c| c.events.is_empty())
    }

    /// Liveness: every server healthy and answering, one endpoint, a
    /// prompt driver. Every call ends and the replica set settles within a
    /// bounded number of rounds and of virtual time.
    pub(super) fn settle_healthy(&mut self) {
        for s in self.servers.values_mut() {
            s.dead = false;
            s.healthy = true;
        }
        for c in self.conns.values_mut() {
            c.room = None;
        }
        for id in self.conn_ids(|c| !c.held.is_empty()) {
            let now = self.now;
            let c = self.conns.get_mut(&id).expect("listed");
            for (rid, args) in std::mem::take(&mut c.held) {
                c.server.respond(now, rid, Ok(args));
            }
            self.pump_conn(id);
        }
        self.set_endpoints(vec![HEALTHY.to_string()]);
        // Backoffs and the connect timeout are at most 5 s each: a minute
        // is generous. Seen: 35 rounds, 35 ms.
        let start = self.now;
        for _ in 0..1_000 {
            let progressed = self.prompt_round();
            self.check();
            if self.settled() {
                return;
            }
            if !progressed {
                let Some(t) = self.next_time() else {
                    panic!("{}", self.stuck("the world went quiet"));
                };
                assert!(
                    t - start <= Duration::from_secs(60),
                    "{}",
                    self.stuck("nothing happens for a minute")
                );
                self.advance(t.saturating_duration_since(self.now));
            }
        }
        panic!("{}", self.stuck("not settled in 1000 rounds"));
    }

    pub(super) fn stuck(&self, why: &str) -> String {
        let pending: Vec<_> = self
            .calls
            .iter()
            .filter(|(_, c)| c.result.is_none())
            .map(|(id, c)| (id, c.behavior, c.retry, c.deadline.is_some()))
            .collect();
        let replicas: Vec<_> = self.router.replicas().collect();
        format!(
            "{why} at {:?}: pending {pending:?}, replicas {replicas:?}",
            self.elapsed()
        )
    }

    /// `close`: every call ends at once; then, everything in transit
    /// delivered, every opened link was told to close.
    pub(super) fn close_and_check(&mut self) {
        self.router.close(self.now);
        self.drain_router();
        for (id, c) in &self.calls {
            assert!(c.result.is_some(), "{id:?} did not end on close");
        }
        self.flush(1);
        for _ in 0..1_000 {
            if !self.prompt_round() {
                break;
            }
        }
        self.check();
        for (id, c) in &self.calls {
            assert!(c.result.is_some(), "{id:?} never ended");
        }
        assert_eq!(self.router.pending_calls(), 0);
        assert_eq!(self.router.replicas().count(), 0);
        let untold: Vec<_> = self.opened.difference(&self.told_close).collect();
        assert!(untold.is_empty(), "links never told to close: {untold:?}");
        assert!(self.conns.is_empty(), "links left: {:?}", self.conns.keys());
    }
}
