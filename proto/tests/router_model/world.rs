//! The world's construction and its driver loop: the router drained, calls recorded as they end, a connection pumped, calls started, cancelled, time advanced.

use super::*;

impl World {
    pub(super) fn new(seed: u64, least_pending: bool, initial: u8) -> World {
        let base = Instant::now();
        let config = PoolConfig {
            seed,
            // A few requests' worth: the bound and congestion come up often.
            conn: ConnConfig {
                max_request_backlog: 64,
                ..ConnConfig::default()
            },
            ..PoolConfig::default()
        };
        let endpoints = mask_endpoints(initial);
        let balancer: Box<dyn weft_proto::Balancer> = if least_pending {
            Box::new(LeastPending)
        } else {
            Box::new(RoundRobin::new())
        };
        let initial = Resolution {
            addrs: endpoints.clone(),
            version: Some(EndpointsVersion(1)),
        };
        let router = Router::new(base, config, balancer, ResolverKind::Watched, initial)
            .expect("a watched resolver with a version");
        let mut w = World {
            base,
            now: base,
            router,
            commands: Vec::new(),
            closes: Vec::new(),
            dials: Vec::new(),
            resolve_asked: None,
            endpoints,
            version: 1,
            servers: SERVERS
                .iter()
                .map(|s| (s.to_string(), Server::default()))
                .collect(),
            conns: BTreeMap::new(),
            calls: BTreeMap::new(),
            next_args: 0,
            dialed: BTreeMap::new(),
            opened: BTreeSet::new(),
            router_open: BTreeSet::new(),
            told_close: BTreeSet::new(),
            scratch: Vec::new(),
        };
        w.drain_router();
        w
    }

    pub(super) fn elapsed(&self) -> Duration {
        self.now - self.base
    }

    // ---- the router's outputs ----

    /// Takes every output of the router (the drain rule), then fires its
    /// timers if one is due, until only a future timeout is left.
    pub(super) fn drain_router(&mut self) {
        for _ in 0..10_000 {
            while let Some(action) = self.router.poll_action() {
                match action {
                    Action::Dial { conn, addr } => {
                        let fresh = self.dialed.insert(conn, addr.to_string()).is_none();
                        assert!(fresh, "{conn:?} dialed twice");
                        self.dials.push((conn, addr.to_string()));
                    }
                    Action::Close { conn } => {
                        assert!(self.told_close.insert(conn), "{conn:?} told to close twice");
                        assert!(
                            self.dialed.contains_key(&conn),
                            "{conn:?} closed but never dialed"
                        );
                        self.router_open.remove(&conn);
                        self.closes.push(conn);
                        // A dial in progress is abandoned; if it completes
                        // anyway, `handle_dial_ok` must not want it.
                    }
                    Action::Resolve { version } => self.resolve_asked = Some(version),
                    other => panic!("an action the model does not know: {other:?}"),
                }
            }
            while let Some((conn, command)) = self.router.poll_command() {
                assert!(
                    self.opened.contains(&conn),
                    "{command:?} for {conn:?}, which the router never opened"
                );
                self.commands.push(InTransit {
                    conn,
                    command,
                    emitted: self.now,
                });
            }
            while let Some(event) = self.router.poll_event() {
                match event {
                    PoolEvent::Done { id, result } => self.record_done(id, result),
                    other => panic!("an event the model does not know: {other:?}"),
                }
            }
            match self.router.poll_timeout() {
                Some(t) if t <= self.now => self.router.handle_timeout(self.now),
                _ => return,
            }
        }
        panic!("the router never stopped producing output");
    }

    pub(super) fn record_done(&mut self, id: PoolCallId, result: Result<Bytes, CallError>) {
        let now = self.now;
        let closed = self.router.is_closed();
        let info = self
            .calls
            .get_mut(&id)
            .unwrap_or_else(|| panic!("{id:?} ended but was never started"));
        assert!(
            info.result.is_none(),
            "{id:?} ended twice: {:?} then {result:?}",
            info.result
        );
        if info.cancelled {
            assert_eq!(result, Err(CallError::Cancelled), "{id:?} was cancelled");
        }
        match &result {
            Ok(bytes) => {
                assert_eq!(bytes, &info.args, "{id:?} got another call's response");
                assert!(
                    info.deadline.is_none_or(|d| now < d),
                    "{id:?} succeeded after its deadline"
                );
            }
            Err(CallError::Cancelled) => {
                assert!(info.cancelled, "{id:?} cancelled without a cancel")
            }
            Err(CallError::DeadlineExceeded | CallError::DeadlineWaitingForReplica(_)) => assert!(
                info.deadline.is_some_and(|d| d <= now),
                "{id:?} expired before its deadline ({:?})",
                info.deadline
            ),
            Err(CallError::Remote(e)) => {
                assert_eq!(info.behavior, Behavior::Error, "{id:?}: remote {e:?}");
                assert_eq!(e.message(), REMOTE_ERROR, "{id:?}");
            }
            Err(CallError::BadErrorPayload(_)) => {
                assert_eq!(info.behavior, Behavior::Garble, "{id:?}");
            }
            Err(_) => {}
        }
        if let Err(e) = &result
            && info.retry
            && !closed
        {
            assert!(
                !e.is_communication() && !matches!(e, CallError::Unreachable(_)),
                "{id:?} has retry but ended with {e:?}"
            );
        }
        info.result = Some(result);
    }

    // ---- a connection's cores ----

