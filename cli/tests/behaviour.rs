//! The command behaves as shell users expect: help and version, standard
//! input, bind errors that name the address, stale sockets, `bench -n`,
//! honest JSON, a closed pipe, no child left behind, a metrics scrape.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

mod common;
use common::{Serve, WEFT, send_signal};

fn run(args: &[&str]) -> std::process::Output {
    Command::new(WEFT).args(args).output().unwrap()
}

fn tmp(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("weft-behaviour-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `weft serve` on `addr` with `extra` flags.
fn serve(extra: &[&str], addr: &str) -> Serve {
    let mut args = vec!["--addr", addr];
    args.extend_from_slice(extra);
    Serve::start(&args)
}

#[test]
fn help_and_version_list_methods_and_exit_codes() {
    let o = run(&["--version"]);
    assert!(o.status.success());
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("weft "));
    let o = run(&["--help"]);
    let help = String::from_utf8_lossy(&o.stdout);
    assert!(
        help.contains("CancelWait") && help.contains("Trace") && help.contains("Exit codes"),
        "{help}"
    );
    for cmd in ["serve", "call", "bench"] {
        let o = run(&[cmd, "--help"]);
        assert!(o.status.success(), "{cmd} --help");
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("--addr"),
            "{cmd}"
        );
    }
}

#[test]
fn data_file_dash_reads_standard_input() {
    let server = serve(&[], "tcp://127.0.0.1:0");
    let addr = server.addr.clone();
    let mut call = Command::new(WEFT)
        .args([
            "call",
            "--addr",
            &addr,
            "--method",
            "Echo",
            "--data-file",
            "-",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    call.stdin.take().unwrap().write_all(b"from stdin").unwrap();
    let out = call.wait_with_output().unwrap();
    assert_eq!(&out.stdout[..], b"from stdin");
    server.stop();
}

#[test]
fn a_bind_error_names_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", taken.local_addr().unwrap());
    let o = run(&["serve", "--addr", &addr]);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&addr) && err.contains("in use"), "{err}");
    assert!(!err.contains("Usage"), "{err}");
}

#[test]
fn a_stale_unix_socket_is_replaced_but_a_live_one_is_not() {
    let dir = tmp("stale");
    let path = dir.join("s.sock");
    // A socket file nobody listens on, as a crash leaves it.
    drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
    let addr = format!("unix://{}", path.display());
    let server = serve(&[], &addr);
    // Now it is live: a second server must not take it.
    let o = run(&["serve", "--addr", &addr]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("already listening"));
    let o = run(&["call", "--addr", &addr, "--method", "Who"]);
    assert_eq!(&o.stdout[..], b"weft", "the first server still serves");
    server.stop();
}

#[test]
fn a_failed_bind_leaves_what_is_at_the_path() {
    let dir = tmp("not-a-socket");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "mine").unwrap();
    let addr = format!("unix://{}", path.display());
    for driver in ["tokio", "mio"] {
        let o = run(&["serve", "--driver", driver, "--addr", &addr]);
        assert_eq!(o.status.code(), Some(1), "{driver}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot listen on"),
            "{driver}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "mine", "{driver}");
    }
}

#[test]
fn a_server_removes_its_own_socket_and_not_its_successors() {
    use std::os::unix::fs::MetadataExt;
    for driver in ["tokio", "mio"] {
        let dir = tmp(&format!("successor-{driver}"));
        let path = dir.join("s.sock");
        let addr = format!("unix://{}", path.display());
        // Its own socket a server removes.
        serve(&["--driver", driver], &addr).stop();
        assert!(!path.exists(), "{driver}: its own socket was left");
        let first = serve(&["--driver", driver], &addr);
        // A successor takes the path over while the first still runs (as
        // a restart does during the first one's drain).
        std::fs::remove_file(&path).unwrap();
        let successor = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let ino = std::fs::metadata(&path).unwrap().ino();
        first.stop();
        let left = std::fs::symlink_metadata(&path);
        assert_eq!(
            left.map(|m| m.ino()).ok(),
            Some(ino),
            "{driver}: the successor's socket was removed"
        );
        drop(successor);
    }
}

