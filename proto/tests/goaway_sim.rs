//! Graceful shutdown in the simulation: the goaway exchange between one
//! client and one server core, the server's grace deadline, version-0
//! peers, and a pool whose replicas shut down and restart under load.

mod sim;

use bytes::Bytes;
use sim::Pair;
use sim::cluster::{Cluster, Kind};
use std::time::{Duration, Instant};
use weft_proto::{
    CallError, CallOptions, CancelReason, ClientEvent, ConnConfig, ConnError, DecodeError,
    FrameDecoder, Message, MessageType, MethodKey, PeerError, PoolCallId, ReplicaState, RoundRobin,
    SHUTDOWN_REASON, ServerConn, ServerEvent, Transmit, Version,
};

fn echo() -> MethodKey {
    MethodKey::new("weft.Test", "Echo")
}

fn call(p: &mut Pair, opts: &CallOptions) -> weft_proto::CallId {
    let now = p.now;
    p.client
        .start_call(now, echo(), Bytes::from_static(b"x"), opts)
}

fn requests(p: &Pair) -> Vec<u64> {
    p.server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Request(r) => Some(r.id),
            _ => None,
        })
        .collect()
}

fn goaways(p: &Pair) -> Vec<u64> {
    p.client_events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::GoAway { last_id, .. } => Some(*last_id),
            _ => None,
        })
        .collect()
}

fn unprocessed() -> Result<Bytes, CallError> {
    Err(CallError::Unprocessed(SHUTDOWN_REASON.into()))
}

#[test]
fn goaway_names_the_last_request_and_later_ones_are_not_run() {
    for seed in 0..20 {
        let mut p = Pair::new(seed);
        let first: Vec<_> = (0..3)
            .map(|_| call(&mut p, &CallOptions::default()))
            .collect();
        p.drive_until(|p| requests(p).len() == 3);
        let now = p.now;
        p.server.shutdown(now, now + Duration::from_secs(10));
        assert!(p.server.is_draining());
        // Started before the goaway arrives: its request crosses it.
        let crossing = call(&mut p, &CallOptions::default());
        p.drive_until(|p| !goaways(p).is_empty());
        assert_eq!(goaways(&p), [3]);
        assert!(p.client.is_going_away());
        // Started after: ends at once, nothing sent.
        let after = call(&mut p, &CallOptions::default());
        p.drain();
        assert_eq!(p.done_for(after), [&unprocessed()]);
        p.drive_until(|p| !p.done_for(crossing).is_empty());
        assert_eq!(p.done_for(crossing), [&unprocessed()]);
        // The server never runs it (once it arrives, it is discarded);
        // the promised ones are still answered.
        p.drive_until(|p| p.c2s.next_is_none());
        assert_eq!(requests(&p), [1, 2, 3], "seed {seed}");
        let now = p.now;
        for id in 1..=3 {
            p.server.respond(now, id, Ok(Bytes::from_static(b"ok")));
        }
        p.settle();
        for id in first {
            assert_eq!(p.done_for(id), [&Ok(Bytes::from_static(b"ok"))]);
        }
    }
}

#[test]
fn a_drained_connection_waits_for_the_client_to_close_then_closes_itself() {
    let mut p = Pair::new(1);
    let id = call(&mut p, &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 1);
    let now = p.now;
    p.server.shutdown(now, now + Duration::from_secs(10));
    p.server.respond(now, 1, Ok(Bytes::from_static(b"ok")));
    p.drain();
    assert!(p.server.failure().is_none(), "waits for the client");
    p.drive_until(|p| !p.done_for(id).is_empty());
    // The client (here: its pool) would close now; it does not, so the
    // server gives up after LINGER.
    let drained = p.now;
    p.settle();
    assert_eq!(p.server.failure(), Some(&ConnError::Closed));
    assert!(p.server.is_finished());
    assert!(p.now >= drained + weft_proto::LINGER - Duration::from_millis(1));
    assert!(p.now <= drained + weft_proto::LINGER + Duration::from_millis(1));
}