    /// Writes what the link and the server queued into the pipes, collects
    /// the link's events, and plays the server application.
    pub(super) fn pump_conn(&mut self, id: ConnId) {
        let World {
            conns,
            servers,
            scratch,
            now,
            ..
        } = self;
        let now = *now;
        let Some(c) = conns.get_mut(&id) else {
            return;
        };
        let healthy = servers[&c.addr].healthy;
        loop {
            let mut progressed = false;
            scratch.clear();
            match &mut c.room {
                None => c.link.drain_transmit(scratch),
                Some(left) => {
                    while *left > 0 {
                        let chunk = c.link.transmit().first_chunk();
                        let n = chunk.len().min(*left);
                        if n == 0 {
                            break;
                        }
                        scratch.extend_from_slice(&chunk[..n]);
                        c.link.advance_transmit(now, n);
                        *left -= n;
                    }
                }
            }
            if !scratch.is_empty() {
                progressed = true;
                if !c.broken {
                    c.to_server.extend(scratch.iter());
                }
            }
            while let Some(e) = c.link.poll_event() {
                progressed = true;
                match &e {
                    ConnEvent::Connected { .. } => {
                        assert!(!c.connected_reported, "{id:?} connected twice");
                        assert!(!c.failed_reported, "{id:?} connected after failing");
                        c.connected_reported = true;
                    }
                    ConnEvent::Done { call, .. } => assert!(
                        c.on_link.remove(call),
                        "{id:?} reported {call:?}, which is not running on it"
                    ),
                    ConnEvent::Failed(_) => {
                        assert!(!c.failed_reported, "{id:?} failed twice");
                        c.failed_reported = true;
                    }
                    ConnEvent::Congested { .. } => {
                        assert!(c.connected_reported, "{id:?} congested before connecting");
                        assert!(!c.failed_reported, "{id:?} congested after failing");
                    }
                    other => panic!("a link event the model does not know: {other:?}"),
                }
                c.events.push_back(e);
            }
            scratch.clear();
            c.server.drain_transmit(scratch);
            if !scratch.is_empty() {
                progressed = true;
                if !c.broken {
                    c.to_client.extend(scratch.iter());
                }
            }
            while let Some(e) = c.server.poll_event() {
                progressed = true;
                match e {
                    ServerEvent::Request(req) => {
                        let behavior = match Behavior::from_args(&req.args) {
                            Behavior::Silent | Behavior::Garble if healthy => Behavior::Echo,
                            b => b,
                        };
                        match behavior {
                            Behavior::Echo => c.server.respond(now, req.id, Ok(req.args)),
                            Behavior::Error => {
                                c.server
                                    .respond(now, req.id, Err(RemoteError::new(REMOTE_ERROR)))
                            }
                            Behavior::Silent => c.held.push((req.id, req.args)),
                            Behavior::Garble => {
                                // Whole frames only: what the server queued
                                // goes first.
                                scratch.clear();
                                c.server.drain_transmit(scratch);
                                if !c.broken {
                                    c.to_client.extend(scratch.iter());
                                    c.to_client.extend(garbled_error(req.id));
                                }
                                // The server still holds it: a late answer
                                // (after a cancel) is one the client ignores.
                                c.held.push((req.id, req.args));
                            }
                        }
                    }
                    ServerEvent::Cancel { id: rid, .. } => {
                        c.held.retain(|(h, _)| *h != rid);
                        c.server.respond_cancelled(now, rid);
                    }
                    ServerEvent::Failed(_) => c.held.clear(),
                }
            }
            if c.server.failure().is_some() && !c.broken {
                // The server's driver closes the transport.
                c.broken = true;
                c.to_server.clear();
                c.to_client.clear();
                c.link.handle_transport_closed(now, "server closed");
                progressed = true;
            }
            if !progressed {
                return;
            }
        }
    }

    pub(super) fn conn_ids(&self, filter: impl Fn(&Conn) -> bool) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| filter(c))
            .map(|(id, _)| *id)
            .collect()
    }

    // ---- the schedule's steps ----

    pub(super) fn start_call(
        &mut self,
        deadline_us: Option<u32>,
        retry: bool,
        wait_for_ready: bool,
        behavior: Behavior,
    ) {
        self.next_args += 1;
        let mut args = format!("call-{}-", self.next_args).into_bytes();
        args.push(behavior.tag());
        let args = Bytes::from(args);
        let deadline = deadline_us.map(|us| self.now + Duration::from_micros(us.into()));
        let opts = CallOptions {
            deadline,
            retry,
            wait_for_ready,
            ..CallOptions::default()
        };
        let id = self
            .router
            .start_call(self.now, method(), args.clone(), opts);
        let info = CallInfo {
            args,
            behavior,
            deadline,
            retry,
            cancelled: false,
            result: None,
        };
        assert!(self.calls.insert(id, info).is_none(), "{id:?} reused");
        self.drain_router();
    }

    pub(super) fn cancel(&mut self, pick: usize) {
        let ids: Vec<PoolCallId> = self.calls.keys().copied().collect();
        if ids.is_empty() {
            return;
        }
        let id = ids[pick % ids.len()];
        let pending = self.calls[&id].result.is_none();
        let cancelled = self.router.cancel(self.now, id);
        assert_eq!(cancelled, pending, "cancel({id:?})");
        if cancelled {
            self.calls.get_mut(&id).expect("known").cancelled = true;
        }
        self.drain_router();
        if cancelled {
            assert!(
                self.calls[&id].result.is_some(),
                "{id:?} cancel did not end it"
            );
        }
    }

    /// Time passes: due server timers, then the router's.
    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        for id in self.conn_ids(|_| true) {
            let c = self.conns.get_mut(&id).expect("listed");
            if c.server.poll_timeout().is_some_and(|t| t <= self.now) {
                c.server.handle_timeout(self.now);
            }
            self.pump_conn(id);
        }
        if self.router.poll_timeout().is_some_and(|t| t <= self.now) {
            self.router.handle_timeout(self.now);
        }
        self.drain_router();
    }
}
