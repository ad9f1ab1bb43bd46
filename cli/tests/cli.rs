//! The `weft` binary end to end: serve + call for every built-in method on
//! both drivers, exit codes per error kind, and the benchmark's output.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

mod common;
use common::{Serve, WEFT};

/// `weft serve` on `addr` with `driver`; stderr shows in the test's.
fn start(driver: &str, addr: &str) -> Serve {
    let mut cmd = Command::new(WEFT);
    cmd.args([
        "serve", "--addr", addr, "--driver", driver, "--name", "cli-test",
    ]);
    Serve::spawn(cmd)
}

/// `weft call` against a server.
trait Call {
    fn call(&self, args: &[&str]) -> Output;
}

impl Call for Serve {
    fn call(&self, args: &[&str]) -> Output {
        Command::new(WEFT)
            .args(["call", "--addr", &self.addr])
            .args(args)
            .output()
            .unwrap()
    }
}

/// Stops with SIGTERM and checks the server exits cleanly.
fn stop(s: Serve) {
    let status = s.stop();
    assert!(status.success(), "serve exited with {status}");
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}, stderr {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

fn every_method(driver: &str, addr: &str) {
    let s = start(driver, addr);
    assert_eq!(
        stdout(&s.call(&["--method", "Echo", "--data", "hello"])),
        "hello"
    );
    let dir = std::env::temp_dir().join(format!("weft-cli-{}-{driver}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("data");
    std::fs::write(&file, b"from a file").unwrap();
    assert_eq!(
        stdout(&s.call(&["--method", "Echo", "--data-file", file.to_str().unwrap()])),
        "from a file"
    );
    assert_eq!(stdout(&s.call(&["--method", "Who"])), "cli-test");
    assert_eq!(stdout(&s.call(&["--method", "Sleep", "--data", "10"])), "");
    assert_eq!(
        stdout(&s.call(&["--method", "Metadata", "--meta", "b=2", "--meta", "a=1"])),
        "a=1\nb=2"
    );
    // A call has a 10 s timeout unless told otherwise.
    assert_eq!(
        stdout(&s.call(&["--method", "Deadline", "--timeout", "none"])),
        "none"
    );
    let left: u64 = stdout(&s.call(&["--method", "Deadline"])).parse().unwrap();
    assert!(left > 8_000_000 && left <= 10_000_000, "{left}");
    let left: u64 = stdout(&s.call(&["--method", "Deadline", "--timeout-ms", "5000"]))
        .parse()
        .unwrap();
    assert!(left > 3_000_000 && left <= 5_000_000, "{left}");
    assert_eq!(stdout(&s.call(&["--method", "CancelCount"])), "0");
    // CancelWait until the deadline: counted once.
    let o = s.call(&["--method", "CancelWait", "--timeout-ms", "100"]);
    assert_eq!(
        o.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut count = String::new();
    for _ in 0..100 {
        count = stdout(&s.call(&["--method", "CancelCount"]));
        if count == "1" {
            break;
        }
    }
    assert_eq!(count, "1");
    // Error: the message on stderr, exit code 3.
    let o = s.call(&["--method", "Error", "--data", "boom"]);
    assert_eq!(o.status.code(), Some(3));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("remote error") && err.contains("boom"),
        "{err}"
    );
    // Panic: a remote error naming the panic, inline or moved off; the
    // server goes on.
    for data in ["", "20"] {
        let o = s.call(&["--method", "Panic", "--data", data]);
        assert_eq!(o.status.code(), Some(3));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("handler panicked: weft.Test.Panic panics on purpose"),
            "{err}"
        );
    }
    assert_eq!(stdout(&s.call(&["--method", "Echo", "--data", "on"])), "on");
    // Deadline: exit code 4.
    let o = s.call(&["--method", "Sleep", "--data", "5000", "--timeout-ms", "50"]);
    assert_eq!(o.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&o.stderr).contains("deadline"));
    // --retry and --component are accepted.
    assert_eq!(
        stdout(&s.call(&[
            "--component",
            "weft.Test",
            "--method",
            "Echo",
            "--data",
            "r",
            "--retry"
        ])),
        "r"
    );
    stop(s);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn every_method_on_tokio_over_tcp() {
    every_method("tokio", "tcp://127.0.0.1:0");
}

#[test]
fn every_method_on_mio_over_tcp() {
    every_method("mio", "tcp://127.0.0.1:0");
}

#[test]
fn every_method_on_both_drivers_over_unix() {
    for driver in ["tokio", "mio"] {
        let path =
            std::env::temp_dir().join(format!("weft-cli-{}-{driver}.sock", std::process::id()));
        let _ = std::fs::remove_file(&path);
        every_method(driver, &format!("unix://{}", path.display()));
    }
}

/// A fake server that completes the handshake, reads one request, and
/// then either answers with `reply` (a full frame minus the id) or hangs up.
fn fake_server(reply: Option<Vec<u8>>) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", l.local_addr().unwrap());
    std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut version = [0u8; 20];
        s.read_exact(&mut version).unwrap();
        s.write_all(&version).unwrap();
        let mut header = [0u8; 16];
        s.read_exact(&mut header).unwrap();
        let len = (u64::from_le_bytes(header[8..].try_into().unwrap()) >> 8) as usize;
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        if let Some(mut r) = reply {
            r[..8].copy_from_slice(&header[..8]);
            s.write_all(&r).unwrap();
            let _ = s.read(&mut [0u8; 1]);
        }
    });
    addr
}