#[test]
fn at_the_grace_deadline_handlers_are_cancelled_and_callers_told() {
    let mut p = Pair::new(2);
    let id = call(&mut p, &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 1);
    let start = p.now;
    p.server.shutdown(start, start + Duration::from_secs(2));
    p.settle();
    assert!(p.server_events.contains(&ServerEvent::Cancel {
        id: 1,
        reason: CancelReason::Shutdown
    }));
    assert!(matches!(
        p.server_events.last(),
        Some(ServerEvent::Failed(ConnError::Closed))
    ));
    let [Err(e)] = p.done_for(id)[..] else {
        panic!("{:?}", p.done_for(id))
    };
    assert!(e.is_cancelled(), "{e}");
    assert!(p.server.is_finished());
    // Nothing happened before the deadline.
    let cancelled_at = p.now;
    assert!(cancelled_at >= start + Duration::from_secs(2));
    // The handler's late answer goes nowhere.
    p.server
        .respond(cancelled_at, 1, Ok(Bytes::from_static(b"late")));
    assert!(p.server.transmit().is_empty());
}

#[test]
fn a_second_shutdown_can_only_hurry() {
    let mut p = Pair::new(3);
    call(&mut p, &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 1);
    let now = p.now;
    p.server.shutdown(now, now + Duration::from_secs(5));
    p.server.shutdown(now, now + Duration::from_secs(50));
    assert_eq!(p.server.next_deadline(), Some(now + Duration::from_secs(5)));
    p.server.shutdown(now, now);
    p.drain();
    assert!(p.server_events.contains(&ServerEvent::Cancel {
        id: 1,
        reason: CancelReason::Shutdown
    }));
    assert_eq!(p.server.failure(), Some(&ConnError::Closed));
}

#[test]
fn shutdown_before_the_handshake_closes_at_once() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.shutdown(now, now + Duration::from_secs(10));
    assert_eq!(server.failure(), Some(&ConnError::Closed));
    // Nothing to send: writes are shut at once, and a client that closes
    // its end finishes it.
    assert!(server.wants_close_write());
    server.handle_write_closed(now);
    assert!(!server.is_finished() && server.wants_read());
    server.handle_transport_closed(now, "client closed");
    assert!(server.is_finished());
}

/// A Service Weaver (version 0) client: the bytes it sends.
fn v0_client_bytes(ids: &[u64]) -> Vec<u8> {
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    for &id in ids {
        let header = weft_proto::RequestHeader::new(echo());
        tx.push_request(id, header.fields(), &Bytes::from_static(b"x"));
    }
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn frames(bytes: &[u8]) -> Vec<Message> {
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(bytes);
    std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect()
}

#[test]
fn a_version_0_client_sees_no_goaway_only_its_answers_then_the_close() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &v0_client_bytes(&[1, 2]));
    assert_eq!(server.version(), Some(Version::CURRENT));
    while server.poll_event().is_some() {}
    server.shutdown(now, now + Duration::from_secs(10));
    assert!(
        !server.wants_read(),
        "a v0 connection is not read while draining"
    );
    server.respond(now, 2, Ok(Bytes::from_static(b"two")));
    assert!(server.failure().is_none());
    server.respond(now, 1, Ok(Bytes::from_static(b"one")));
    assert_eq!(server.failure(), Some(&ConnError::Closed));
    let mut out = Vec::new();
    assert!(!server.wants_close_write(), "the answers go first");
    server.drain_transmit(&mut out);
    // Then the server half-closes, and reads (and drops) what the client
    // sent meanwhile until it closes too: closing with it unread would
    // reset the connection under answers the client may not have read.
    assert!(server.wants_close_write());
    assert!(!server.is_finished());
    server.handle_write_closed(now);
    assert!(!server.wants_close_write());
    assert!(server.wants_read(), "read to the end");
    while server.poll_event().is_some() {}
    server.handle_input(now, &v0_client_bytes(&[3, 4]));
    assert!(server.poll_event().is_none(), "late requests are dropped");
    assert!(server.transmit().is_empty());
    assert!(!server.is_finished());
    server.handle_transport_closed(now, "client closed");
    assert!(server.is_finished());
    // Exactly what a Go server would have sent: its version (0), answers.
    assert_eq!(
        frames(&out),
        [
            Message::Version(Version::CURRENT),
            Message::Response {
                id: 2,
                payload: Bytes::from_static(b"two")
            },
            Message::Response {
                id: 1,
                payload: Bytes::from_static(b"one")
            },
        ]
    );
    assert!(
        frames(&out)
            .iter()
            .all(|m| m.message_type() != MessageType::GoAway)
    );
}

