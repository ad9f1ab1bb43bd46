//! The replica pool in a simulated cluster: Service Weaver's
//! reconnecting-connection scenarios (call_test.go), on a virtual clock.

mod sim;

use bytes::Bytes;
use sim::cluster::{Cluster, Kind};
use std::time::Duration;
use weft_proto::ReplicaState;
use weft_proto::{CallError, CallOptions, ConnError, RoundRobin};

const FAST: Kind = Kind::Live {
    delay: Duration::from_micros(100),
};

fn cluster(servers: &[(&str, Kind)], endpoints: &[&str], constant: bool) -> Cluster {
    Cluster::new(1, servers, endpoints, constant, Box::new(RoundRobin::new())).unwrap()
}

fn opts() -> CallOptions {
    CallOptions::default()
}

/// Service Weaver's behaviour: wait for a replica however they fail.
fn patient() -> CallOptions {
    CallOptions {
        wait_for_ready: true,
        ..opts()
    }
}

#[test]
fn multiple_endpoints_spread_calls() {
    let mut c = cluster(
        &[("a", FAST), ("b", FAST), ("c", FAST)],
        &["a", "b", "c"],
        true,
    );
    c.drive_until(|c| c.pool.replicas().all(|(_, s, _)| s == ReplicaState::Idle));
    let mut count = std::collections::BTreeMap::new();
    for _ in 0..100 {
        let (id, _) = c.call_and_wait(&opts());
        *count.entry(c.served_by(id)).or_insert(0) += 1;
    }
    assert_eq!(count.len(), 3);
    for (addr, n) in count {
        assert!((17..=66).contains(&n), "{addr} got {n} of 100");
    }
}

#[test]
fn changing_endpoints_moves_new_calls() {
    let mut c = cluster(&[("a", FAST), ("b", FAST)], &["a"], false);
    let (id, _) = c.call_and_wait(&opts());
    assert_eq!(c.served_by(id), "a");
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.replica_state("b") == ReplicaState::Idle);
    for _ in 0..5 {
        let (id, _) = c.call_and_wait(&opts());
        assert_eq!(c.served_by(id), "b");
    }
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Missing);
}

#[test]
fn no_endpoints_constant_is_unreachable() {
    let err = Cluster::new(1, &[], &[], true, Box::new(RoundRobin::new()))
        .err()
        .unwrap();
    assert!(err.is_unreachable(), "{err}");
}

#[test]
fn no_endpoints_non_constant_waits_for_some() {
    let mut c = cluster(&[("a", FAST)], &[], false);
    let id = c.call(&patient());
    c.run_for(Duration::from_millis(50));
    assert!(c.result(id).is_none(), "the call waits");
    c.set_endpoints(&["a"]);
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.served_by(id), "a");
}

#[test]
fn endpoints_retained_keep_their_connection() {
    let mut c = cluster(&[("a", FAST), ("b", FAST), ("c", FAST)], &["a", "b"], false);
    c.drive_until(|c| c.pool.replica_state("b") == ReplicaState::Idle);
    let b_conn = c.live_conns("b");
    c.set_endpoints(&["b", "c"]);
    c.drive_until(|c| c.pool.replica_state("c") == ReplicaState::Idle);
    assert_eq!(
        c.live_conns("b"),
        b_conn,
        "no reconnect for a retained endpoint"
    );
    assert_eq!(c.dialed.iter().filter(|(_, a)| a == "b").count(), 1);
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Missing);
}

