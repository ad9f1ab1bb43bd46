//! What one benchmark point measured: latencies in an HDR histogram and
//! failures counted by kind.

use hdrhistogram::Histogram;
use std::collections::BTreeMap;

/// Latencies are recorded in nanoseconds, up to an hour, with three
/// significant digits.
fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000_000, 3).expect("valid bounds")
}

/// Latencies a worker keeps before adding them to its histogram. One at a
/// time, 128 workers' histograms (350 KiB of counters each) missed the
/// cache on nearly every call: ~170 ns per call, a tenth of a Tokio
/// client's core at 128 in flight, which the ceiling (latencies pushed to
/// a vector, the histogram built after the run) never paid.
const PENDING: usize = 1024;

/// Adds latencies in nanoseconds to `latency`.
fn add(latency: &mut Histogram<u64>, nanos: impl IntoIterator<Item = u64>) {
    for n in nanos {
        latency.saturating_record(n.max(1));
    }
}

/// One worker's (or a whole point's) record.
pub struct Record {
    latency: Histogram<u64>,
    /// Latencies not yet in `latency`, at most [`PENDING`].
    pending: Vec<u64>,
    /// Failed calls by [`CallError::kind`](weft_proto::CallError::kind).
    pub errors: BTreeMap<&'static str, u64>,
    /// The first error of each kind, to show what it was.
    pub examples: BTreeMap<&'static str, String>,
}

impl Record {
    pub fn new() -> Record {
        Record {
            latency: histogram(),
            pending: Vec::with_capacity(PENDING),
            errors: BTreeMap::new(),
            examples: BTreeMap::new(),
        }
    }

    pub fn ok(&mut self, nanos: u64) {
        self.pending.push(nanos);
        if self.pending.len() == PENDING {
            self.flush();
        }
    }

    fn flush(&mut self) {
        add(&mut self.latency, self.pending.drain(..));
    }

    /// A record of `latencies` (nanoseconds), all in its histogram.
    pub fn of(latencies: impl IntoIterator<Item = u64>) -> Record {
        let mut record = Record::new();
        add(&mut record.latency, latencies);
        record
    }

    /// Every latency recorded: only for a record built by [`merge`] or
    /// [`of`], whose latencies are all in the histogram.
    ///
    /// [`merge`]: Self::merge
    /// [`of`]: Self::of
    pub fn latency(&self) -> &Histogram<u64> {
        debug_assert!(self.pending.is_empty(), "a worker's record read");
        &self.latency
    }

    pub fn error(&mut self, err: &weft_proto::CallError) {
        let kind = err.kind();
        *self.errors.entry(kind).or_default() += 1;
        self.examples.entry(kind).or_insert_with(|| err.to_string());
    }

    pub fn merge(&mut self, mut other: Record) {
        self.flush();
        other.flush();
        self.latency
            .add(&other.latency)
            .expect("histograms with the same bounds");
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        for (k, e) in other.examples {
            self.examples.entry(k).or_insert(e);
        }
    }

    pub fn calls(&self) -> u64 {
        self.latency.len() + self.pending.len() as u64
    }

    pub fn failed(&self) -> u64 {
        self.errors.values().sum()
    }
}

/// One measured point.
pub struct Point {
    pub system: String,
    pub transport: &'static str,
    pub method: String,
    pub size: usize,
    pub concurrency: usize,
    pub connections: usize,
    /// Calls per second the open loop aimed at; `None`: closed loop.
    pub rate: Option<f64>,
    pub seconds: f64,
    pub record: Record,
    /// Cut short by SIGINT/SIGTERM.
    pub interrupted: bool,
}

impl Point {
    /// Successful calls per second.
    pub fn calls_per_sec(&self) -> f64 {
        if self.seconds > 0.0 {
            self.record.calls() as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// The `q` quantile of successful calls' latency, in microseconds.
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.record.calls() == 0 {
            return 0.0;
        }
        self.record.latency().value_at_quantile(q) as f64 / 1e3
    }

    pub fn json(&self) -> String {
        let r = &self.record;
        serde_json::json!({
            "system": self.system,
            "transport": self.transport,
            "method": self.method,
            "size": self.size,
            "concurrency": self.concurrency,
            "connections": self.connections,
            "mode": if self.rate.is_some() { "open" } else { "closed" },
            "rate": self.rate,
            "calls": r.calls(),
            "errors": r.failed(),
            "errors_by_kind": r.errors,
            "seconds": (self.seconds * 1e3).round() / 1e3,
            "calls_per_sec": (self.calls_per_sec() * 10.0).round() / 10.0,
            "p50_us": self.quantile_us(0.5),
            "p90_us": self.quantile_us(0.9),
            "p99_us": self.quantile_us(0.99),
            "p999_us": self.quantile_us(0.999),
            "max_us": r.latency().max() as f64 / 1e3,
            "interrupted": self.interrupted,
        })
        .to_string()
    }

    pub fn human(&self) -> String {
        let mut out = format!(
            "{:<11} {:<4} size {:>7} x{:<3} {:>10.0} calls/s  p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1} us",
            self.system,
            self.transport,
            self.size,
            self.concurrency,
            self.calls_per_sec(),
            self.quantile_us(0.5),
            self.quantile_us(0.9),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
        );
        if let Some(rate) = self.rate {
            out.push_str(&format!(
                "  (open loop at {rate} calls/s, latency from each call's intended start)"
            ));
        }
        for (kind, n) in &self.record.errors {
            let example = self.record.examples.get(kind).map_or("", String::as_str);
            out.push_str(&format!("\n  {n} failed: {kind}: {example}"));
        }
        if self.interrupted {
            out.push_str("\n  (interrupted: a partial run)");
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A worker's latencies, some still pending, all reach the point's
    /// record when it merges.
    #[test]
    fn merge_takes_pending_latencies() {
        let mut worker = Record::new();
        let n = 2 * PENDING as u64 + 500;
        for us in 1..=n {
            worker.ok(us * 1000);
        }
        assert_eq!(worker.calls(), n);
        let mut total = Record::new();
        total.merge(worker);
        assert_eq!(total.latency().len(), n);
        let h = total.latency();
        assert!(h.equivalent(h.max(), n * 1000), "max {}", h.max());
    }
}
