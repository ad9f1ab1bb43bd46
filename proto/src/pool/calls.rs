//! Calls: placement on a replica, waiting, retries and deadlines.

use super::router::{Router, Timer};
use super::{Command, ConnId, PoolCallId, PoolEvent, ReplicaState};
use crate::MethodKey;
use crate::call::{CallError, CallOptions};
use crate::frame::HEADER_LEN;
use crate::header::HeaderFields;
use crate::timer::later;
use bytes::Bytes;
use std::time::Instant;

#[derive(Debug)]
pub(super) struct PoolCall {
    method: MethodKey,
    args: Bytes,
    opts: CallOptions,
    /// Replica slot and connection, while placed.
    pub(super) placed: Option<(usize, ConnId)>,
    /// Set while waiting to be retried.
    retry_at: Option<Instant>,
    attempt: u32,
    /// Why the last attempt failed, for a retried call: what its deadline
    /// error says, if the deadline comes before another attempt succeeds.
    last_failure: Option<String>,
}

impl PoolCall {
    pub(super) fn new(method: MethodKey, args: Bytes, opts: CallOptions) -> Self {
        PoolCall {
            method,
            args,
            opts,
            placed: None,
            retry_at: None,
            attempt: 0,
            last_failure: None,
        }
    }

    fn waiting(&self) -> bool {
        self.placed.is_none() && self.retry_at.is_none()
    }

    /// Bytes its request takes in a link's transmit queue (the deadline
    /// is a fixed-size field, so the time it goes out does not matter):
    /// what the router charges a replica it places the call on, so that
    /// calls with empty arguments count too.
    fn request_len(&self) -> usize {
        let fields = HeaderFields {
            method: self.method,
            deadline_micros: 0,
            trace: self.opts.trace.as_ref(),
            metadata: self.opts.metadata.as_ref(),
        };
        HEADER_LEN + 4 + fields.encoded_len() + self.args.len()
    }

    /// Fails at once rather than waiting when no replica is reachable.
    fn fails_fast(&self) -> bool {
        !(self.opts.wait_for_ready || self.opts.retry)
    }
}