#[test]
fn draining_lets_in_flight_calls_finish_then_closes() {
    let slow = Kind::Live {
        delay: Duration::from_millis(100),
    };
    let mut c = cluster(&[("a", slow), ("b", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let ids: Vec<_> = (0..5).map(|_| c.call(&opts())).collect();
    c.run_for(Duration::from_millis(10));
    let a_conn = c.live_conns("a");
    c.set_endpoints(&["b"]);
    c.run_for(Duration::from_millis(10));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Draining);
    // New calls avoid the draining replica.
    let (new, _) = c.call_and_wait(&opts());
    assert_eq!(c.served_by(new), "b");
    c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
    for id in ids {
        assert_eq!(
            c.served_by(id),
            "a",
            "in-flight calls finish on the draining replica"
        );
    }
    c.run_for(Duration::from_millis(1));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Missing);
    assert!(c.closed.contains(&a_conn[0]), "closed after its last call");
}

#[test]
fn draining_with_no_active_calls_closes_at_once() {
    let mut c = cluster(&[("a", FAST), ("b", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let a_conn = c.live_conns("a")[0];
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Missing);
    assert!(c.closed.contains(&a_conn));
}

#[test]
fn close_while_draining_ends_the_draining_calls() {
    let hang_calls = Kind::Live {
        delay: Duration::from_secs(3600),
    };
    let mut c = cluster(&[("a", hang_calls), ("b", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let id = c.call(&opts());
    c.run_for(Duration::from_millis(5));
    c.set_endpoints(&["b"]);
    c.run_for(Duration::from_millis(5));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Draining);
    let now = c.now;
    c.pool.close(now);
    c.pool.close(now);
    c.run_for(Duration::from_millis(1));
    let Some(Err(e)) = c.result(id) else { panic!() };
    assert!(
        e.is_communication() && e.to_string().contains("closed"),
        "{e}"
    );
    assert_eq!(c.pool.replicas().count(), 0);
    let (_, late) = c.call_and_wait(&opts());
    assert_eq!(late, Err(CallError::Connection(ConnError::Closed)));
}

#[test]
fn draining_replicas_are_remembered_until_they_close() {
    let slow = Kind::Live {
        delay: Duration::from_millis(100),
    };
    let mut c = cluster(&[("a", slow), ("b", slow), ("c", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let on_a = c.call(&opts());
    c.run_for(Duration::from_millis(1));
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.replica_state("b") == ReplicaState::Idle);
    let on_b = c.call(&opts());
    c.run_for(Duration::from_millis(1));
    c.set_endpoints(&["c"]);
    c.run_for(Duration::from_millis(1));
    // Two generations draining at once.
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Draining);
    assert_eq!(c.pool.replica_state("b"), ReplicaState::Draining);
    c.drive_until(|c| c.result(on_a).is_some() && c.result(on_b).is_some());
    assert_eq!(
        (c.served_by(on_a), c.served_by(on_b)),
        ("a".into(), "b".into())
    );
    c.run_for(Duration::from_millis(1));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Missing);
    assert_eq!(c.pool.replica_state("b"), ReplicaState::Missing);
}

#[test]
fn a_draining_replica_that_returns_is_active_on_the_same_connection() {
    let slow = Kind::Live {
        delay: Duration::from_millis(100),
    };
    let mut c = cluster(&[("a", slow), ("b", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let conn = c.live_conns("a");
    let id = c.call(&opts());
    c.run_for(Duration::from_millis(1));
    c.set_endpoints(&["b"]);
    c.run_for(Duration::from_millis(1));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Draining);
    c.set_endpoints(&["a", "b"]);
    c.run_for(Duration::from_millis(1));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Active);
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.live_conns("a"), conn, "same connection");
    assert_eq!(c.dialed.iter().filter(|(_, a)| a == "a").count(), 1);
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Idle);
}

#[test]
fn a_hanging_endpoint_is_not_used_before_its_handshake() {
    let mut c = cluster(
        &[("hang", Kind::Hang), ("live", FAST)],
        &["hang", "live"],
        true,
    );
    for _ in 0..20 {
        let (id, _) = c.call_and_wait(&opts());
        assert_eq!(c.served_by(id), "live");
    }
    assert_eq!(c.pool.replica_state("hang"), ReplicaState::Checking);
}

#[test]
fn partial_failure_dead_and_live_endpoint() {
    let mut c = cluster(
        &[("dead", Kind::Dead), ("live", FAST)],
        &["dead", "live"],
        true,
    );
    for _ in 0..20 {
        let (id, r) = c.call_and_wait(&opts());
        assert!(r.is_ok(), "{r:?}");
        assert_eq!(c.served_by(id), "live");
    }
    assert_eq!(c.pool.replica_state("dead"), ReplicaState::Disconnected);
}

#[test]
fn redials_back_off_exponentially_with_jitter_and_a_cap() {
    let mut c = cluster(&[("dead", Kind::Dead)], &["dead"], true);
    c.run_for(Duration::from_secs(60));
    let times: Vec<_> = c.dialed.iter().map(|(t, _)| *t).collect();
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > 20, "kept redialing: {}", gaps.len());
    // 10 ms x 1.3^n, less up to 40 %, plus the simulated dial latency.
    assert!(
        gaps[0] >= Duration::from_millis(6) && gaps[0] <= Duration::from_millis(11),
        "{:?}",
        gaps[0]
    );
    assert!(
        gaps[10] > gaps[0] * 5,
        "grows: {:?} vs {:?}",
        gaps[10],
        gaps[0]
    );
    assert!(
        gaps.iter()
            .all(|g| *g <= Duration::from_secs(5) + Duration::from_millis(1)),
        "capped"
    );
    assert!(
        gaps.iter()
            .rev()
            .take(5)
            .all(|g| *g >= Duration::from_secs(3)),
        "at the cap, less jitter"
    );
}

#[test]
fn backoff_resets_after_a_successful_call() {
    let mut c = cluster(&[("a", Kind::Dead)], &["a"], true);
    c.run_for(Duration::from_secs(2));
    let before = c.dialed.len();
    c.servers.get_mut("a").unwrap().kind = FAST;
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    assert!(c.dialed.len() > before);
    let (_, result) = c.call_and_wait(&opts());
    assert!(result.is_ok(), "{result:?}");
    // Break the proven connection: the redial is immediate, not backed off.
    let conn = c.live_conns("a")[0];
    let t0 = c.now;
    c.break_conn(conn);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    assert_eq!(
        c.dialed.last().unwrap().0,
        t0,
        "redialed at once after progress"
    );
}

#[test]
fn many_endpoint_changes_keep_calls_working() {
    let names = ["a", "b", "c", "d", "e"];
    let servers: Vec<_> = names.iter().map(|n| (*n, FAST)).collect();
    let mut c = cluster(&servers, &["a"], false);
    let mut rng = sim::Rng::new(99);
    for _ in 0..200 {
        let set: Vec<&str> = names
            .iter()
            .copied()
            .filter(|_| rng.range(0, 1) == 1)
            .collect();
        let set = if set.is_empty() { vec!["c"] } else { set };
        c.set_endpoints(&set);
        c.sync_endpoints();
        let (id, r) = c.call_and_wait(&opts());
        assert!(r.is_ok(), "{r:?}");
        assert!(
            set.contains(&c.served_by(id).as_str()),
            "served by a current endpoint"
        );
    }
}

#[test]
fn resolver_errors_are_retried() {
    let mut c = cluster(&[("a", FAST), ("b", FAST)], &["a"], false);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    c.resolver_failures = 3;
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.replica_state("b") == ReplicaState::Idle);
    assert!(
        c.resolves >= 4,
        "three failures then success: {}",
        c.resolves
    );
    let (id, _) = c.call_and_wait(&opts());
    assert_eq!(c.served_by(id), "b");
}

#[test]
fn retry_rides_out_broken_connections_without_retry_fails() {
    for retry in [false, true] {
        let mut c = cluster(
            &[(
                "a",
                Kind::Live {
                    delay: Duration::from_millis(1),
                },
            )],
            &["a"],
            true,
        );
        c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
        // The first connection breaks as soon as it carries the request.
        c.servers.get_mut("a").unwrap().fail_after = Some(21);
        let id = c.call(&CallOptions { retry, ..opts() });
        c.run_for(Duration::from_millis(5));
        c.servers.get_mut("a").unwrap().fail_after = None;
        c.drive_until(|c| c.result(id).is_some());
        match c.result(id).unwrap() {
            Ok(_) => assert!(retry, "succeeded without retry"),
            Err(e) => assert!(!retry && e.is_communication(), "{e}"),
        }
    }
}

#[test]
fn retry_stops_at_the_deadline() {
    let mut c = cluster(&[("a", FAST)], &["a"], true);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    c.servers.get_mut("a").unwrap().fail_after = Some(21);
    let deadline = c.now + Duration::from_millis(200);
    let (_, r) = c.call_and_wait(&CallOptions {
        retry: true,
        deadline: Some(deadline),
        ..opts()
    });
    // The deadline error says why the attempts failed.
    let err = r.unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    let CallError::DeadlineWaitingForReplica(why) = &err else {
        panic!("{err:?}")
    };
    assert!(why.starts_with("last attempt: "), "{why}");
    assert!(c.now <= deadline + Duration::from_millis(1));
}

#[test]
fn a_waiting_call_ends_at_its_deadline_or_on_cancel() {
    let mut c = cluster(&[], &[], false);
    let deadline = c.now + Duration::from_millis(30);
    let timed = c.call(&CallOptions {
        deadline: Some(deadline),
        ..patient()
    });
    let cancelled = c.call(&patient());
    let now = c.now;
    assert!(c.pool.cancel(now, cancelled));
    c.drive_until(|c| c.result(timed).is_some());
    assert_eq!(c.now, deadline);
    assert_eq!(c.result(timed), Some(&Err(CallError::DeadlineExceeded)));
    assert_eq!(c.result(cancelled), Some(&Err(CallError::Cancelled)));
}

#[test]
fn cancelling_a_placed_call_tells_its_server() {
    let slow = Kind::Live {
        delay: Duration::from_secs(10),
    };
    let mut c = cluster(&[("a", slow)], &["a"], true);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let id = c.call(&opts());
    c.run_for(Duration::from_millis(1));
    let now = c.now;
    assert!(c.pool.cancel(now, id));
    c.run_for(Duration::from_millis(1));
    assert_eq!(c.result(id), Some(&Err(CallError::Cancelled)));
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Idle);
}

#[test]
fn a_replacement_connection_is_not_stalled_by_its_predecessors_queued_output() {
    // Regression (found by pool_model): a call queues output on a's
    // connection, which breaks before the driver writes it; the redialed
    // connection's version frame must still be offered to the driver.
    let mut c = cluster(&[("a", FAST)], &["a"], true);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let first = c.call(&opts());
    let conn = c.live_conns("a")[0];
    c.break_conn(conn);
    let second = c.call(&patient());
    c.drive_until(|c| c.result(second).is_some());
    assert!(
        c.result(first)
            .unwrap()
            .as_ref()
            .unwrap_err()
            .is_communication()
    );
    assert_eq!(c.served_by(second), "a");
}

#[test]
fn a_call_fails_fast_with_each_endpoints_last_error_when_every_replica_fails() {
    let mut c = cluster(&[("a", Kind::Dead), ("b", Kind::Dead)], &["a", "b"], true);
    // Before any attempt has failed, a call waits for the first dials.
    let early = c.call(&opts());
    c.drive_until(|c| c.result(early).is_some());
    let err = c.result(early).unwrap().clone().unwrap_err();
    assert_eq!(
        err,
        CallError::Unreachable("a: connection refused; b: connection refused".into())
    );
    assert!(err.is_unreachable());
    // Once every replica has failed, a new call fails at once.
    let now = c.now;
    let late = c.call(&opts());
    c.drain();
    assert_eq!(c.now, now);
    assert_eq!(c.result(late), Some(&Err(err)));
}

#[test]
fn a_call_waits_for_one_replica_that_is_still_trying_while_another_fails() {
    let mut c = cluster(&[("a", Kind::Dead), ("b", FAST)], &["a", "b"], true);
    c.run_for(Duration::from_millis(50));
    let (id, result) = c.call_and_wait(&opts());
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(c.served_by(id), "b");
}

#[test]
fn a_patient_call_waits_and_its_deadline_error_names_the_failures() {
    let mut c = cluster(&[("a", Kind::Dead)], &["a"], true);
    let deadline = c.now + Duration::from_millis(300);
    let id = c.call(&CallOptions {
        deadline: Some(deadline),
        ..patient()
    });
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.now, deadline);
    let err = c.result(id).unwrap().clone().unwrap_err();
    assert_eq!(
        err,
        CallError::DeadlineWaitingForReplica("a: connection refused".into())
    );
    assert!(err.is_deadline_exceeded() && err.is_unreachable());
}

