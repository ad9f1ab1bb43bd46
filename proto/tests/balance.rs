//! Balancer behaviour: fairness, load spread, and shard stability.

mod sim;

use sim::cluster::{Cluster, Kind};
use std::collections::BTreeMap;
use std::time::Duration;
use weft_proto::Rng;
use weft_proto::{
    Balancer, BalancerFn, CallOptions, LeastPending, PoolCallId, RoundRobin, ShardHash,
};
use weft_proto::{ReadyReplica, ReplicaId};

fn ready(ids: &[u64]) -> Vec<ReadyReplica> {
    ids.iter()
        .map(|&i| ReadyReplica::new(ReplicaId(i), &format!("r{i}"), 0))
        .collect()
}

fn pick_id(b: &mut dyn Balancer, set: &[ReadyReplica], opts: &CallOptions, rng: &mut Rng) -> u64 {
    set[b.pick(set, opts, rng).unwrap()].id().0
}

#[test]
fn round_robin_is_exactly_fair_and_survives_removals() {
    let mut rng = Rng::new(3);
    let mut rr = RoundRobin::new();
    let mut ids: Vec<u64> = (1..=5).collect();
    let mut next_id = 6;
    let opts = CallOptions::default();
    let mut last = None;
    for round in 0..200 {
        let set = ready(&ids);
        // A stable stretch of 3 full cycles: each replica exactly 3 times,
        // in id order, continuing after the last pick.
        let mut counts = BTreeMap::new();
        for _ in 0..3 * ids.len() {
            let id = pick_id(&mut rr, &set, &opts, &mut rng);
            if let Some(prev) = last {
                let expect = ids.iter().copied().find(|&i| i > prev).unwrap_or(ids[0]);
                assert_eq!(id, expect, "round {round}: after {prev} in {ids:?}");
            }
            last = Some(id);
            *counts.entry(id).or_insert(0) += 1;
        }
        assert!(
            counts.values().all(|&n| n == 3),
            "round {round}: {counts:?}"
        );
        // Change the set: drop a random replica (often the next in line,
        // the case tower#856 got wrong) and sometimes add one.
        if ids.len() > 1 {
            let victim = if round % 2 == 0 {
                ids.iter()
                    .copied()
                    .find(|&i| i > last.unwrap())
                    .unwrap_or(ids[0])
            } else {
                ids[rng.below(ids.len())]
            };
            ids.retain(|&i| i != victim);
        }
        if round % 3 != 0 || ids.len() < 2 {
            ids.push(next_id);
            next_id += 1;
        }
    }
}

#[test]
fn round_robin_starts_at_a_random_replica() {
    let set = ready(&[1, 2, 3, 4]);
    let firsts: std::collections::BTreeSet<u64> = (0..64)
        .map(|seed| {
            pick_id(
                &mut RoundRobin::new(),
                &set,
                &CallOptions::default(),
                &mut Rng::new(seed),
            )
        })
        .collect();
    assert_eq!(firsts.len(), 4);
}

#[test]
fn balancer_fn_gets_the_ready_set_and_the_options() {
    let mut b = BalancerFn::new(|ready: &[ReadyReplica], opts: &CallOptions| {
        Some(opts.shard_key as usize % ready.len())
    });
    let set = ready(&[10, 20, 30]);
    let opts = CallOptions {
        shard_key: 4,
        ..Default::default()
    };
    assert_eq!(pick_id(&mut b, &set, &opts, &mut Rng::new(0)), 20);
    // An index out of range is a refusal, not a panic.
    let mut bad = BalancerFn::new(|_: &[ReadyReplica], _: &CallOptions| Some(99));
    assert_eq!(bad.pick(&set, &opts, &mut Rng::new(0)), None);
}

