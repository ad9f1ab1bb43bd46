//! Keeping calls in flight: a closed loop (each worker starts its next
//! call when one ends) or an open loop (calls start at a fixed rate, and
//! each one's latency runs from when it should have started, so a server
//! that falls behind shows it instead of slowing the load down).

use super::stats::Record;
use crate::Failed;
use crate::target::Target;
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use weft_proto::{CallOptions, MethodKey};

/// Shared by the workers and the phase loop.
pub struct Control {
    /// Past the warmup: calls are recorded.
    pub measuring: AtomicBool,
    /// Time to stop starting calls.
    pub stop: AtomicBool,
    /// Measured calls left to start, with `-n`.
    remaining: Option<AtomicI64>,
    /// Measured calls ended, for the progress bar.
    pub ended: AtomicU64,
}

impl Control {
    pub fn new(requests: Option<u64>) -> Arc<Control> {
        Arc::new(Control {
            measuring: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            remaining: requests.map(|n| AtomicI64::new(n.min(i64::MAX as u64) as i64)),
            ended: AtomicU64::new(0),
        })
    }

    /// Whether to start another call: `Some(measured)`, or `None` to stop.
    fn next(&self) -> Option<bool> {
        if self.stop.load(Ordering::Relaxed) {
            return None;
        }
        if !self.measuring.load(Ordering::Relaxed) {
            return Some(false);
        }
        if let Some(r) = &self.remaining
            && r.fetch_sub(1, Ordering::Relaxed) <= 0
        {
            return None;
        }
        Some(true)
    }

    /// Records a call that took from `t0` to `t1`. Closed loops pass the
    /// end of one call as the start of the next, so a call costs the bench
    /// one clock read, as the raw ceiling's batches do (two were 5 % of the
    /// tokio client's samples at 128 in flight).
    fn ended(
        &self,
        measured: bool,
        record: &mut Record,
        (t0, t1): (Instant, Instant),
        result: Result<Bytes, weft_proto::CallError>,
    ) {
        if !measured {
            return;
        }
        match result {
            Ok(_) => record.ok(t1.duration_since(t0).as_nanos() as u64),
            Err(e) => record.error(&e),
        }
        self.ended.fetch_add(1, Ordering::Relaxed);
    }
}

/// How long calls still running when the measured phase ends may take to
/// finish before their connections are closed under them (a server that
/// stopped answering must not hang the bench).
const STOP_GRACE: Duration = Duration::from_secs(5);

/// The longest an open loop sleeps before looking whether to stop, so a low
/// rate does not keep the bench running a whole interval past its end.
const STOP_CHECK: Duration = Duration::from_millis(50);

fn abandoned_note() {
    eprintln!(
        "weft bench: calls were still running {}s after the end; closed their connections",
        STOP_GRACE.as_secs()
    );
}

/// Sleeps until `at` or until `control` says stop; false if stopped.
fn pause_until(control: &Control, at: Instant) -> bool {
    while let Some(wait) = at.checked_duration_since(Instant::now()) {
        if control.stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(wait.min(STOP_CHECK));
    }
    true
}

/// What every worker needs.
#[derive(Clone)]
pub struct Job {
    pub addr: Target,
    /// Client TLS settings for a TLS address.
    pub tls: Option<weft_tokio::tls::ClientTls>,
    pub key: MethodKey,
    pub name: &'static str,
    pub args: Bytes,
    pub concurrency: usize,
    pub connections: usize,
    /// Open loop: calls per second.
    pub rate: Option<f64>,
}

impl Job {
    fn opts(&self) -> CallOptions {
        CallOptions {
            method_name: Some(self.name),
            ..CallOptions::default()
        }
    }

    /// When the `i`-th call of an open loop should start; `None` past what
    /// the clock can hold (a rate so low the call would never start).
    fn intended(&self, start: Instant, i: u64) -> Option<Instant> {
        let rate = self.rate.expect("open loop");
        Duration::try_from_secs_f64(i as f64 / rate)
            .ok()
            .and_then(|d| start.checked_add(d))
    }
}