#[test]
fn a_client_that_never_closes_its_end_is_closed_after_the_linger() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &v0_client_bytes(&[]));
    server.shutdown(now, now + Duration::from_secs(10));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert!(server.wants_close_write());
    let shut = now + Duration::from_millis(5);
    server.handle_write_closed(shut);
    assert_eq!(server.next_deadline(), Some(shut + weft_proto::LINGER));
    server.handle_timeout(shut + weft_proto::LINGER - Duration::from_millis(1));
    assert!(!server.is_finished());
    server.handle_timeout(shut + weft_proto::LINGER);
    assert!(server.is_finished());
    assert!(!server.wants_read());
}

#[test]
fn an_immediate_close_does_not_half_close() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &v0_client_bytes(&[1]));
    server.close(now);
    assert!(!server.wants_close_write());
    assert!(server.is_finished());
}

#[test]
fn a_goaway_on_a_version_0_connection_is_a_protocol_error() {
    let mut p = Pair::new(4);
    // A server that answers version 0, then sends a goaway anyway.
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    tx.push_goaway(0, "bye");
    let mut bytes = Vec::new();
    tx.drain_into(&mut bytes);
    let now = p.now;
    p.client.handle_input(now, &bytes);
    assert_eq!(
        p.client.failure(),
        Some(&ConnError::Peer(PeerError::UnexpectedMessage(
            MessageType::GoAway
        )))
    );
}

#[test]
fn a_malformed_goaway_names_the_problem() {
    let mut p = Pair::new(5);
    p.drive_until(|p| p.connected());
    // Id 7, payload of 3 bytes.
    let now = p.now;
    p.client.handle_input(
        now,
        &[7, 0, 0, 0, 0, 0, 0, 0, 5, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3],
    );
    assert_eq!(
        p.client.failure(),
        Some(&ConnError::Peer(PeerError::Decode(
            DecodeError::GoAwayNonZeroId(7)
        )))
    );
    let mut p = Pair::new(6);
    p.drive_until(|p| p.connected());
    let now = p.now;
    p.client.handle_input(
        now,
        &[0, 0, 0, 0, 0, 0, 0, 0, 5, 3, 0, 0, 0, 0, 0, 0, 1, 2, 3],
    );
    assert_eq!(
        p.client.failure(),
        Some(&ConnError::Peer(PeerError::Decode(
            DecodeError::GoAwayTooShort(3)
        )))
    );
}

#[test]
fn a_client_sending_goaway_breaks_the_protocol() {
    let mut p = Pair::new(7);
    p.drive_until(|p| p.connected());
    let mut tx = Transmit::new(0);
    tx.push_goaway(0, "");
    let mut bytes = Vec::new();
    tx.drain_into(&mut bytes);
    let now = p.now;
    p.server.handle_input(now, &bytes);
    assert_eq!(
        p.server.failure(),
        Some(&ConnError::Peer(PeerError::UnexpectedMessage(
            MessageType::GoAway
        )))
    );
}

// ---- the pool ----

const FAST: Kind = Kind::Live {
    delay: Duration::from_micros(100),
};

fn cluster(servers: &[(&str, Kind)], endpoints: &[&str]) -> Cluster {
    Cluster::new(1, servers, endpoints, true, Box::new(RoundRobin::new())).unwrap()
}

fn all_ready(c: &Cluster) -> bool {
    c.pool
        .replicas()
        .all(|(_, s, _)| matches!(s, ReplicaState::Idle | ReplicaState::Active))
}

#[test]
fn a_replica_going_away_leaves_the_balancer_finishes_its_calls_and_is_redialed() {
    let slow = Kind::Live {
        delay: Duration::from_millis(100),
    };
    let mut c = cluster(&[("a", slow), ("b", FAST)], &["a", "b"]);
    c.drive_until(all_ready);
    let ids: Vec<PoolCallId> = (0..10).map(|_| c.call(&CallOptions::default())).collect();
    c.run_for(Duration::from_millis(10));
    c.shutdown_server("a", Duration::from_secs(10));
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Draining);
    // New calls avoid it.
    for _ in 0..5 {
        let (id, _) = c.call_and_wait(&CallOptions::default());
        assert_eq!(c.served_by(id), "b");
    }
    // Its calls finish there.
    c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
    let on_a = ids.iter().filter(|id| c.served_by(**id) == "a").count();
    assert_eq!(on_a, 5, "round robin put half on a, and a answered them");
    // Then it closes, is redialed, and comes back with the new server.
    c.drive_until(|c| c.server_stopped("a"));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Disconnected);
    let dials_before = c.dialed.iter().filter(|(_, a)| a == "a").count();
    c.run_for(Duration::from_millis(50));
    assert!(
        c.dialed.iter().filter(|(_, a)| a == "a").count() > dials_before,
        "redialed"
    );
    c.restart_server("a");
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let served: Vec<String> = (0..4)
        .map(|_| {
            let (id, _) = c.call_and_wait(&CallOptions::default());
            c.served_by(id)
        })
        .collect();
    assert!(served.iter().any(|s| s == "a"), "{served:?}");
}

