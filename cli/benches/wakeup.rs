//! The cost of waking a thread on this machine: two threads hand a turn
//! back and forth by park/unpark (a futex each way), pinned to two cores
//! and then to one. Every RPC round trip over loopback pays at least two
//! such wake-ups (the server's and the client's), so this is the floor
//! under the benchmark's latencies; the README quotes it beside the tables
//! so readers on other machines can scale them.
//!
//! `cargo bench -p weft-cli --bench wakeup`

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const ROUNDS: u64 = 200_000;

fn main() {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    println!("cores: {cores}");
    if cores >= 2 {
        report("two cores (0, 1)", 0, 1);
    }
    report("one core (0)", 0, 0);
}

fn report(label: &str, a: usize, b: usize) {
    let mut runs: Vec<Duration> = (0..3).map(|_| ping_pong(a, b)).collect();
    runs.sort();
    let median = runs[1];
    println!(
        "{label}: round trip {:.2} us (median of 3), one wake-up ~{:.2} us",
        median.as_nanos() as f64 / 1e3,
        median.as_nanos() as f64 / 2e3
    );
}

/// Pins the calling thread to `core` with `taskset` (no extra crate).
fn pin(core: usize) {
    let tid = std::fs::read_link("/proc/thread-self")
        .ok()
        .and_then(|p| p.file_name()?.to_str()?.parse::<u32>().ok());
    if let Some(tid) = tid {
        let _ = Command::new("taskset")
            .args(["-p", "-c", &core.to_string(), &tid.to_string()])
            .output();
    }
}

/// The mean round trip of `ROUNDS` turns handed between two threads.
fn ping_pong(core_a: usize, core_b: usize) -> Duration {
    // Whose turn it is: even for A, odd for B.
    let turn = Arc::new(AtomicU64::new(0));
    let t = turn.clone();
    let main = thread::current();
    let b = thread::spawn(move || {
        pin(core_b);
        for i in 0..ROUNDS {
            while t.load(Ordering::Acquire) != 2 * i + 1 {
                thread::park();
            }
            t.store(2 * i + 2, Ordering::Release);
            main.unpark();
        }
    });
    pin(core_a);
    let b_thread = b.thread().clone();
    // Let B settle on its core before timing.
    thread::sleep(Duration::from_millis(20));
    let start = Instant::now();
    for i in 0..ROUNDS {
        turn.store(2 * i + 1, Ordering::Release);
        b_thread.unpark();
        while turn.load(Ordering::Acquire) != 2 * i + 2 {
            thread::park();
        }
    }
    let elapsed = start.elapsed();
    b.join().expect("b");
    elapsed / ROUNDS as u32
}