#[test]
fn a_retried_call_keeps_waiting_while_replicas_fail() {
    let mut c = cluster(&[("a", Kind::Dead)], &["a"], true);
    c.run_for(Duration::from_millis(50));
    let id = c.call(&CallOptions {
        retry: true,
        ..opts()
    });
    c.run_for(Duration::from_millis(200));
    assert!(c.result(id).is_none(), "a retried call waits");
    c.servers.get_mut("a").unwrap().kind = FAST;
    c.drive_until(|c| c.result(id).is_some());
    assert!(c.result(id).unwrap().is_ok());
}

#[test]
fn an_empty_endpoint_set_fails_fast() {
    let mut c = cluster(&[("a", FAST)], &[], false);
    let id = c.call(&opts());
    c.drain();
    assert_eq!(
        c.result(id),
        Some(&Err(CallError::Unreachable(
            "the resolver names no endpoints".into()
        )))
    );
}

#[test]
fn a_server_that_never_answers_the_version_fails_after_the_connect_timeout() {
    let mut c = cluster(&[("a", Kind::Hang)], &["a"], true);
    let t0 = c.now;
    let id = c.call(&opts());
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.now - t0, weft_proto::DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(
        c.result(id),
        Some(&Err(CallError::Unreachable(
            "a: transport failed: no version handshake within 5s".into()
        )))
    );
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Disconnected);
}

