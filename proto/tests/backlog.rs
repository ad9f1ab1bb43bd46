//! A server that stops reading: the client bounds what it queues for the
//! connection (`ConnConfig::max_request_backlog`), and the pool places
//! calls elsewhere while the connection is congested.

mod sim;

use bytes::Bytes;
use sim::cluster::{Cluster, Kind};
use std::time::{Duration, Instant};
use weft_proto::{CallError, CallOptions, ClientConn, ClientEvent, ConnConfig, FrameDecoder};
use weft_proto::{Message, MethodKey, Readiness, RoundRobin};

const BACKLOG: usize = 4096;
const ARGS: usize = 1024;
/// A 1 KiB request's frame: frame header, request header (its length,
/// method key, deadline, no trace, no metadata), arguments.
const REQUEST: usize = 16 + 4 + 16 + 8 + 1 + 1 + ARGS;

fn config() -> ConnConfig {
    ConnConfig {
        max_request_backlog: BACKLOG,
        ..ConnConfig::default()
    }
}

/// A client connection past its handshake.
fn connected(now: Instant) -> ClientConn {
    let mut conn = ClientConn::new(now, config());
    let mut out = Vec::new();
    conn.drain_transmit(&mut out);
    conn.handle_input(
        now,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0],
    );
    assert!(matches!(
        conn.poll_event(),
        Some(ClientEvent::Connected { .. })
    ));
    conn
}

/// The requests in `bytes`: id and deadline header.
fn requests(bytes: &[u8]) -> Vec<(u64, i64)> {
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(bytes);
    std::iter::from_fn(|| dec.next_message())
        .map(|m| match m.unwrap() {
            Message::Request { id, header, .. } => (id, header.deadline_micros),
            other => panic!("not a request: {other:?}"),
        })
        .collect()
}

fn start(conn: &mut ClientConn, now: Instant, opts: &CallOptions) -> weft_proto::CallId {
    let args = Bytes::from(vec![7u8; ARGS]);
    conn.start_call(now, MethodKey::new("weft.Test", "Echo"), args, opts)
}

/// The transport takes `n` bytes.
fn take(conn: &mut ClientConn, now: Instant, n: usize, wire: &mut Vec<u8>) {
    wire.extend_from_slice(&conn.transmit().first_chunk()[..n]);
    conn.advance_transmit(now, n);
}

#[test]
fn requests_past_the_backlog_wait_unencoded_and_go_in_order() {
    let now = Instant::now();
    let mut conn = connected(now);
    let ids: Vec<_> = (0..20)
        .map(|_| start(&mut conn, now, &CallOptions::default()))
        .collect();
    // Four requests take more than 4 KiB (the fourth is let past the
    // bound); the other 16 wait.
    assert_eq!(conn.transmit().len(), 4 * REQUEST);
    assert!(conn.is_congested());
    // Each time the transport takes bytes and the queue is back within its
    // bound, one more is queued.
    let mut wire = Vec::new();
    take(&mut conn, now, REQUEST / 2, &mut wire);
    assert_eq!(conn.transmit().len(), 4 * REQUEST + REQUEST / 2);
    take(&mut conn, now, 10, &mut wire);
    assert_eq!(conn.transmit().len(), 4 * REQUEST + REQUEST / 2 - 10);
    take(&mut conn, now, REQUEST, &mut wire);
    assert_eq!(conn.transmit().len(), 4 * REQUEST + REQUEST / 2 - 10);
    while conn.is_congested() {
        let n = conn.transmit().first_chunk().len();
        take(&mut conn, now, n, &mut wire);
        assert!(conn.transmit().len() <= BACKLOG + REQUEST);
    }
    conn.drain_transmit(&mut wire);
    // Every request went, once, in start order.
    let sent: Vec<u64> = requests(&wire).iter().map(|r| r.0).collect();
    let want: Vec<u64> = ids.iter().map(|id| id.0).collect();
    assert_eq!(sent, want);
}

