//! Deadlines of calls, earliest first.

use crate::idmap::IdMap;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// A min-heap of `(deadline, call id)` with lazy deletion: a call that ends
/// early leaves its entry behind, skipped when it surfaces. The heap is
/// compacted when stale entries outnumber live calls, so memory follows the
/// number of calls in flight rather than the number ever started.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u64)>>,
}

impl Deadlines {
    pub(crate) fn push<V>(&mut self, at: Instant, id: u64, live: &IdMap<V>) {
        if self.heap.len() >= 64 && self.heap.len() >= 2 * live.len() {
            self.heap.retain(|Reverse((_, id))| live.contains_key(id));
        }
        self.heap.push(Reverse((at, id)));
    }

    /// The earliest entry, possibly stale: waking early is harmless.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Pops the next entry due at or before `now`: `(deadline, id)`. The
    /// caller checks the deadline still belongs to the call with that id.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, u64)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.heap.clear();
    }
}
