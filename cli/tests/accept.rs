//! Accepting when the process is out of descriptors: `weft serve` runs in
//! a child process whose RLIMIT_NOFILE is lowered, clients fill every
//! descriptor it may open, and more wait in the listen queue. The server
//! must neither spin (its CPU time, read from /proc, stays low) nor give up
//! on the waiting connections: once descriptors free up they are served,
//! with no new connection to wake the listener.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

mod common;
use common::{Serve, WEFT};

/// The server's descriptor limit.
const NOFILE: usize = 64;
/// Connections left waiting in the listen queue once the limit is hit.
const WAITING: usize = 3;
/// How long the server's CPU time is watched while at the limit.
const WATCH: Duration = Duration::from_secs(1);
/// A hang guard for every read, far past anything the server takes.
const STUCK: Duration = Duration::from_secs(10);

/// weft's version handshake: a header for a 4-byte version-0 frame and
/// the version. The server answers with 20 bytes of its own.
const VERSION: [u8; 20] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/// `weft serve` under a lowered descriptor limit.
fn start(driver: &str) -> Serve {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {NOFILE} && exec \"$0\" serve --addr tcp://127.0.0.1:0 --driver {driver}"
        ))
        .arg(WEFT);
    Serve::spawn(cmd)
}

fn open_descriptors(server: &Serve) -> usize {
    std::fs::read_dir(format!("/proc/{}/fd", server.child.id()))
        .unwrap()
        .count()
}

/// User plus system CPU time so far, in clock ticks.
fn cpu_ticks(server: &Serve) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.child.id())).unwrap();
    // Fields after the command name, which may hold spaces: state is
    // field 3, utime 14 and stime 15.
    let rest: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    rest[11].parse::<u64>().unwrap() + rest[12].parse::<u64>().unwrap()
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

/// A connection that sent its handshake.
fn connect(addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(STUCK)).unwrap();
    s.write_all(&VERSION).unwrap();
    s
}

/// Waits for the server's handshake reply: the connection was accepted.
fn served(s: &mut TcpStream) {
    let mut reply = [0u8; 20];
    s.read_exact(&mut reply)
        .expect("the server answers the handshake");
}

fn accepts_again_once_descriptors_free_up(driver: &str) {
    let server = start(driver);
    // Fill every descriptor the server may open.
    let mut accepted = Vec::new();
    while open_descriptors(&server) < NOFILE {
        assert!(accepted.len() < NOFILE, "the limit is never reached");
        let mut s = connect(server.host_port());
        served(&mut s);
        accepted.push(s);
    }
    // These complete in the kernel but wait in the listen queue.
    let mut waiting: Vec<_> = (0..WAITING).map(|_| connect(server.host_port())).collect();

    // At the limit, accepting fails; the server must not spin on it.
    let before = cpu_ticks(&server);
    let t0 = Instant::now();
    std::thread::sleep(WATCH);
    let used = cpu_ticks(&server) - before;
    let watched = t0.elapsed().as_secs_f64() * clock_ticks_per_second() as f64;
    assert!(
        (used as f64) < watched * 0.2,
        "{driver}: {used} ticks of CPU in {watched:.0} at the descriptor limit"
    );

    // Free some descriptors: the waiting connections are served, though
    // nothing new arrives at the listener.
    accepted.truncate(accepted.len() - 2 * WAITING);
    for s in &mut waiting {
        served(s);
    }
    // And a new client's call succeeds.
    let o = Command::new(WEFT)
        .args(["call", "--addr", &server.addr])
        .args([
            "--method",
            "Echo",
            "--data",
            "back",
            "--timeout-ms",
            "10000",
        ])
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{driver}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert_eq!(o.stdout, b"back");
    drop((accepted, waiting));
    let status = server.stop();
    assert!(status.success(), "serve exited with {status}");
}

#[test]
fn tokio_server_backs_off_and_accepts_again() {
    accepts_again_once_descriptors_free_up("tokio");
}

#[test]
fn mio_server_backs_off_and_accepts_again() {
    accepts_again_once_descriptors_free_up("mio");
}
