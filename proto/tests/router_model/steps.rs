//! The world's other steps: commands and events delivered late and out of order, bytes moved, dials completed, connections closed and broken, the resolver answered, servers answering or dying.

use super::*;

impl World {
    /// Applies the `pick`th command in transit to its link, now or with the
    /// clock of the moment it was emitted.
    pub(super) fn deliver_command(&mut self, pick: usize, stale: bool) {
        if self.commands.is_empty() {
            return;
        }
        let t = self.commands.remove(pick % self.commands.len());
        let Some(c) = self.conns.get_mut(&t.conn) else {
            panic!(
                "{:?} in transit for {:?}, whose link is gone",
                t.command, t.conn
            );
        };
        let overtaking = match &t.command {
            Command::Cancel { call } => Some((*call, "Cancel")),
            Command::Expire { call } => Some((*call, "Expire")),
            _ => None,
        };
        if let Some((call, kind)) = overtaking
            && !c.on_link.contains(&call)
            && self.commands.iter().any(|o| {
                o.conn == t.conn
                    && matches!(&o.command, Command::Start { call: s, .. } if *s == call)
            })
        {
            c.overtaken.insert(call, kind);
        }
        let started = match &t.command {
            Command::Start { call, .. } => Some(*call),
            _ => None,
        };
        if let Some(call) = started {
            assert!(
                c.on_link.insert(call),
                "{call:?} started twice on {:?}",
                t.conn
            );
        }
        let at = if stale { t.emitted } else { self.now };
        c.link.apply(at, t.command);
        self.pump_conn(t.conn);
        // A Start that comes after its call's Cancel or Expire ends it at
        // once, sending nothing.
        let c = &self.conns[&t.conn];
        if let Some(call) = started
            && let Some(&kind) = c.overtaken.get(&call)
            && (kind != "Cancel" || CANCEL_OVERTAKING_START_FIXED)
        {
            assert!(
                !c.on_link.contains(&call),
                "{call:?} runs on {:?} after its {kind} overtook its Start",
                t.conn
            );
        }
    }

    /// Hands up to `n` of a link's events to the router, in order.
    pub(super) fn deliver_events(&mut self, pick: usize, n: usize) {
        let ids = self.conn_ids(|c| !c.events.is_empty());
        if ids.is_empty() {
            return;
        }
        let id = ids[pick % ids.len()];
        for _ in 0..n {
            let Some(e) = self.conns.get_mut(&id).and_then(|c| c.events.pop_front()) else {
                break;
            };
            self.router.handle_conn_event(self.now, id, e);
            self.drain_router();
        }
    }

    /// Moves up to `n` bytes through one pipe.
    pub(super) fn move_bytes(&mut self, pick: usize, to_server: bool, n: usize) {
        let ids = self.conn_ids(|c| {
            if to_server {
                !c.to_server.is_empty()
            } else {
                !c.to_client.is_empty()
            }
        });
        if ids.is_empty() {
            return;
        }
        let id = ids[pick % ids.len()];
        let now = self.now;
        let c = self.conns.get_mut(&id).expect("listed");
        let pipe = if to_server {
            &mut c.to_server
        } else {
            &mut c.to_client
        };
        let n = n.clamp(1, pipe.len());
        let chunk: Vec<u8> = pipe.drain(..n).collect();
        if to_server {
            c.server.handle_input(now, &chunk);
        } else {
            c.link.handle_input(now, &chunk);
        }
        self.pump_conn(id);
    }

    pub(super) fn complete_dial(&mut self, pick: usize, ok: bool) {
        if self.dials.is_empty() {
            return;
        }
        let (conn, addr) = self.dials.remove(pick % self.dials.len());
        if ok && !self.servers[&addr].dead {
            // `None`: the driver closes the transport.
            if let Some(link) = self.router.handle_dial_ok(self.now, conn) {
                assert!(
                    !self.told_close.contains(&conn),
                    "a link for {conn:?}, which the router closed"
                );
                self.opened.insert(conn);
                self.router_open.insert(conn);
                let server = ServerConn::new(self.now, ConnConfig::default());
                self.conns.insert(
                    conn,
                    Conn {
                        addr,
                        link,
                        server,
                        to_server: VecDeque::new(),
                        to_client: VecDeque::new(),
                        broken: false,
                        events: VecDeque::new(),
                        on_link: BTreeSet::new(),
                        held: Vec::new(),
                        connected_reported: false,
                        failed_reported: false,
                        overtaken: BTreeMap::new(),
                        room: None,
                    },
                );
                self.pump_conn(conn);
            }
        } else {
            self.router
                .handle_dial_failed(self.now, conn, "connection refused");
        }
        self.drain_router();
    }

    /// The driver carries out an `Action::Close`: the link is dropped with
    /// everything still queued for it.
    pub(super) fn carry_close(&mut self, pick: usize) {
        if self.closes.is_empty() {
            return;
        }
        let conn = self.closes.remove(pick % self.closes.len());
        if let Some(mut c) = self.conns.remove(&conn) {
            c.server.handle_transport_closed(self.now, "client closed");
        }
        self.commands.retain(|t| t.conn != conn);
    }

    pub(super) fn answer_resolver(&mut self, fail: bool) {
        if self.resolve_asked.take().is_none() {
            return;
        }
        if fail {
            self.router.handle_resolve_failed(self.now, "resolver down");
        } else {
            // The current set, even if it is the version the router has
            // (no news: it asks again after a pause).
            let res = Resolution {
                addrs: self.endpoints.clone(),
                version: Some(EndpointsVersion(self.version)),
            };
            self.router.handle_resolved(self.now, res);
        }
        self.drain_router();
    }

    pub(super) fn set_endpoints(&mut self, addrs: Vec<String>) {
        self.endpoints = addrs;
        self.version += 1;
    }

    pub(super) fn break_conn(&mut self, id: ConnId) {
        let now = self.now;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.broken {
            return;
        }
        c.broken = true;
        c.to_server.clear();
        c.to_client.clear();
        c.link.handle_transport_closed(now, "network broke");
        c.server.handle_transport_closed(now, "network broke");
        self.pump_conn(id);
    }

    pub(super) fn set_room(&mut self, pick: usize, room: Option<usize>) {
        let ids = self.conn_ids(|_| true);
        if ids.is_empty() {
            return;
        }
        let id = ids[pick % ids.len()];
        self.conns.get_mut(&id).expect("listed").room = room;
        self.pump_conn(id);
    }

    pub(super) fn server_answers(&mut self, pick: usize) {
        let ids = self.conn_ids(|c| !c.held.is_empty());
        if ids.is_empty() {
            return;
        }
        let id = ids[pick % ids.len()];
        let now = self.now;
        let c = self.conns.get_mut(&id).expect("listed");
        let (rid, args) = c.held.remove(pick % c.held.len());
        c.server.respond(now, rid, Ok(args));
        self.pump_conn(id);
    }

    pub(super) fn set_dead(&mut self, server: &str, dead: bool) {
        self.servers.get_mut(server).expect("known").dead = dead;
        if dead {
            // A crash: open connections drop too.
            for id in self.conn_ids(|c| c.addr == server) {
                self.break_conn(id);
            }
        }
    }
}