#[test]
fn a_waiting_request_that_ends_is_never_sent() {
    let mut now = Instant::now();
    let mut conn = connected(now);
    let soon = CallOptions {
        deadline: Some(now + Duration::from_millis(10)),
        ..CallOptions::default()
    };
    let later = CallOptions {
        deadline: Some(now + Duration::from_secs(10)),
        ..CallOptions::default()
    };
    let sent: Vec<_> = (0..4).map(|_| start(&mut conn, now, &later)).collect();
    let cancelled = start(&mut conn, now, &later);
    let expired = start(&mut conn, now, &soon);
    let last = start(&mut conn, now, &later);
    assert!(conn.is_congested());
    // Neither ends with a frame: they were never sent.
    let before = conn.transmit().len();
    assert!(conn.cancel(now, cancelled));
    assert_eq!(
        conn.transmit().len(),
        before,
        "no cancel for an unsent call"
    );
    now += Duration::from_secs(1);
    conn.handle_timeout(now);
    let ended: Vec<_> = std::iter::from_fn(|| conn.poll_event())
        .map(|e| match e {
            ClientEvent::Done { id, result } => (id, result),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        ended,
        vec![
            (cancelled, Err(CallError::Cancelled)),
            (expired, Err(CallError::DeadlineExceeded)),
        ]
    );
    let mut wire = Vec::new();
    conn.drain_transmit(&mut wire);
    let reqs = requests(&wire);
    let ids: Vec<u64> = reqs.iter().map(|r| r.0).collect();
    let mut want: Vec<u64> = sent.iter().map(|id| id.0).collect();
    want.push(last.0);
    assert_eq!(ids, want);
    // The deadline a waiting request carries is what was left when it went
    // out, not when it was started.
    assert_eq!(reqs[0].1, 10_000_000);
    assert_eq!(reqs[4].1, 9_000_000);
}

#[test]
fn waiting_requests_of_a_failed_connection_end_as_never_sent() {
    let now = Instant::now();
    let mut conn = connected(now);
    let queued: Vec<_> = (0..4)
        .map(|_| start(&mut conn, now, &CallOptions::default()))
        .collect();
    let waiting: Vec<_> = (0..2)
        .map(|_| start(&mut conn, now, &CallOptions::default()))
        .collect();
    conn.handle_transport_closed(now, "network broke");
    let ended: Vec<_> = std::iter::from_fn(|| conn.poll_event())
        .filter_map(|e| match e {
            ClientEvent::Done { id, result } => Some((id, result.unwrap_err())),
            _ => None,
        })
        .collect();
    let broke = weft_proto::ConnError::Transport("network broke".into());
    let want: Vec<_> = queued
        .iter()
        .map(|id| (*id, CallError::Connection(broke.clone())))
        .chain(
            waiting
                .iter()
                .map(|id| (*id, CallError::NotSent(broke.clone()))),
        )
        .collect();
    assert_eq!(ended, want);
    assert!(ended[4].1.is_unprocessed() && !ended[0].1.is_unprocessed());
}

#[test]
fn a_waiting_request_carries_the_time_left_when_the_transport_takes_it() {
    let t0 = Instant::now();
    let mut conn = connected(t0);
    let opts = CallOptions {
        deadline: Some(t0 + Duration::from_secs(10)),
        ..CallOptions::default()
    };
    for _ in 0..5 {
        start(&mut conn, t0, &opts);
    }
    assert!(conn.is_congested());
    // Nothing else happens on the connection until its transport takes
    // bytes, three seconds on: the fifth request goes then.
    let mut wire = Vec::new();
    let t3 = t0 + Duration::from_secs(3);
    while conn.is_congested() {
        let n = conn.transmit().first_chunk().len();
        take(&mut conn, t3, n, &mut wire);
    }
    conn.drain_transmit(&mut wire);
    let deadlines: Vec<i64> = requests(&wire).iter().map(|r| r.1).collect();
    assert_eq!(
        deadlines,
        [10_000_000, 10_000_000, 10_000_000, 10_000_000, 7_000_000]
    );
}

#[test]
fn one_request_larger_than_the_backlog_still_goes() {
    let now = Instant::now();
    let mut conn = connected(now);
    let big = Bytes::from(vec![1u8; 4 * BACKLOG]);
    let key = MethodKey::new("weft.Test", "Echo");
    conn.start_call(now, key, big.clone(), &CallOptions::default());
    let one = conn.transmit().len();
    assert!(one > 4 * BACKLOG);
    assert!(conn.is_congested());
    conn.start_call(now, key, big, &CallOptions::default());
    assert_eq!(conn.transmit().len(), one, "the second waits");
}

fn cluster() -> Cluster {
    let live = Kind::Live {
        delay: Duration::from_micros(100),
    };
    let mut c = Cluster::with_config(
        3,
        &[("a", live), ("b", live)],
        &["a", "b"],
        true,
        Box::new(RoundRobin::new()),
        config(),
    )
    .unwrap();
    c.args = Bytes::from(vec![0u8; ARGS]);
    c.drive_until(|c| c.pool.readiness() == Readiness::Ready && c.live_conns("b").len() == 1);
    c.drive_until(|c| {
        c.pool
            .replicas()
            .all(|(_, s, _)| s == weft_proto::ReplicaState::Idle)
    });
    c
}

#[test]
fn calls_avoid_a_replica_that_stops_reading() {
    let mut c = cluster();
    let a = c.live_conns("a")[0];
    c.set_deaf("a", true);
    let ids: Vec<_> = (0..40).map(|_| c.call(&CallOptions::default())).collect();
    assert!(c.queued(a) <= BACKLOG + REQUEST, "{} queued", c.queued(a));
    c.drive_until(|c| ids.iter().filter(|id| c.result(**id).is_some()).count() >= 40 - 4);
    c.run_for(Duration::from_millis(50));
    // a took four (the last one past its bound) and congested; the rest
    // went to b.
    let done: Vec<_> = ids.iter().filter(|id| c.result(**id).is_some()).collect();
    assert_eq!(done.len(), 36);
    assert!(done.iter().all(|id| c.served_by(**id) == "b"));
    assert_eq!(c.pool.readiness(), Readiness::Ready);

    // b stops reading too: both congested, calls wait for either.
    c.set_deaf("b", true);
    let more: Vec<_> = (0..20).map(|_| c.call(&CallOptions::default())).collect();
    c.run_for(Duration::from_millis(50));
    assert_eq!(c.pool.readiness(), Readiness::Congested);
    let b = c.live_conns("b")[0];
    assert!(c.queued(b) <= BACKLOG + REQUEST, "{} queued", c.queued(b));
    let waiting = more.iter().filter(|id| c.result(**id).is_none()).count();
    assert_eq!(waiting, 20);

    // a reads again: everything completes, nothing lost, none twice.
    c.set_deaf("a", false);
    c.drive_until(|c| {
        ids.iter()
            .chain(&more)
            .filter(|id| c.result(**id).is_none())
            .count()
            <= 4
    });
    c.set_deaf("b", false);
    c.drive_until(|c| ids.iter().chain(&more).all(|id| c.result(*id).is_some()));
    for id in ids.iter().chain(&more) {
        assert!(matches!(c.result(*id), Some(Ok(_))), "{:?}", c.result(*id));
    }
    assert_eq!(c.pool.readiness(), Readiness::Ready);
}

#[test]
fn calls_waiting_on_congestion_keep_their_deadline() {
    let mut c = cluster();
    c.set_deaf("a", true);
    c.set_deaf("b", true);
    let opts = CallOptions {
        deadline: Some(c.now + Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let ids: Vec<_> = (0..30).map(|_| c.call(&opts)).collect();
    c.run_for(Duration::from_millis(200));
    for id in &ids {
        assert_eq!(c.result(*id), Some(&Err(CallError::DeadlineExceeded)));
    }
    // The bytes of expired requests still queued go once the servers read
    // (their own deadlines end them there); the pool is ready again.
    c.set_deaf("a", false);
    c.set_deaf("b", false);
    c.drive_until(|c| c.pool.readiness() == Readiness::Ready);
    let (_, r) = c.call_and_wait(&CallOptions::default());
    assert!(r.is_ok(), "{r:?}");
}

#[test]
fn room_at_a_congested_replica_takes_a_backlog_not_every_waiting_call() {
    let mut c = cluster();
    c.set_deaf("a", true);
    c.set_deaf("b", true);
    let ids: Vec<_> = (0..60).map(|_| c.call(&CallOptions::default())).collect();
    c.run_for(Duration::from_millis(10));
    assert_eq!(c.pool.readiness(), Readiness::Congested);
    // a's socket takes two requests, then stalls again. The router places
    // what a backlog holds there and waits for the link's word before
    // placing more, rather than every waiting call at once.
    c.set_room("a", 2 * REQUEST);
    c.run_for(Duration::from_millis(10));
    let a = c.live_conns("a")[0];
    assert!(c.queued(a) <= BACKLOG + REQUEST, "{} queued", c.queued(a));
    // b reads again: what waits goes there.
    c.set_deaf("b", false);
    c.run_for(Duration::from_millis(50));
    let stuck = ids.iter().filter(|id| c.result(**id).is_none()).count();
    // Four placed on a at first (its link's bound), and for its room the
    // first to take the router's count of request bytes past the bound
    // (4 x 1070 > 4096), less the two it answered.
    assert_eq!(stuck, 4 + 4 - 2, "calls left on the stalled replica");
    c.set_deaf("a", false);
    c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
    for id in &ids {
        assert!(matches!(c.result(*id), Some(Ok(_))), "{:?}", c.result(*id));
    }
}

#[test]
fn calls_with_empty_arguments_count_against_the_backlog_too() {
    // Each request is then its frame and header alone: 46 bytes.
    const EMPTY: usize = 16 + 4 + 16 + 8 + 1 + 1;
    let per_backlog = BACKLOG / EMPTY + 1;
    let mut c = cluster();
    c.args = Bytes::new();
    c.set_deaf("a", true);
    c.set_deaf("b", true);
    let ids: Vec<_> = (0..1000).map(|_| c.call(&CallOptions::default())).collect();
    c.run_for(Duration::from_millis(10));
    assert_eq!(c.pool.readiness(), Readiness::Congested);
    c.set_room("a", 2 * EMPTY);
    c.run_for(Duration::from_millis(10));
    c.set_deaf("b", false);
    c.run_for(Duration::from_millis(50));
    // Counting argument bytes alone, room at a took every waiting call.
    let stuck = ids.iter().filter(|id| c.result(**id).is_none()).count();
    assert!(
        stuck <= 2 * per_backlog,
        "{stuck} calls left on the stalled replica"
    );
    c.set_deaf("a", false);
    c.drive_until(|c| ids.iter().all(|id| c.result(*id).is_some()));
    for id in &ids {
        assert!(matches!(c.result(*id), Some(Ok(_))), "{:?}", c.result(*id));
    }
}

#[test]
fn a_call_still_waiting_in_a_link_that_fails_goes_to_another_replica() {
    let mut c = cluster();
    c.set_deaf("a", true);
    c.set_deaf("b", true);
    let ids: Vec<_> = (0..60).map(|_| c.call(&CallOptions::default())).collect();
    c.run_for(Duration::from_millis(10));
    // Room for two at a: the router places four more there; the link
    // queues what fits under its bound and keeps the rest waiting.
    c.set_room("a", 2 * REQUEST);
    c.run_for(Duration::from_millis(10));
    c.set_deaf("b", false);
    c.run_for(Duration::from_millis(50));
    let stuck: Vec<_> = ids
        .iter()
        .filter(|id| c.result(**id).is_none())
        .copied()
        .collect();
    assert_eq!(stuck.len(), 6);
    let a = c.live_conns("a")[0];
    c.break_conn(a);
    c.drive_until(|c| stuck.iter().all(|id| c.result(*id).is_some()));
    // Those in a's queue may have gone out: they fail. The waiting ones
    // never did: b serves them.
    let served_by_b = stuck
        .iter()
        .filter(|id| matches!(c.result(**id), Some(Ok(_))) && c.served_by(**id) == "b")
        .count();
    let failed = stuck
        .iter()
        .filter(|id| matches!(c.result(**id), Some(Err(CallError::Connection(_)))))
        .count();
    assert!(served_by_b >= 1, "{served_by_b} re-placed");
    assert_eq!(served_by_b + failed, 6);
}
