//! Picking a replica for each call.
//!
//! A [`Balancer`] sees the ready replicas (handshake done, not draining) in
//! a stable order - by [`ReplicaId`], which grows with each new replica -
//! with each one's address and calls in flight, and returns an index into
//! that slice. Balancers get the pool's seeded [`Rng`], so their choices are
//! as deterministic as the rest of the core.

use crate::CallOptions;
use crate::rng::Rng;
use std::fmt;
use std::sync::Arc;

/// Identity of a replica within one pool; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ReplicaId(pub u64);

/// A replica the balancer may pick.
#[derive(Debug, Clone)]
pub struct ReadyReplica {
    pub(crate) id: ReplicaId,
    pub(crate) addr: Arc<str>,
    pub(crate) addr_hash: u64,
    pub(crate) in_flight: usize,
    /// Where the pool keeps this replica.
    pub(crate) slot: usize,
}

impl ReadyReplica {
    /// A replica view, for testing balancers outside a pool.
    pub fn new(id: ReplicaId, addr: &str, in_flight: usize) -> Self {
        ReadyReplica {
            id,
            addr_hash: addr_hash(addr),
            addr: addr.into(),
            in_flight,
            slot: usize::MAX,
        }
    }

    /// Stable identity, increasing with creation order.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The endpoint address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Calls in flight on this replica.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }
}

/// Chooses a replica for a call.
///
/// A balancer of your own: prefer replicas whose address says they are in
/// the caller's zone, least loaded first, and otherwise any.
///
/// ```
/// use weft_proto::{Balancer, CallOptions, ReadyReplica, Rng};
///
/// struct SameZone(&'static str);
///
/// impl Balancer for SameZone {
///     fn pick(&mut self, ready: &[ReadyReplica], _: &CallOptions, rng: &mut Rng) -> Option<usize> {
///         let local = (0..ready.len())
///             .filter(|&i| ready[i].addr().contains(self.0))
///             .min_by_key(|&i| ready[i].in_flight());
///         Some(local.unwrap_or_else(|| rng.below(ready.len())))
///     }
/// }
/// # let _ = SameZone("zone-a");
/// ```
pub trait Balancer: Send {
    /// Index into `ready` (never empty) of the replica for this call, or
    /// `None` to make the call wait for a change in the ready set.
    fn pick(&mut self, ready: &[ReadyReplica], opts: &CallOptions, rng: &mut Rng) -> Option<usize>;
}

/// Each ready replica in turn.
///
/// It remembers the id of the replica it picked last and continues with the
/// next id, not with a position: removing or adding replicas never makes it
/// skip one or pick one twice in a row (the failure of tower#856). The
/// first pick starts at a random replica so that many clients do not all
/// start on the same one.
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    last: Option<ReplicaId>,
}

impl RoundRobin {
    /// A new round robin.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for RoundRobin {
    fn pick(&mut self, ready: &[ReadyReplica], _: &CallOptions, rng: &mut Rng) -> Option<usize> {
        let i = match self.last {
            None => rng.below(ready.len()),
            // `ready` is sorted by id: the first id after the last pick.
            Some(last) => match ready.partition_point(|r| r.id <= last) {
                i if i == ready.len() => 0,
                i => i,
            },
        };
        self.last = Some(ready[i].id);
        Some(i)
    }
}

/// A balancer written as a closure over the ready replicas and the call's
/// options, like Go's `BalancerFunc`.
///
/// ```
/// use weft_proto::BalancerFn;
/// // Always the replica with the fewest calls in flight.
/// let b = BalancerFn::new(|ready, _opts| {
///     (0..ready.len()).min_by_key(|&i| ready[i].in_flight())
/// });
/// # let _ = b;
/// ```
pub struct BalancerFn<F>(F);

impl<F> BalancerFn<F>
where
    F: FnMut(&[ReadyReplica], &CallOptions) -> Option<usize> + Send,
{
    /// Wraps `f`.
    pub fn new(f: F) -> Self {
        BalancerFn(f)
    }
}

impl<F> fmt::Debug for BalancerFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BalancerFn")
    }
}

impl<F> Balancer for BalancerFn<F>
where
    F: FnMut(&[ReadyReplica], &CallOptions) -> Option<usize> + Send,
{
    fn pick(&mut self, ready: &[ReadyReplica], opts: &CallOptions, _: &mut Rng) -> Option<usize> {
        (self.0)(ready, opts).filter(|&i| i < ready.len())
    }
}

/// Power of two choices: of two replicas drawn at random, the one with
/// fewer calls in flight. Nearly as good as the global minimum at a
/// fraction of the cost, and it does not stampede the least loaded replica.
#[derive(Debug, Default, Clone)]
pub struct LeastPending;

impl Balancer for LeastPending {
    fn pick(&mut self, ready: &[ReadyReplica], _: &CallOptions, rng: &mut Rng) -> Option<usize> {
        let n = ready.len();
        if n == 1 {
            return Some(0);
        }
        let a = rng.below(n);
        let b = (a + 1 + rng.below(n - 1)) % n; // distinct from a
        Some(if ready[b].in_flight < ready[a].in_flight {
            b
        } else {
            a
        })
    }
}

/// Rendezvous (highest random weight) hashing on `shard_key`: each key goes
/// to the replica whose hash with the key is highest, so adding a replica
/// moves only the keys it wins (about 1/n) and removing one moves only its
/// own keys. Calls with `shard_key` 0 go round robin.
#[derive(Debug, Default, Clone)]
pub struct ShardHash {
    fallback: RoundRobin,
}

impl ShardHash {
    /// A new shard hash balancer.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Balancer for ShardHash {
    fn pick(&mut self, ready: &[ReadyReplica], opts: &CallOptions, rng: &mut Rng) -> Option<usize> {
        if opts.shard_key == 0 {
            return self.fallback.pick(ready, opts, rng);
        }
        (0..ready.len()).max_by_key(|&i| (mix(opts.shard_key ^ ready[i].addr_hash), ready[i].id))
    }
}

/// A fixed 64-bit hash of an address (FNV-1a, then mixed): stable across
/// processes, so every client shards keys the same way.
pub(crate) fn addr_hash(addr: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in addr.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    mix(h)
}

/// The SplitMix64 finaliser: a bijection that scrambles every bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