#[test]
fn calls_crossing_the_goaway_go_to_another_replica_without_retry() {
    for seed in 0..10 {
        let mut c = Cluster::new(
            seed,
            &[("a", FAST), ("b", FAST)],
            &["a", "b"],
            true,
            Box::new(RoundRobin::new()),
        )
        .unwrap();
        c.drive_until(all_ready);
        c.shutdown_server("a", Duration::from_secs(10));
        // Placed before the goaway reaches the client: half go to a.
        let ids: Vec<PoolCallId> = (0..20).map(|_| c.call(&CallOptions::default())).collect();
        c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
        for id in &ids {
            assert_eq!(c.served_by(*id), "b", "seed {seed}");
        }
        assert_eq!(c.servers["a"].served, 0);
    }
}

#[test]
fn a_lone_replica_restarting_makes_calls_wait_not_fail() {
    let mut c = cluster(&[("a", FAST)], &["a"]);
    c.drive_until(all_ready);
    c.shutdown_server("a", Duration::from_secs(10));
    c.drive_until(|c| c.server_stopped("a"));
    // No replica ready, none failing: a call waits for the restart.
    let id = c.call(&CallOptions::default());
    c.run_for(Duration::from_millis(1));
    assert!(c.result(id).is_none(), "{:?}", c.result(id));
    c.restart_server("a");
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.served_by(id), "a");
}

#[test]
fn grace_expiry_answers_the_caller_with_a_cancellation() {
    let stuck = Kind::Live {
        delay: Duration::from_secs(60),
    };
    let mut c = cluster(&[("a", stuck)], &["a"]);
    c.drive_until(all_ready);
    let id = c.call(&CallOptions::default());
    c.run_for(Duration::from_millis(1));
    let start = c.now;
    c.shutdown_server("a", Duration::from_secs(1));
    c.drive_until(|c| c.result(id).is_some());
    let Some(Err(e)) = c.result(id) else { panic!() };
    assert!(e.is_cancelled(), "{e}");
    assert!(c.now >= start + Duration::from_secs(1));
    assert!(c.now < start + Duration::from_millis(1010));
}

/// Item 4 of the issue in the simulation: three replicas, 128 calls in
/// flight at all times, each replica shut down and restarted in turn.
#[test]
fn rolling_restart_under_load_fails_no_call() {
    for seed in 0..3 {
        let servers = [
            (
                "a",
                Kind::Live {
                    delay: Duration::from_millis(2),
                },
            ),
            (
                "b",
                Kind::Live {
                    delay: Duration::from_millis(2),
                },
            ),
            (
                "c",
                Kind::Live {
                    delay: Duration::from_millis(2),
                },
            ),
        ];
        let mut c = Cluster::new(
            seed,
            &servers,
            &["a", "b", "c"],
            true,
            Box::new(RoundRobin::new()),
        )
        .unwrap();
        c.drive_until(all_ready);
        let mut in_flight: Vec<PoolCallId> = Vec::new();
        let mut done = 0;
        let keep_busy = |c: &mut Cluster, in_flight: &mut Vec<PoolCallId>, done: &mut usize| {
            in_flight.retain(|id| match c.result(*id) {
                Some(Ok(_)) => {
                    *done += 1;
                    false
                }
                Some(Err(e)) => panic!("seed {seed}: a call failed: {e}"),
                None => true,
            });
            while in_flight.len() < 128 {
                in_flight.push(c.call(&CallOptions::default()));
            }
        };
        for addr in ["a", "b", "c"] {
            keep_busy(&mut c, &mut in_flight, &mut done);
            c.shutdown_server(addr, Duration::from_secs(10));
            while !c.server_stopped(addr) {
                c.step();
                keep_busy(&mut c, &mut in_flight, &mut done);
            }
            // The new server comes up a little later.
            let up = c.now + Duration::from_millis(20);
            while c.now < up {
                c.step();
                keep_busy(&mut c, &mut in_flight, &mut done);
            }
            c.restart_server(addr);
            while c.pool.replica_state(addr) != ReplicaState::Idle
                && c.pool.replica_state(addr) != ReplicaState::Active
            {
                c.step();
                keep_busy(&mut c, &mut in_flight, &mut done);
            }
        }
        c.drive_until(|c| in_flight.iter().all(|id| c.result(*id).is_some()));
        keep_busy(&mut c, &mut in_flight, &mut done);
        assert!(done > 1000, "seed {seed}: {done} calls");
    }
}

