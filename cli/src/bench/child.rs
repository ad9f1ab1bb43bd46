//! The benchmark's server, in a child process that never outlives the
//! bench: killed when the guard drops (a normal end, an error, a panic),
//! and by the kernel when the bench dies any other way (the parent-death
//! signal). Its Unix socket goes with it.

use crate::Failed;
use crate::target::Target;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use weft_proto::NetEndpoint;

/// A running child server.
pub struct ChildServer {
    child: Child,
    /// Where it listens.
    pub addr: Target,
    socket: Option<PathBuf>,
}

impl ChildServer {
    /// Starts `weft <args> --addr ...` (on `core` if given) and waits for
    /// its `listening ADDR` line.
    pub fn spawn(
        args: &[&str],
        unix: bool,
        tag: &str,
        core: Option<&str>,
    ) -> Result<ChildServer, Failed> {
        let exe = std::env::current_exe().map_err(|e| Failed(format!("own path: {e}")))?;
        let socket = unix.then(|| {
            std::env::temp_dir().join(format!("weft-bench-{}-{tag}.sock", std::process::id()))
        });
        let addr = match &socket {
            Some(p) => format!("unix://{}", p.display()),
            None => "tcp://127.0.0.1:0".into(),
        };
        let mut cmd = match core {
            Some(c) => {
                let mut t = Command::new("taskset");
                t.args(["-c", c]).arg(&exe);
                t
            }
            None => Command::new(&exe),
        };
        cmd.args(args)
            .args(["--addr", &addr])
            .stdout(Stdio::piped())
            .stdin(Stdio::null());
        // SAFETY: between fork and exec only async-signal-safe calls are
        // allowed; prctl is a plain system call. The signal survives the
        // exec of taskset and of weft (neither is setuid).
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .map_err(|e| Failed(format!("starting the server: {e}")))?;
        let stdout = child.stdout.take().expect("piped");
        // From here the guard owns the child: any early return kills it.
        let mut guard = ChildServer {
            child,
            addr: Target::Net(NetEndpoint::Tcp(String::new())),
            socket,
        };
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| Failed(format!("server output: {e}")))?;
        guard.addr = line
            .trim()
            .strip_prefix("listening ")
            .ok_or_else(|| Failed(format!("the server did not start (it said {line:?})")))?
            .parse()
            .map_err(|e| Failed(format!("server address: {e}")))?;
        Ok(guard)
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) with a pid we spawned and have not reaped.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        // A server drains gracefully on SIGTERM; the bench's calls are
        // over, so that is quick. Past a second, stop it hard.
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !matches!(self.child.try_wait(), Ok(Some(_))) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(p) = &self.socket {
            let _ = std::fs::remove_file(p);
        }
    }
}
