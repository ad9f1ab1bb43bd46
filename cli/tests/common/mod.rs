//! What the binary's tests share: `weft serve` children that announce
//! their address and never outlive their test.

// Each test file uses the part it needs.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const WEFT: &str = env!("CARGO_BIN_EXE_weft");

/// A running `weft serve`. Stopped when dropped (SIGTERM, then SIGKILL
/// after 5 s): a test that fails before stopping it must not leave it
/// holding the test's piped output (`cargo test | grep` would wait for it).
pub struct Serve {
    pub child: Child,
    /// What it announced: `listening <addr>`.
    pub addr: String,
}

impl Serve {
    /// `weft serve` with `args` and standard error discarded.
    pub fn start(args: &[&str]) -> Serve {
        let mut cmd = Command::new(WEFT);
        cmd.arg("serve").args(args).stderr(Stdio::null());
        Serve::spawn(cmd)
    }

    /// Runs `cmd` (a `weft serve`, perhaps behind a shell) with its
    /// standard output piped, and waits for the address it announces.
    pub fn spawn(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn weft serve");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped"))
            .read_line(&mut line)
            .expect("read the announcement");
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            panic!("weft serve announced {line:?}");
        };
        let addr = addr.to_owned();
        Serve { child, addr }
    }

    /// `host:port` of a TCP server.
    pub fn host_port(&self) -> &str {
        self.addr.strip_prefix("tcp://").expect("a tcp:// address")
    }

    /// Sends `signal` (`-TERM`, `-INT`, ...).
    pub fn signal(&self, signal: &str) {
        send_signal(self.child.id(), signal);
    }

    /// Stops it with SIGTERM and returns how it exited.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("-TERM");
        self.child.wait().expect("wait for weft serve")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if !matches!(self.child.try_wait(), Ok(None)) {
            return;
        }
        // Politely first, so that a Unix socket's file is removed.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `signal` to process `pid` with kill(1).
pub fn send_signal(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill {signal} {pid}: {status}");
}