#[test]
fn calls_crossing_the_goaway_of_a_lone_replica_wait_for_its_restart() {
    for seed in 0..5 {
        let mut c = Cluster::new(
            seed,
            &[("a", FAST)],
            &["a"],
            true,
            Box::new(RoundRobin::new()),
        )
        .unwrap();
        c.drive_until(all_ready);
        c.shutdown_server("a", Duration::from_secs(10));
        let ids: Vec<PoolCallId> = (0..5).map(|_| c.call(&CallOptions::default())).collect();
        c.drive_until(|c| c.server_stopped("a"));
        assert!(ids.iter().all(|id| c.result(*id).is_none()), "they wait");
        c.restart_server("a");
        c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
        for id in ids {
            assert_eq!(c.served_by(id), "a", "seed {seed}");
        }
    }
}

/// A call the router placed whose `Start` had not reached the link when
/// the server's goaway and close did (drivers apply commands from other
/// threads): it was never sent, and goes elsewhere instead of failing.
#[test]
fn a_start_still_in_transit_when_a_goaway_connection_closes_is_placed_again() {
    use weft_proto::{Action, Command, EndpointsVersion, PoolConfig, Resolution, ResolverKind};
    let now = Instant::now();
    let initial = Resolution {
        addrs: vec!["a".into(), "b".into()],
        version: Some(EndpointsVersion(1)),
    };
    let mut router = weft_proto::Router::new(
        now,
        PoolConfig::default(),
        Box::new(RoundRobin::new()),
        ResolverKind::Watched,
        initial,
    )
    .unwrap();
    let dials: Vec<_> = std::iter::from_fn(|| router.poll_action())
        .filter_map(|a| match a {
            Action::Dial { conn, addr } => Some((conn, addr)),
            _ => None,
        })
        .collect();
    let mut links = Vec::new();
    for (conn, addr) in dials {
        let mut link = router.handle_dial_ok(now, conn).unwrap();
        let mut server = ServerConn::new(now, ConnConfig::default());
        let mut buf = Vec::new();
        link.drain_transmit(&mut buf);
        server.handle_input(now, &buf);
        let mut buf = Vec::new();
        server.drain_transmit(&mut buf);
        link.handle_input(now, &buf);
        while let Some(e) = link.poll_event() {
            router.handle_conn_event(now, conn, e);
        }
        links.push((conn, addr, link, server));
    }
    // Placed on a; its Start is not applied yet.
    let id = router.start_call(
        now,
        echo(),
        Bytes::from_static(b"x"),
        CallOptions::default(),
    );
    let (conn, start) = router.poll_command().unwrap();
    assert!(matches!(start, Command::Start { .. }));
    let (_, addr, link, server) = links.iter_mut().find(|l| l.0 == conn).unwrap();
    assert_eq!(router.replica_state(addr), ReplicaState::Active);
    // a's server goes away and closes before the Start is applied.
    server.shutdown(now, now + Duration::from_secs(10));
    let mut buf = Vec::new();
    server.drain_transmit(&mut buf);
    link.handle_input(now, &buf);
    link.handle_transport_closed(now, "server closed");
    while let Some(e) = link.poll_event() {
        router.handle_conn_event(now, conn, e);
    }
    // The Start arrives at a dead link: moot. The call went to b.
    let (again, restart) = router.poll_command().unwrap();
    assert_ne!(again, conn);
    assert!(matches!(restart, Command::Start { call, .. } if call == id));
    assert!(router.poll_event().is_none(), "the call did not end");
    router.assert_invariants();
}

// ---- idle connections ----