impl Router {
    /// Places call `id` on a replica the balancer picks. False if the
    /// call still waits for one; true if it was placed, or failed because
    /// the balancer panicked.
    pub(super) fn try_place(&mut self, id: u64) -> bool {
        if self.ready.is_empty() {
            return false;
        }
        let call = self.calls.get(&id).expect("live call");
        // The balancer may be the application's code. A panic in it must
        // not unwind through the router, whose state the driver keeps
        // under a lock the panic would poison for every other call: it
        // fails this call, before anything was changed for it.
        let (balancer, ready, rng) = (&mut self.balancer, &self.ready, &mut self.rng);
        let picked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            balancer.pick(ready, &call.opts, rng)
        }));
        let picked = match picked {
            Ok(picked) => picked,
            Err(payload) => {
                let msg = crate::panic_text(payload.as_ref()).to_owned();
                // The payload's own drop could panic too.
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(payload)));
                self.finish(id, Err(CallError::BalancerPanicked(msg)));
                return true;
            }
        };
        let Some(i) = picked else {
            return false;
        };
        let Some(slot) = self.ready.get(i).map(|e| e.slot) else {
            return false;
        };
        let backlog = self.config.conn.max_request_backlog;
        let r = self.replicas[slot].as_mut().expect("ready replica");
        let conn = r.conn.expect("a ready replica has a connection");
        r.calls.insert(id, ());
        if r.state == ReplicaState::Idle {
            r.state = ReplicaState::Active;
        }
        r.placed_bytes = r.placed_bytes.saturating_add(call.request_len());
        let full = r.placed_bytes > backlog;
        if full {
            // Until the link says how much of it went out.
            r.congested = true;
        }
        self.ready[i].in_flight += 1;
        if full {
            self.ready.remove(i);
        }
        let call = self.calls.get_mut(&id).expect("live call");
        call.placed = Some((slot, conn));
        call.retry_at = None;
        // Every call keeps its metadata: even one that is never retried is
        // placed again if its server goes away without running it.
        let opts = call.opts.clone();
        let start = Command::Start {
            call: PoolCallId(id),
            method: call.method,
            args: call.args.clone(),
            opts,
        };
        self.commands.push_back((conn, start));
        if full {
            self.commands.push_back((conn, Command::ReportCongestion));
        }
        true
    }

    /// A call no replica took: it waits, or fails at once if it fails fast
    /// and no replica is reachable.
    pub(super) fn wait_or_fail(&mut self, id: u64) {
        if self.calls.get(&id).is_some_and(PoolCall::fails_fast)
            && let Some(reason) = self.unreachable()
        {
            return self.finish(id, Err(CallError::Unreachable(reason)));
        }
        self.waiting.push_back(id);
    }

    /// Every replica is failing: waiting calls that fail fast end now.
    pub(super) fn fail_fast_waiting(&mut self) {
        let Some(reason) = self.unreachable() else {
            return;
        };
        let failing: Vec<u64> = self
            .waiting
            .iter()
            .copied()
            .filter(|id| {
                self.calls
                    .get(id)
                    .is_some_and(|c| c.waiting() && c.fails_fast())
            })
            .collect();
        for id in failing {
            self.finish(id, Err(CallError::Unreachable(reason.clone())));
        }
    }

    /// Offers every waiting call to the balancer once.
    pub(super) fn place_waiting(&mut self) {
        for _ in 0..self.waiting.len() {
            let Some(id) = self.waiting.pop_front() else {
                break;
            };
            let waiting = self.calls.get(&id).is_some_and(PoolCall::waiting);
            if waiting && !self.try_place(id) {
                self.waiting.push_back(id);
            }
        }
    }

    /// A placed call that its server did not run (goaway): placed again at
    /// once, on another replica or waiting for one, without counting as a
    /// retry.
    pub(super) fn replace(&mut self, id: u64) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.placed = None;
        if !self.try_place(id) {
            self.wait_or_fail(id);
        }
    }

    /// A placed call ended on its connection: finish it, or retry it.
    pub(super) fn call_ended(&mut self, id: u64, result: Result<Bytes, CallError>) {
        let Some(call) = self.calls.get_mut(&id) else {
            return;
        };
        call.placed = None;
        let retryable = matches!(&result, Err(e) if e.is_communication() || e.is_unreachable());
        if !(retryable && call.opts.retry && !self.closed) {
            return self.finish(id, result);
        }
        if let Err(e) = &result {
            call.last_failure = Some(e.to_string());
        }
        let attempt = call.attempt;
        call.attempt = call.attempt.saturating_add(1);
        let at = later(self.now, self.config.backoff.delay(attempt, &mut self.rng));
        // A retry that cannot start before the deadline waits for the
        // deadline timer instead, which ends the call.
        let call = self.calls.get_mut(&id).expect("live call");
        call.retry_at = Some(at);
        if call.opts.deadline.is_none_or(|d| at < d) {
            self.push_timer(at, Timer::CallRetry(id));
        }
    }

    pub(super) fn finish(&mut self, id: u64, result: Result<Bytes, CallError>) {
        if self.calls.remove(&id).is_some() {
            self.events.push_back(PoolEvent::Done {
                id: PoolCallId(id),
                result,
            });
        }
    }

    pub(super) fn deadline_passed(&mut self, id: u64) {
        let Some(call) = self.calls.get(&id) else {
            return;
        };
        if let Some((_, conn)) = call.placed {
            let call = PoolCallId(id);
            self.commands.push_back((conn, Command::Expire { call }));
            return self.finish(id, Err(CallError::DeadlineExceeded));
        }
        // What the caller can act on: the replicas' failures, and this
        // call's own last one if it was being retried.
        let err = match (self.last_errors(), call.last_failure.as_deref()) {
            (Some(errors), Some(own)) => {
                CallError::DeadlineWaitingForReplica(format!("{errors}; last attempt: {own}"))
            }
            (Some(errors), None) => CallError::DeadlineWaitingForReplica(errors),
            (None, Some(own)) => {
                CallError::DeadlineWaitingForReplica(format!("last attempt: {own}"))
            }
            (None, None) => CallError::DeadlineExceeded,
        };
        self.finish(id, Err(err));
    }

    pub(super) fn retry_due(&mut self, id: u64) {
        let due = self
            .calls
            .get(&id)
            .is_some_and(|c| c.placed.is_none() && c.retry_at.is_some());
        if due {
            self.calls.get_mut(&id).expect("live call").retry_at = None;
            if !self.try_place(id) {
                self.wait_or_fail(id);
            }
        }
    }
}