/// Runs the load on weft-tokio until `control` says stop, with `phases`
/// on the calling thread; the merged record.
pub fn tokio_load(
    job: &Job,
    threads: Option<usize>,
    control: &Arc<Control>,
    phases: impl FnOnce(),
) -> Result<Record, Failed> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        builder.worker_threads(n.max(1));
    }
    let rt = builder
        .enable_all()
        .build()
        .map_err(|e| Failed(format!("runtime: {e}")))?;
    let mut conns = Vec::new();
    for _ in 0..job.connections {
        let conn = rt
            .block_on(crate::target::connect_tokio(
                &job.addr,
                job.tls.as_ref(),
                Default::default(),
            ))
            .map_err(|e| Failed(format!("connecting to {}: {e}", job.addr)))?;
        conns.push(conn);
    }
    let mut tasks = Vec::new();
    match job.rate {
        None => {
            for conn in &conns {
                for _ in 0..job.concurrency {
                    let (conn, job, control) = (conn.clone(), job.clone(), control.clone());
                    tasks.push(rt.spawn(async move {
                        let mut record = Record::new();
                        let mut t0 = Instant::now();
                        while let Some(measured) = control.next() {
                            let r = conn.call(job.key, job.args.clone(), job.opts()).await;
                            let t1 = Instant::now();
                            control.ended(measured, &mut record, (t0, t1), r);
                            t0 = t1;
                        }
                        record
                    }));
                }
            }
        }
        Some(_) => {
            let (job, control, conns) = (job.clone(), control.clone(), conns.clone());
            tasks.push(rt.spawn(async move {
                let record = Arc::new(Mutex::new(Record::new()));
                let limit = Arc::new(tokio::sync::Semaphore::new(job.concurrency));
                let start = Instant::now();
                let mut calls = Vec::new();
                for i in 0u64.. {
                    let Some(at) = job.intended(start, i) else {
                        break;
                    };
                    while Instant::now() < at && !control.stop.load(Ordering::Relaxed) {
                        let slice = at.min(Instant::now() + STOP_CHECK);
                        tokio::time::sleep_until(slice.into()).await;
                    }
                    let Some(measured) = control.next() else {
                        break;
                    };
                    // Waiting for a free slot is part of the latency.
                    let Ok(permit) = limit.clone().acquire_owned().await else {
                        break;
                    };
                    let conn = conns[i as usize % conns.len()].clone();
                    let (job, control, record) = (job.clone(), control.clone(), record.clone());
                    calls.push(tokio::spawn(async move {
                        let r = conn.call(job.key, job.args.clone(), job.opts()).await;
                        drop(permit);
                        let ended = (at, Instant::now());
                        control.ended(measured, &mut record.lock().expect("record"), ended, r);
                    }));
                    calls.retain(|c| !c.is_finished());
                }
                for c in calls {
                    let _ = c.await;
                }
                Arc::try_unwrap(record)
                    .ok()
                    .expect("every call ended")
                    .into_inner()
                    .expect("record")
            }));
        }
    }
    phases();
    let grace_end = tokio::time::Instant::now() + STOP_GRACE;
    let mut total = Record::new();
    let mut closed = false;
    for mut t in tasks {
        let done = rt.block_on(async { tokio::time::timeout_at(grace_end, &mut t).await });
        let joined = match done {
            Ok(joined) => joined,
            Err(_) => {
                if !closed {
                    closed = true;
                    abandoned_note();
                    conns.iter().for_each(weft_tokio::Connection::close);
                }
                rt.block_on(t)
            }
        };
        total.merge(joined.map_err(|e| Failed(format!("load task: {e}")))?);
    }
    for c in conns {
        c.close();
    }
    Ok(total)
}

/// Runs the load on weft-mio from plain threads until `control` says
/// stop, with `phases` on the calling thread; the merged record.
pub fn mio_load(
    job: &Job,
    threads: Option<usize>,
    spin: Duration,
    control: &Arc<Control>,
    phases: impl FnOnce(),
) -> Result<Record, Failed> {
    let clients = (0..job.connections)
        .map(|_| {
            let client =
                crate::target::connect_mio(&job.addr, job.tls.as_ref(), Default::default())
                    .map_err(|e| Failed(format!("connecting to {}: {e}", job.addr)))?;
            client.set_optimistic_spin(spin);
            Ok(client)
        })
        .collect::<Result<Vec<_>, Failed>>()?;
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        match job.rate {
            // A blocking client keeps calls in flight with threads, or with
            // `start` + `wait` from fewer threads. Up to 16 in flight (or
            // `threads`), one thread per call; beyond, 16 threads each keep
            // their share in flight and wait for the oldest.
            None => {
                let threads = caller_threads(job.concurrency, threads);
                for client in &clients {
                    for t in 0..threads {
                        let share =
                            job.concurrency / threads + usize::from(t < job.concurrency % threads);
                        workers.push(
                            scope.spawn(move || closed_mio_worker(client, job, control, share)),
                        );
                    }
                }
            }
            // A scheduler thread hands out start times; `concurrency`
            // threads make the calls.
            Some(_) => {
                let (tx, rx) = mpsc::channel::<(Instant, bool)>();
                let rx = Arc::new(Mutex::new(rx));
                for w in 0..job.concurrency {
                    let (client, rx) = (&clients[w % clients.len()], rx.clone());
                    workers.push(scope.spawn(move || {
                        let mut record = Record::new();
                        loop {
                            let next = rx.lock().expect("queue").recv();
                            let Ok((at, measured)) = next else { break };
                            let r = client.call(job.key, job.args.clone(), job.opts());
                            control.ended(measured, &mut record, (at, Instant::now()), r);
                        }
                        record
                    }));
                }
                scope.spawn(move || {
                    let start = Instant::now();
                    for i in 0u64.. {
                        let Some(at) = job.intended(start, i) else {
                            break;
                        };
                        if !pause_until(control, at) {
                            break;
                        }
                        let Some(measured) = control.next() else {
                            break;
                        };
                        if tx.send((at, measured)).is_err() {
                            break;
                        }
                    }
                });
            }
        }
        phases();
        let grace_end = Instant::now() + STOP_GRACE;
        while workers.iter().any(|w| !w.is_finished()) {
            if Instant::now() >= grace_end {
                abandoned_note();
                clients.iter().for_each(weft_mio::Client::close);
                break;
            }
            std::thread::sleep(STOP_CHECK);
        }
        let mut total = Record::new();
        for w in workers {
            total.merge(
                w.join()
                    .map_err(|_| Failed("a load thread panicked".into()))?,
            );
        }
        for c in &clients {
            c.close();
        }
        Ok(total)
    })
}