fn idle_pair(seed: u64, timeout: Duration) -> Pair {
    let mut p = Pair::new(seed);
    let now = p.now;
    p.server = ServerConn::new(
        now,
        weft_proto::ServerConfig {
            idle_timeout: Some(timeout),
            ..weft_proto::ServerConfig::default()
        },
    );
    p
}

#[test]
fn an_idle_version_1_connection_gets_a_goaway_and_traffic_postpones_it() {
    let timeout = Duration::from_secs(30);
    let mut p = idle_pair(8, timeout);
    p.app = sim::ServerApp::Echo {
        max_delay: Duration::from_millis(1),
    };
    let id = call(&mut p, &CallOptions::default());
    p.drive_until(|p| !p.done_for(id).is_empty());
    let last_traffic = p.now;
    // A call in flight for longer than the timeout is not idleness.
    p.app = sim::ServerApp::Manual;
    call(&mut p, &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 2);
    let later = p.now + timeout * 2;
    p.advance_to(later);
    assert!(goaways(&p).is_empty());
    let now = p.now;
    p.server.respond(now, 2, Ok(Bytes::new()));
    let answered = p.now;
    p.drive_until(|p| !goaways(p).is_empty());
    assert!(p.now >= answered + timeout && last_traffic < answered);
    assert_eq!(goaways(&p), [2]);
    let Some(ClientEvent::GoAway { reason, .. }) = p
        .client_events
        .iter()
        .find(|e| matches!(e, ClientEvent::GoAway { .. }))
    else {
        unreachable!()
    };
    assert_eq!(reason, weft_proto::IDLE_REASON);
}

#[test]
fn an_idle_version_0_connection_is_closed() {
    let timeout = Duration::from_secs(30);
    let now = Instant::now();
    let mut server = ServerConn::new(
        now,
        weft_proto::ServerConfig {
            idle_timeout: Some(timeout),
            ..weft_proto::ServerConfig::default()
        },
    );
    server.handle_input(now, &v0_client_bytes(&[]));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert_eq!(server.next_deadline(), Some(now + timeout));
    server.handle_timeout(now + timeout);
    assert_eq!(server.failure(), Some(&ConnError::Closed));
    assert!(server.transmit().is_empty(), "no goaway for version 0");
}

/// Found by the pool fuzz target: a replica draining because the resolver
/// dropped it gets a goaway, then the resolver names it again. Its
/// connection must not come back into the balancer (every call placed on
/// it would come back unprocessed, for ever); it is redialed instead.
#[test]
fn a_replica_back_in_the_resolver_after_a_goaway_is_redialed_not_reused() {
    let slow = Kind::Live {
        delay: Duration::from_millis(100),
    };
    let mut c = Cluster::new(
        1,
        &[("a", slow), ("b", FAST)],
        &["a"],
        false,
        Box::new(RoundRobin::new()),
    )
    .unwrap();
    c.drive_until(all_ready);
    let first = c.call(&CallOptions::default());
    c.run_for(Duration::from_millis(1));
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Draining);
    let old = c.live_conns("a");
    c.shutdown_server("a", Duration::from_secs(10));
    c.run_for(Duration::from_millis(1));
    c.restart_server_early("a");
    c.set_endpoints(&["a", "b"]);
    c.sync_endpoints();
    let later: Vec<PoolCallId> = (0..6).map(|_| c.call(&CallOptions::default())).collect();
    c.drive_until(|c| later.iter().all(|id| c.result(*id).is_some()));
    c.drive_until(|c| c.result(first).is_some());
    assert_eq!(c.served_by(first), "a");
    for id in later {
        c.served_by(id);
    }
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    assert_ne!(c.live_conns("a"), old, "a new connection");
}

#[test]
fn idle_goaways_do_not_make_a_replica_back_off() {
    let idle = Duration::from_secs(1);
    let mut c = cluster(&[("a", FAST)], &["a"]);
    c.server_config.idle_timeout = Some(idle);
    c.drive_until(all_ready);
    // A quiet client: the server sends each connection away when idle,
    // and the replica comes back after the first backoff step, every time
    // (before, each cycle counted as a failed attempt: after a minute of
    // quiet a call waited up to the 5 s cap for the next dial).
    c.run_for(Duration::from_secs(60));
    let times: Vec<_> = c.dialed.iter().map(|(t, _)| *t).collect();
    assert!(times.len() > 50, "{} dials", times.len());
    for gap in times.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap < idle + Duration::from_millis(50), "{gap:?}");
    }
    let t0 = c.now;
    let (id, result) = c.call_and_wait(&CallOptions::default());
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(c.served_by(id), "a");
    assert!(c.now - t0 < Duration::from_millis(50), "{:?}", c.now - t0);
}