fn bench_json(args: &[&str]) -> Vec<serde_json::Value> {
    let o = run(&[&["bench", "--json", "--warmup", "0"][..], args].concat());
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn bench_makes_exactly_n_calls_and_reports_its_transport() {
    let p = &bench_json(&["-n", "500", "--concurrency", "4", "--transport", "unix"])[0];
    assert_eq!(p["calls"], 500);
    assert_eq!(p["errors"], 0);
    assert_eq!(p["transport"], "unix");
    assert_eq!(p["mode"], "closed");
}

/// `weft bench` with `args`, stopped by `timeout` after `limit` seconds
/// (exit 124) if it does not end by itself: a hang fails the test instead
/// of stalling the suite.
fn bench_within(limit: u32, args: &[&str]) -> serde_json::Value {
    let o = Command::new("timeout")
        .arg(limit.to_string())
        .arg(WEFT)
        .args([&["bench", "--json", "--warmup", "0"][..], args].concat())
        .output()
        .unwrap();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let out = String::from_utf8_lossy(&o.stdout);
    serde_json::from_str(out.lines().next().unwrap()).unwrap()
}

#[test]
fn bench_ends_when_calls_never_do() {
    // Every call waits for a cancel that never comes: after the measured
    // phase and a grace, the bench closes the connection and reports them.
    for driver in ["tokio", "mio"] {
        let p = bench_within(
            30,
            &[
                "--driver",
                driver,
                "--method",
                "CancelWait",
                "--duration",
                "0.2",
                "-c",
                "2",
            ],
        );
        assert_eq!(p["calls"], 0, "{driver}");
        assert_eq!(p["errors_by_kind"]["communication"], 2, "{driver}: {p}");
    }
}

#[test]
fn durations_past_the_clock_do_not_panic() {
    // A timeout the clock cannot hold is no deadline: the call fails for
    // its own reason (nothing listens there), not with a panic (101).
    let o = run(&[
        "call",
        "--addr",
        "tcp://127.0.0.1:1",
        "--method",
        "Who",
        "--timeout",
        "9999999999999999999",
    ]);
    assert_ne!(
        o.status.code(),
        Some(101),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("unreachable"));
    // A rate so low its second call would start past the clock's end.
    let p = bench_within(20, &["--rate", "1e-20", "--duration", "0.2"]);
    assert_eq!(p["mode"], "open");
}

#[test]
fn a_slow_open_loop_ends_with_its_duration() {
    // One call every 100 s: the bench must not wait for the next one.
    for driver in ["tokio", "mio"] {
        let p = bench_within(
            20,
            &["--driver", driver, "--rate", "0.01", "--duration", "0.3"],
        );
        assert_eq!(p["mode"], "open", "{driver}");
    }
}

#[test]
fn bench_counts_errors_by_kind_instead_of_stopping() {
    let p = &bench_json(&["-n", "20", "--method", "Error", "--data", "no"])[0];
    assert_eq!(p["calls"], 0);
    assert_eq!(p["errors"], 20);
    assert_eq!(p["errors_by_kind"]["remote"], 20);
}

#[test]
fn bench_open_loop_runs_at_its_rate() {
    let p = &bench_json(&["--rate", "200", "-n", "100", "--concurrency", "8"])[0];
    assert_eq!(p["mode"], "open");
    assert_eq!(p["calls"], 100);
    // 100 calls at 200/s take half a second, not less (open loop).
    assert!(p["seconds"].as_f64().unwrap() >= 0.45, "{p}");
}

#[test]
fn bench_into_a_closed_pipe_exits_quietly() {
    let mut bench = Command::new(WEFT)
        .args(["bench", "--matrix", "--duration", "0.2", "--warmup", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(bench.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    // The reader has gone (like `| head -1`).
    let out = bench.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// Children of `pid`, from /proc.
fn children(pid: u32) -> Vec<u32> {
    let mut all = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(task.path().join("children")) {
            let _ = f.read_to_string(&mut s);
        }
        all.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    all
}

fn gone(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.is_empty() || stat.contains(") Z ")
}

#[test]
fn sigterm_prints_a_partial_report_and_leaves_no_child() {
    for signal in ["-TERM", "-KILL"] {
        let bench = Command::new(WEFT)
            .args(["bench", "--duration", "inf", "--json", "--warmup", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // The child server is up once the bench has one.
        let mut kids = Vec::new();
        for _ in 0..500 {
            kids = children(bench.id());
            if !kids.is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(kids.len(), 1, "one child server");
        std::thread::sleep(std::time::Duration::from_millis(300));
        send_signal(bench.id(), signal);
        let out = bench.wait_with_output().unwrap();
        if signal == "-TERM" {
            assert_eq!(out.status.code(), Some(130));
            let p: serde_json::Value =
                serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim()).unwrap();
            assert_eq!(p["interrupted"], true);
            assert!(p["calls"].as_u64().unwrap() > 0);
        }
        let mut dead = false;
        for _ in 0..300 {
            if gone(kids[0]) {
                dead = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(
            dead,
            "{signal}: the child server {} outlived the bench",
            kids[0]
        );
    }
}

#[test]
fn metrics_scrape_counts_the_calls_made() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let metrics = format!("127.0.0.1:{port}");
    let server = serve(&["--metrics-addr", &metrics], "tcp://127.0.0.1:0");
    let addr = server.addr.clone();
    for _ in 0..3 {
        let o = run(&[
            "call", "--addr", &addr, "--method", "Echo", "--data", "abcd",
        ]);
        assert!(o.status.success());
    }
    let mut s = std::net::TcpStream::connect(&metrics).unwrap();
    write!(s, "GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n").unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    let line = body
        .lines()
        .find(|l| l.starts_with("weft_server_requests_total") && l.contains("method=\"Echo\""))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(line.ends_with(" 3"), "{line}");
    let bytes = body
        .lines()
        .find(|l| l.starts_with("weft_server_request_bytes_total") && l.contains("Echo"))
        .unwrap();
    assert!(bytes.ends_with(" 12"), "{bytes}");
    server.stop();
}