#[test]
fn connections_that_handshake_and_drop_back_off_like_failed_dials() {
    let mut c = cluster(&[("a", FAST)], &["a"], true);
    // Every connection closes as soon as its handshake is done.
    c.servers.get_mut("a").unwrap().close_after_handshake = true;
    c.run_for(Duration::from_secs(2));
    // 10 ms x 1.3^n backoff: about a dozen attempts in two seconds, where
    // resetting the backoff at each handshake redialed at once, every time.
    let dials = c.dialed.len();
    assert!((5..=20).contains(&dials), "{dials} dials in 2 s");
    assert_eq!(c.pool.replica_state("a"), ReplicaState::Disconnected);
}

#[test]
fn readiness_follows_the_replicas() {
    use weft_proto::Readiness;
    // Dialing: not ready yet, but a call would wait rather than fail.
    let mut c = cluster(&[("a", FAST), ("b", Kind::Dead)], &["a", "b"], false);
    assert_eq!(c.pool.readiness(), Readiness::Connecting);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    assert_eq!(c.pool.readiness(), Readiness::Ready);
    // Only the dead one left: a call would fail at once, with its cause.
    c.set_endpoints(&["b"]);
    c.drive_until(|c| c.pool.readiness() != Readiness::Ready);
    c.drive_until(|c| c.pool.readiness() != Readiness::Connecting);
    assert_eq!(
        c.pool.readiness(),
        Readiness::Unreachable("b: connection refused".into())
    );
    let now = c.now;
    c.pool.close(now);
    assert_eq!(c.pool.readiness(), Readiness::Closed);
}

