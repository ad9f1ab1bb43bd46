//! The one timer mechanism of the core: a queue of `(instant, key)`.
//!
//! Every timer in weft-proto - call deadlines on either side, call retries,
//! redials, resolver retries - is an entry here. Entries are never removed
//! early: a timer whose reason went away (the call ended, the replica left)
//! stays behind and its owner ignores it when it fires, which keeps
//! cancellation O(1). So that memory follows what is live rather than
//! everything ever scheduled, the owner compacts the queue, and the queue
//! tells it when that pays (stale entries outnumber live ones).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

/// `now + by`, or for a duration past the clock's range (a configured
/// `Duration::MAX`, say) the latest instant within a century: such a timer
/// never fires in practice, and nobody's arithmetic on it overflows.
pub(crate) fn later(now: Instant, by: Duration) -> Instant {
    if let Some(t) = now.checked_add(by) {
        return t;
    }
    let mut ahead = Duration::from_secs(100 * 365 * 24 * 60 * 60).min(by);
    loop {
        if let Some(t) = now.checked_add(ahead) {
            return t;
        }
        ahead /= 2;
    }
}

/// A min-heap of timers with lazy deletion.
#[derive(Debug)]
pub(crate) struct TimerQueue<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for TimerQueue<K> {
    fn default() -> Self {
        TimerQueue {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord + Copy> TimerQueue<K> {
    /// Schedules `key` at `at`. `live` counts the timers that still matter;
    /// when stale entries outnumber them, `still_live` filters the queue
    /// first (amortised O(1) per push).
    pub(crate) fn push(
        &mut self,
        at: Instant,
        key: K,
        live: usize,
        still_live: impl FnMut(&K) -> bool,
    ) {
        if self.heap.len() >= 64 && self.heap.len() >= 2 * live {
            self.compact(still_live);
        }
        self.heap.push(Reverse((at, key)));
    }

    /// Drops every entry `still_live` rejects.
    pub(crate) fn compact(&mut self, mut still_live: impl FnMut(&K) -> bool) {
        self.heap.retain(|Reverse((_, k))| still_live(k));
    }

    /// The earliest entry, possibly stale: waking early is harmless.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the next entry due at or before `now`. The owner checks that
    /// the reason for it still holds.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_time_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        for (ms, k) in [(30, 3u64), (10, 1), (20, 2)] {
            q.push(t0 + Duration::from_millis(ms), k, 3, |_| true);
        }
        assert_eq!(q.next(), Some(t0 + Duration::from_millis(10)));
        assert_eq!(q.pop_due(t0), None);
        let due: Vec<u64> = std::iter::from_fn(|| q.pop_due(t0 + Duration::from_millis(25)))
            .map(|(_, k)| k)
            .collect();
        assert_eq!(due, [1, 2]);
    }

    #[test]
    fn stale_entries_are_compacted_so_memory_follows_live_timers() {
        let t0 = Instant::now();
        let mut q = TimerQueue::default();
        // One live timer at a time, each new one making the last stale.
        for k in 0..10_000u64 {
            q.push(t0 + Duration::from_secs(k), k, 1, |&x| x == k - 1);
        }
        assert!(q.len() <= 65, "queue grew to {}", q.len());
    }
}