/// How many plain threads keep `concurrency` calls in flight: `threads`,
/// by default one per call up to 16; never more than the calls, never none.
fn caller_threads(concurrency: usize, threads: Option<usize>) -> usize {
    concurrency.min(threads.unwrap_or(16)).max(1)
}

fn closed_mio_worker(
    client: &weft_mio::Client,
    job: &Job,
    control: &Control,
    share: usize,
) -> Record {
    closed_loop(
        control,
        share,
        || client.start(job.key, job.args.clone(), job.opts()),
        weft_mio::PendingCall::wait,
        Instant::now,
    )
}

/// One blocking worker's closed loop: keeps `share` calls in flight and
/// waits for the oldest (calls on one connection end in order). A call's
/// latency runs from before its `start`, which may write the request, to
/// when its `wait` returned; one clock read per call, as the end of one
/// call is the start of the one started next (a fill of several reads the
/// clock again for each after the first).
fn closed_loop<C>(
    control: &Control,
    share: usize,
    mut start: impl FnMut() -> C,
    mut wait: impl FnMut(C) -> Result<Bytes, weft_proto::CallError>,
    mut clock: impl FnMut() -> Instant,
) -> Record {
    let mut record = Record::new();
    let mut inflight = std::collections::VecDeque::with_capacity(share);
    let mut now = clock();
    loop {
        let mut fresh = true;
        while inflight.len() < share {
            let Some(measured) = control.next() else {
                break;
            };
            if !fresh {
                now = clock();
            }
            fresh = false;
            inflight.push_back((now, measured, start()));
        }
        let Some((t0, measured, call)) = inflight.pop_front() else {
            return record;
        };
        let result = wait(call);
        now = clock();
        control.ended(measured, &mut record, (t0, now), result);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn mio_caller_threads_follow_the_flag() {
        use super::caller_threads;
        assert_eq!(caller_threads(1, None), 1);
        assert_eq!(caller_threads(128, None), 16);
        assert_eq!(caller_threads(128, Some(4)), 4);
        assert_eq!(caller_threads(2, Some(8)), 2);
        assert_eq!(caller_threads(8, Some(0)), 1);
    }

    use super::*;
    use std::cell::Cell;

    /// A blocking worker's latency covers the call's start, where a mio
    /// caller writes its own request, as well as the wait for the answer.
    #[test]
    fn a_blocking_call_is_timed_from_before_its_start() {
        let control = Control::new(Some(50));
        control.measuring.store(true, Ordering::Relaxed);
        let t = Cell::new(Instant::now());
        let pass = |us| t.set(t.get() + Duration::from_micros(us));
        let record = closed_loop(
            &control,
            1,
            || pass(10),
            |()| {
                pass(50);
                Ok(Bytes::new())
            },
            || t.get(),
        );
        let mut total = Record::new();
        total.merge(record);
        let h = total.latency();
        assert_eq!(h.len(), 50);
        assert!(h.equivalent(h.min(), 60_000), "min {} ns", h.min());
        assert!(h.equivalent(h.max(), 60_000), "max {} ns", h.max());
    }

    /// Calls started together are each timed from their own start: the
    /// last of three starts of 10 us each, answered at once, took 10 us.
    #[test]
    fn calls_started_together_are_timed_from_their_own_starts() {
        let control = Control::new(Some(3));
        control.measuring.store(true, Ordering::Relaxed);
        let t = Cell::new(Instant::now());
        let record = closed_loop(
            &control,
            3,
            || t.set(t.get() + Duration::from_micros(10)),
            |()| Ok(Bytes::new()),
            || t.get(),
        );
        let mut total = Record::new();
        total.merge(record);
        let h = total.latency();
        assert_eq!(h.len(), 3);
        assert!(h.equivalent(h.min(), 10_000), "min {} ns", h.min());
        assert!(h.equivalent(h.max(), 30_000), "max {} ns", h.max());
    }
}
