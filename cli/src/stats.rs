//! Latency samples and the numbers reported for one benchmark point.

use std::time::Duration;

/// One measured point.
#[derive(Debug, Clone)]
pub struct Point {
    pub system: String,
    pub transport: String,
    pub size: usize,
    pub concurrency: usize,
    pub connections: usize,
    pub calls: u64,
    pub seconds: f64,
    /// Sorted latencies in nanoseconds.
    pub latencies: Vec<u64>,
}

impl Point {
    pub fn calls_per_sec(&self) -> f64 {
        self.calls as f64 / self.seconds
    }

    /// The `q` quantile in microseconds (nearest rank).
    pub fn quantile_us(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return 0.0;
        }
        let rank =
            ((q * self.latencies.len() as f64).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1] as f64 / 1e3
    }

    pub fn json(&self) -> String {
        format!(
            "{{\"system\":\"{}\",\"transport\":\"{}\",\"size\":{},\"concurrency\":{},\"connections\":{},\"calls\":{},\"seconds\":{:.3},\"calls_per_sec\":{:.1},\"p50_us\":{:.1},\"p90_us\":{:.1},\"p99_us\":{:.1},\"p999_us\":{:.1}}}",
            self.system,
            self.transport,
            self.size,
            self.concurrency,
            self.connections,
            self.calls,
            self.seconds,
            self.calls_per_sec(),
            self.quantile_us(0.5),
            self.quantile_us(0.9),
            self.quantile_us(0.99),
            self.quantile_us(0.999),
        )
    }

    pub fn human(&self) -> String {
        format!(
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
        )
    }
}

/// Merges per-worker samples into a sorted vector.
pub fn merge(parts: Vec<Vec<u64>>) -> Vec<u64> {
    let mut all: Vec<u64> = parts.into_iter().flatten().collect();
    all.sort_unstable();
    all
}

/// Shows a progress bar on stderr when it is a terminal.
pub struct Progress {
    on: bool,
    label: String,
}

impl Progress {
    pub fn new(label: String) -> Progress {
        use std::io::IsTerminal;
        Progress {
            on: std::io::stderr().is_terminal(),
            label,
        }
    }

    pub fn show(&self, done: Duration, total: Duration) {
        if self.on {
            let f = (done.as_secs_f64() / total.as_secs_f64()).clamp(0.0, 1.0);
            let n = (f * 30.0) as usize;
            eprint!(
                "\r{:<40} [{}{}] {:>3.0}%",
                self.label,
                "#".repeat(n),
                " ".repeat(30 - n),
                f * 100.0
            );
        }
    }

    pub fn clear(&self) {
        if self.on {
            eprint!("\r{:80}\r", "");
        }
    }
}