#[test]
fn a_shutdown_after_an_idle_goaway_still_brings_the_close_forward() {
    let timeout = Duration::from_secs(30);
    let now = Instant::now();
    let mut server = ServerConn::new(
        now,
        weft_proto::ServerConfig {
            idle_timeout: Some(timeout),
            ..weft_proto::ServerConfig::default()
        },
    );
    let mut tx = Transmit::new(0);
    tx.push_version(Version::LATEST);
    let mut hello = Vec::new();
    tx.drain_into(&mut hello);
    server.handle_input(now, &hello);
    let idle = now + timeout;
    server.handle_timeout(idle);
    assert!(server.is_draining() && server.failure().is_none());
    // The client does not close; a stop at once does not wait for it.
    server.shutdown(idle, idle);
    assert_eq!(server.failure(), Some(&ConnError::Closed));
}

#[test]
fn a_write_half_that_cannot_be_shut_is_given_up_after_the_linger() {
    // Under TLS shutting writes is a record to write; a client that stopped
    // reading never takes it.
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &v0_client_bytes(&[]));
    server.shutdown(now, now + Duration::from_secs(10));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert!(server.wants_close_write());
    assert_eq!(server.next_deadline(), Some(now + weft_proto::LINGER));
    server.handle_timeout(now + weft_proto::LINGER);
    assert!(!server.wants_close_write());
    assert!(server.is_finished());
}

#[test]
fn a_stop_at_once_ends_a_graceful_close_in_progress() {
    for stop in ["shutdown", "close"] {
        for shut in [false, true] {
            let now = Instant::now();
            let mut server = ServerConn::new(now, ConnConfig::default());
            server.handle_input(now, &v0_client_bytes(&[1]));
            while server.poll_event().is_some() {}
            server.shutdown(now, now + Duration::from_secs(10));
            server.respond(now, 1, Ok(Bytes::from_static(b"one")));
            if shut {
                let mut out = Vec::new();
                server.drain_transmit(&mut out);
                server.handle_write_closed(now);
            }
            assert!(!server.is_finished(), "{stop} {shut}: closing gracefully");
            match stop {
                "shutdown" => server.shutdown(now, now),
                _ => server.close(now),
            }
            assert!(server.is_finished(), "{stop} {shut}: waited on");
            assert!(!server.wants_read() && !server.wants_close_write());
        }
    }
}

#[test]
fn a_server_that_sends_every_connection_away_at_once_is_redialed_with_backoff() {
    let mut c = cluster(&[("a", FAST)], &["a"]);
    c.server_config.idle_timeout = Some(Duration::from_millis(5));
    c.drive_until(all_ready);
    c.run_for(Duration::from_secs(30));
    let times: Vec<_> = c.dialed.iter().map(|(t, _)| *t).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    // Not one dial per 5 ms idle + 10 ms first step: the backoff grows,
    // to about 140 ms (less jitter) and no further.
    assert!(gaps.len() < 600, "{} dials in 30 s", gaps.len());
    let late = &gaps[gaps.len() - 20..];
    assert!(
        late.iter().all(|g| *g >= Duration::from_millis(60)),
        "{late:?}"
    );
    assert!(
        late.iter().all(|g| *g <= Duration::from_millis(200)),
        "{late:?}"
    );
}

#[test]
fn a_short_idle_timeout_leaves_a_replica_soon_redialed() {
    // Connections that live 300 ms, under SETTLED: the backoff grows, but
    // not to seconds, so a call after a quiet spell does not wait long.
    let mut c = cluster(&[("a", FAST)], &["a"]);
    c.server_config.idle_timeout = Some(Duration::from_millis(300));
    c.drive_until(all_ready);
    c.run_for(Duration::from_secs(60));
    let times: Vec<_> = c.dialed.iter().map(|(t, _)| *t).collect();
    for gap in times.windows(2).map(|w| w[1] - w[0]) {
        assert!(gap < Duration::from_millis(500), "{gap:?}");
    }
}