fn call_at(addr: &str, extra: &[&str]) -> Output {
    Command::new(WEFT)
        .args(["call", "--addr", addr, "--method", "Echo"])
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn exit_codes_name_the_error_kind() {
    // Communication: the server hangs up mid-call.
    let o = call_at(&fake_server(None), &[]);
    assert_eq!(
        o.status.code(),
        Some(6),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("communication error"));
    // Cancelled: the server answers with Go's context.Canceled.
    let canceled =
        include_bytes!("../../proto/tests/golden/error_context_canceled_id7.bin").to_vec();
    let o = call_at(&fake_server(Some(canceled)), &[]);
    assert_eq!(
        o.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // Deadline via Go's context.DeadlineExceeded from the server.
    let exceeded =
        include_bytes!("../../proto/tests/golden/error_deadline_exceeded_id7.bin").to_vec();
    assert_eq!(
        call_at(&fake_server(Some(exceeded)), &[]).status.code(),
        Some(4)
    );
    // Usage errors exit with 2 and say what is wrong.
    for bad in [
        vec!["call", "--method", "Echo"],
        vec!["call", "--addr", "nonsense", "--method", "x"],
        vec!["bench", "--driver", "x"],
        vec!["frobnicate"],
    ] {
        let o = Command::new(WEFT).args(&bad).output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{bad:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("error:"),
            "{bad:?}"
        );
    }
}

#[test]
fn bench_json_lines_parse_and_bench_completes() {
    let o = Command::new(WEFT)
        .args([
            "bench",
            "--duration",
            "0.3",
            "--warmup",
            "0",
            "--json",
            "--baseline",
            "--concurrency",
            "4",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines: Vec<serde_json::Value> = String::from_utf8(o.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "weft and the raw baseline");
    for (line, system) in lines.iter().zip(["weft-tokio", "raw-socket"]) {
        assert_eq!(line["system"], system);
        assert_eq!(line["transport"], "tcp");
        assert_eq!(line["size"], 64);
        assert_eq!(line["concurrency"], 4);
        for k in [
            "calls",
            "seconds",
            "calls_per_sec",
            "p50_us",
            "p90_us",
            "p99_us",
            "p999_us",
        ] {
            assert!(line[k].as_f64().unwrap() > 0.0, "{k} in {line}");
        }
        assert!(line["p50_us"].as_f64() <= line["p999_us"].as_f64());
    }
    let o = Command::new(WEFT)
        .args([
            "bench",
            "--duration",
            "1",
            "--driver",
            "mio",
            "--transport",
            "unix",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(String::from_utf8_lossy(&o.stdout).contains("weft-mio"));
}

/// `--runs 2`: each point twice, weft and the ceiling alternating, then
/// one summary per point with the medians and the ratios; for people, a
/// markdown table of them.
#[test]
fn bench_runs_report_medians_and_ratios() {
    let bench = |extra: &[&str]| {
        let o = Command::new(WEFT)
            .args([
                "bench",
                "--duration",
                "0.2",
                "--warmup",
                "0",
                "--baseline",
                "--runs",
                "2",
                "--concurrency",
                "2",
            ])
            .args(extra)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let lines: Vec<serde_json::Value> = bench(&["--json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let systems: Vec<&str> = lines
        .iter()
        .map(|l| l["system"].as_str().unwrap())
        .collect();
    assert_eq!(
        systems,
        [
            "weft-tokio",
            "raw-socket",
            "weft-tokio",
            "raw-socket",
            "weft-tokio"
        ],
        "two runs, alternating, then the summary"
    );
    let summary = &lines[4];
    assert_eq!(summary["summary"], true);
    assert_eq!(summary["runs"], 2);
    assert_eq!(summary["concurrency"], 2);
    let weft: Vec<f64> = [0, 2]
        .iter()
        .map(|&i| lines[i]["calls_per_sec"].as_f64().unwrap())
        .collect();
    let raw: Vec<f64> = [1, 3]
        .iter()
        .map(|&i| lines[i]["calls_per_sec"].as_f64().unwrap())
        .collect();
    let mid = |v: &[f64]| (v[0] + v[1]) / 2.0;
    let close = |a: f64, b: f64| (a - b).abs() <= 0.1 + b * 1e-6;
    assert!(
        close(summary["calls_per_sec"].as_f64().unwrap(), mid(&weft)),
        "{summary}"
    );
    assert!(
        close(summary["raw_calls_per_sec"].as_f64().unwrap(), mid(&raw)),
        "{summary}"
    );
    let ratio = summary["ratio"].as_f64().unwrap();
    assert!((ratio - mid(&weft) / mid(&raw)).abs() < 0.001, "{summary}");
    let lo = summary["p50_ratio_min"].as_f64().unwrap();
    let hi = summary["p50_ratio_max"].as_f64().unwrap();
    assert!(0.0 < lo && lo <= hi, "{summary}");

    let text = bench(&[]);
    let table = text.split("medians of 2 runs:").nth(1).expect(&text);
    assert!(
        table.contains("| pin | size | in flight | weft calls/s | raw calls/s | ratio"),
        "{text}"
    );
    assert!(table.contains("| none | 64 | 2 | "), "{text}");
}

/// `weft call` with its output, or a panic if it has not exited within
/// `guard` (a hang guard, far past what a passing call takes).
fn call_guarded(args: &[&str], guard: std::time::Duration) -> Output {
    let child = Command::new(WEFT)
        .arg("call")
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(guard) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("weft call {args:?} still running after {guard:?}");
        }
    }
}

#[test]
fn unreachable_address_fails_at_once_with_the_cause() {
    // A port nothing listens on.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let refused = std::net::TcpStream::connect(addr).unwrap_err().to_string();
    let endpoint = format!("tcp://{addr}");
    // No deadline: the call fails fast instead of waiting for a replica.
    let o = call_guarded(
        &["--addr", &endpoint, "--method", "Echo"],
        std::time::Duration::from_secs(30),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(6), "{err}");
    assert!(
        err.to_lowercase().contains("connection refused")
            && err.contains(&format!("{endpoint}: {refused}")),
        "{err}"
    );
    // Each kind of error is named once.
    assert_eq!(err.lines().count(), 1, "{err}");
    assert_eq!(err.matches("unreachable").count(), 1, "{err}");
    assert!(
        !err.contains("communication error: communication error"),
        "{err}"
    );
    assert!(o.stdout.is_empty());
}