#[test]
fn timeouts_and_backoffs_past_the_clocks_range_mean_never() {
    use weft_proto::{Backoff, PoolConfig};
    let config = PoolConfig {
        seed: 1,
        connect_timeout: Duration::MAX,
        backoff: Backoff {
            initial: Duration::MAX,
            max: Duration::MAX,
            ..Backoff::default()
        },
        ..PoolConfig::default()
    };
    let servers = [("hang", Kind::Hang), ("dead", Kind::Dead)];
    let mut c = Cluster::with_pool_config(
        &servers,
        &["hang", "dead"],
        true,
        Box::new(RoundRobin::new()),
        config,
    )
    .unwrap();
    // A call that waits for a replica ends at its own deadline: the
    // handshake never times out and the dead replica is never redialed.
    let t0 = c.now;
    let deadline = t0 + Duration::from_secs(1);
    let id = c.call(&CallOptions {
        deadline: Some(deadline),
        retry: true,
        ..patient()
    });
    c.drive_until(|c| c.result(id).is_some());
    assert_eq!(c.now, deadline);
    assert_eq!(
        c.result(id),
        Some(&Err(CallError::DeadlineWaitingForReplica(
            "dead: connection refused".into()
        )))
    );
    assert_eq!(c.dialed.len(), 2, "one dial each, no redial");
}

#[test]
fn a_transport_that_took_nothing_is_not_handed_out_again() {
    let mut c = cluster(&[("a", FAST)], &["a"], true);
    c.drive_until(|c| c.pool.replica_state("a") == ReplicaState::Idle);
    let now = c.now;
    c.pool.start_call(
        now,
        weft_proto::MethodKey::new("weft.Test", "Echo"),
        Bytes::new(),
        opts(),
    );
    let conn = c.pool.poll_transmit().expect("the request to write");
    assert!(!c.pool.transmit(conn).unwrap().is_empty());
    // The transport is full: a driver that reports it must not be handed
    // the same connection at once, or it spins.
    c.pool.advance_transmit(now, conn, 0);
    assert_eq!(c.pool.poll_transmit(), None);
}

/// A balancer that panics fails the call it was picking for, with the
/// panic's message, and nothing else: the calls before and after it, and
/// one that waited for a replica when it panicked, are served or failed
/// on their own.
#[test]
fn a_panicking_balancer_fails_only_the_call_it_picked_for() {
    let picky = weft_proto::BalancerFn::new(|_: &[weft_proto::ReadyReplica], o: &CallOptions| {
        assert!(o.shard_key != 13, "no replica for key {}", o.shard_key);
        Some(0)
    });
    let mut c = Cluster::new(1, &[("a", FAST)], &["a"], false, Box::new(picky)).unwrap();
    let key = |k| CallOptions {
        shard_key: k,
        wait_for_ready: true,
        ..opts()
    };
    // Started before the replica is ready: it waits, and is placed later.
    let early = c.call(&key(13));
    let (_, ok) = c.call_and_wait(&key(1));
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(
        c.result(early),
        Some(&Err(CallError::BalancerPanicked(
            "no replica for key 13".into()
        )))
    );
    let (_, bad) = c.call_and_wait(&key(13));
    let bad = bad.unwrap_err();
    assert_eq!(bad.kind(), "balancer");
    assert_eq!(
        bad.to_string(),
        "not sent: the balancer panicked: no replica for key 13"
    );
    let (id, ok) = c.call_and_wait(&key(2));
    assert!(ok.is_ok(), "{ok:?}");
    assert_eq!(c.served_by(id), "a");
}