#[test]
fn shard_hash_moves_about_one_nth_of_keys_and_only_to_the_new_replica() {
    let mut sh = ShardHash::new();
    let mut rng = Rng::new(0);
    let assign = |sh: &mut ShardHash, rng: &mut Rng, set: &[ReadyReplica]| -> Vec<u64> {
        (1..=10_000u64)
            .map(|k| {
                pick_id(
                    sh,
                    set,
                    &CallOptions {
                        shard_key: k,
                        ..Default::default()
                    },
                    rng,
                )
            })
            .collect()
    };
    let five = ready(&[1, 2, 3, 4, 5]);
    let before = assign(&mut sh, &mut rng, &five);
    let six = ready(&[1, 2, 3, 4, 5, 6]);
    let after = assign(&mut sh, &mut rng, &six);
    let moved: Vec<_> = before.iter().zip(&after).filter(|(a, b)| a != b).collect();
    let frac = moved.len() as f64 / 10_000.0;
    assert!((0.13..0.20).contains(&frac), "moved {frac} (1/6 = 0.167)");
    assert!(
        moved.iter().all(|(_, b)| **b == 6),
        "keys only move to the new replica"
    );
    // Removing replica 3 moves exactly its keys.
    let without3 = ready(&[1, 2, 4, 5, 6]);
    let later = assign(&mut sh, &mut rng, &without3);
    for (a, b) in after.iter().zip(&later) {
        assert_eq!(a != b, *a == 3);
    }
    // Key 0 falls back to round robin.
    let picks: Vec<u64> = (0..5)
        .map(|_| pick_id(&mut sh, &five, &CallOptions::default(), &mut rng))
        .collect();
    let mut sorted = picks.clone();
    sorted.sort();
    assert_eq!(sorted, [1, 2, 3, 4, 5]);
}

#[test]
fn least_pending_prefers_the_less_loaded_of_two() {
    let mut set = ready(&[1, 2]);
    set[0] = ReadyReplica::new(ReplicaId(1), "r1", 10);
    let mut rng = Rng::new(5);
    for _ in 0..100 {
        assert_eq!(
            pick_id(&mut LeastPending, &set, &CallOptions::default(), &mut rng),
            2
        );
    }
}

/// Keeps `concurrency` calls in flight on three replicas, one ten times
/// slower, and returns the mean over time of the slow replica's in-flight
/// calls minus the mean of the fast ones'.
fn imbalance(balancer: Box<dyn Balancer>) -> f64 {
    let fast = Kind::Live {
        delay: Duration::from_micros(500),
    };
    let slow = Kind::Live {
        delay: Duration::from_millis(5),
    };
    let mut c = Cluster::new(
        11,
        &[("fast1", fast), ("fast2", fast), ("slow", slow)],
        &["fast1", "fast2", "slow"],
        true,
        balancer,
    )
    .unwrap();
    c.drive_until(|c| {
        c.pool
            .replicas()
            .all(|(_, s, _)| s == weft_proto::ReplicaState::Idle)
    });
    let mut inflight: Vec<PoolCallId> = (0..30).map(|_| c.call(&CallOptions::default())).collect();
    let (mut sum, mut samples) = (0.0, 0);
    for _ in 0..3000 {
        c.step();
        inflight.retain(|id| c.result(*id).is_none());
        while inflight.len() < 30 {
            inflight.push(c.call(&CallOptions::default()));
        }
        let per: BTreeMap<&str, usize> = c.pool.replicas().map(|(a, _, n)| (a, n)).collect();
        sum += per["slow"] as f64 - (per["fast1"] + per["fast2"]) as f64 / 2.0;
        samples += 1;
    }
    sum / samples as f64
}

#[test]
fn least_pending_keeps_a_slow_replica_from_piling_up_calls() {
    let rr = imbalance(Box::new(RoundRobin::new()));
    let lp = imbalance(Box::new(LeastPending));
    println!("slow replica excess in-flight: round robin {rr:.1}, least pending {lp:.1}");
    assert!(
        rr > 10.0,
        "round robin piles calls on the slow replica: {rr}"
    );
    assert!(lp < rr / 3.0, "least pending {lp} vs round robin {rr}");
}
