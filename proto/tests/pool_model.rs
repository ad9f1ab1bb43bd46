//! Model-based property test of the pool: random interleavings of endpoint
//! updates, dial outcomes, connection failures, call starts, cancels and
//! time. The cluster checks the replica invariants after every step; this
//! test checks that every call ends exactly once.

mod sim;

use proptest::prelude::*;
use sim::cluster::{Cluster, Kind};
use std::time::Duration;
use weft_proto::{CallOptions, LeastPending, PoolCallId, RoundRobin, ShardHash};

const NAMES: [&str; 6] = ["a", "b", "c", "d", "dead", "hang"];

#[derive(Debug, Clone)]
enum Op {
    SetEndpoints(u8),
    Call {
        deadline_us: Option<u32>,
        retry: bool,
        shard: u8,
    },
    Cancel(usize),
    Advance(u32),
    BreakConn(usize),
    Steps(u8),
    ServerDies(usize),
    ServerRevives(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<u8>().prop_map(Op::SetEndpoints),
        4 => (prop::option::of(0u32..50_000), any::<bool>(), 0u8..4)
            .prop_map(|(deadline_us, retry, shard)| Op::Call { deadline_us, retry, shard }),
        1 => any::<usize>().prop_map(Op::Cancel),
        2 => (0u32..20_000).prop_map(Op::Advance),
        1 => any::<usize>().prop_map(Op::BreakConn),
        3 => any::<u8>().prop_map(Op::Steps),
        1 => (0usize..4).prop_map(Op::ServerDies),
        1 => (0usize..4).prop_map(Op::ServerRevives),
    ]
}

fn live(us: u64) -> Kind {
    Kind::Live {
        delay: Duration::from_micros(us),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn pool_keeps_its_invariants(
        seed: u64,
        balancer in 0u8..3,
        ops in prop::collection::vec(op(), 1..120),
    ) {
        let servers = [("a", live(100)), ("b", live(2_000)), ("c", live(300)), ("d", live(10_000)), ("dead", Kind::Dead), ("hang", Kind::Hang)];
        let balancer: Box<dyn weft_proto::Balancer> = match balancer {
            0 => Box::new(RoundRobin::new()),
            1 => Box::new(LeastPending),
            _ => Box::new(ShardHash::new()),
        };
        let mut c = Cluster::new(seed, &servers, &["a", "dead"], false, balancer).unwrap();
        let mut calls: Vec<PoolCallId> = Vec::new();
        for op in &ops {
            match op {
                Op::SetEndpoints(mask) => {
                    let set: Vec<&str> = NAMES.iter().enumerate().filter(|(i, _)| mask & (1 << i) != 0).map(|(_, n)| *n).collect();
                    c.set_endpoints(&set);
                }
                Op::Call { deadline_us, retry, shard } => {
                    let opts = CallOptions {
                        deadline: deadline_us.map(|us| c.now + Duration::from_micros(us.into())),
                        retry: *retry,
                        shard_key: u64::from(*shard),
                        ..Default::default()
                    };
                    calls.push(c.call(&opts));
                }
                Op::Cancel(i) if !calls.is_empty() => {
                    let id = calls[i % calls.len()];
                    let now = c.now;
                    c.drain();
                    let ended_before = c.result(id).is_some();
                    let cancelled = c.pool.cancel(now, id);
                    prop_assert_eq!(cancelled, !ended_before);
                }
                Op::Advance(us) => c.run_for(Duration::from_micros((*us).into())),
                Op::BreakConn(i) => {
                    let conns: Vec<_> = NAMES.iter().flat_map(|n| c.live_conns(n)).collect();
                    if !conns.is_empty() {
                        c.break_conn(conns[i % conns.len()]);
                    }
                }
                Op::Steps(n) => {
                    for _ in 0..*n {
                        if !c.step() { break; }
                    }
                }
                Op::ServerDies(i) => {
                    // A crash: refuse new connections and drop open ones.
                    c.servers.get_mut(NAMES[*i]).unwrap().kind = Kind::Dead;
                    for conn in c.live_conns(NAMES[*i]) {
                        c.break_conn(conn);
                    }
                }
                Op::ServerRevives(i) => c.servers.get_mut(NAMES[*i]).unwrap().kind = live(200),
                _ => {}
            }
            c.pool.assert_invariants();
        }
        // Liveness: with one healthy endpoint, every call ends soon - placed
        // calls finish, waiting ones find the replica, retries land on it.
        c.servers.get_mut("a").unwrap().kind = live(100);
        c.set_endpoints(&["a"]);
        c.run_for(Duration::from_secs(10));
        for id in &calls {
            prop_assert!(c.result(*id).is_some(), "{:?} still pending with a healthy replica", id);
        }
        // Closing is then a no-op for calls; every call has ended exactly
        // once (`result` panics on a second end).
        let now = c.now;
        c.pool.close(now);
        c.run_for(Duration::from_millis(1));
        for id in &calls {
            prop_assert!(c.result(*id).is_some(), "{:?} never ended", id);
        }
        prop_assert_eq!(c.pool.pending_calls(), 0);
        prop_assert_eq!(c.pool.replicas().count(), 0);
    }
}
