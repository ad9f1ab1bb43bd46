//! The raw-socket baseline: the same frames echoed by blocking threads with
//! no RPC machinery, as the limit weft is compared against.

use crate::args::{Args, Usage};
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft_proto::NetEndpoint;

pub const USAGE: &str = "weft raw-echo --addr ADDR   (the benchmark's baseline server)";

/// A connected blocking socket.
pub enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Sock {
    pub fn connect(addr: &NetEndpoint) -> io::Result<Sock> {
        Ok(match addr {
            NetEndpoint::Tcp(a) => {
                let s = TcpStream::connect(a)?;
                s.set_nodelay(true)?;
                Sock::Tcp(s)
            }
            NetEndpoint::Unix(p) => Sock::Unix(UnixStream::connect(p)?),
        })
    }

    fn shutdown(&self) {
        let _ = match self {
            Sock::Tcp(s) => s.shutdown(std::net::Shutdown::Both),
            Sock::Unix(s) => s.shutdown(std::net::Shutdown::Both),
        };
    }

    fn try_clone(&self) -> io::Result<Sock> {
        Ok(match self {
            Sock::Tcp(s) => Sock::Tcp(s.try_clone()?),
            Sock::Unix(s) => Sock::Unix(s.try_clone()?),
        })
    }
}

impl Read for Sock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Sock {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `weft raw-echo`: answers every request frame with a response frame
/// carrying its arguments, a thread per connection.
pub fn serve(mut args: Args) -> Result<(), Usage> {
    let addr: NetEndpoint = args
        .value("addr")
        .ok_or_else(|| Usage("--addr is required".into()))?
        .parse()
        .map_err(|e| Usage(format!("--addr: {e}")))?;
    args.finish()?;
    let err = |e: io::Error| Usage(format!("raw-echo: {e}"));
    match &addr {
        NetEndpoint::Tcp(a) => {
            let l = TcpListener::bind(a).map_err(err)?;
            println!("listening tcp://{}", l.local_addr().map_err(err)?);
            let _ = io::stdout().flush();
            for s in l.incoming().flatten() {
                let _ = s.set_nodelay(true);
                thread::spawn(move || echo_conn(Sock::Tcp(s)));
            }
        }
        NetEndpoint::Unix(p) => {
            let l = UnixListener::bind(p).map_err(err)?;
            println!("listening {addr}");
            let _ = io::stdout().flush();
            for s in l.incoming().flatten() {
                thread::spawn(move || echo_conn(Sock::Unix(s)));
            }
        }
    }
    Ok(())
}

fn echo_conn(sock: Sock) {
    let Ok(mut out) = sock.try_clone() else {
        return;
    };
    let mut input = BufReader::with_capacity(256 * 1024, sock);
    let mut reply = Vec::with_capacity(256 * 1024);
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 16];
        if input.read_exact(&mut header).is_err() {
            return;
        }
        let word = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
        let len = (word >> 8) as usize;
        payload.resize(len, 0);
        if input.read_exact(&mut payload).is_err() {
            return;
        }
        // Strip the request header, as a server hands only the arguments
        // to its handler, and answer with them.
        let hlen = payload
            .get(..4)
            .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")) as usize);
        let args = payload.get(4 + hlen..).unwrap_or(&[]);
        reply.extend_from_slice(&header[..8]);
        reply.extend_from_slice(&(2u64 | ((args.len() as u64) << 8)).to_le_bytes());
        reply.extend_from_slice(args);
        // Coalesce replies while more requests are already buffered.
        if input.buffer().is_empty() || reply.len() > 128 * 1024 {
            if out.write_all(&reply).is_err() {
                return;
            }
            reply.clear();
        }
    }
}

/// Runs the raw client for `duration` with `concurrency` requests in flight
/// on one socket; returns latencies (ns) and the call count.
pub fn client(
    addr: &NetEndpoint,
    request: &[u8],
    response_len: usize,
    concurrency: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let sock = Sock::connect(addr)?;
    if concurrency == 1 {
        return ping_pong(sock, request, response_len, duration);
    }
    pipelined(sock, request, response_len, concurrency, duration)
}

fn ping_pong(
    mut sock: Sock,
    request: &[u8],
    response_len: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let mut buf = vec![0u8; response_len];
    let mut lat = Vec::with_capacity(1 << 20);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let t = Instant::now();
        sock.write_all(request)?;
        sock.read_exact(&mut buf)?;
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let n = lat.len() as u64;
    Ok((lat, n))
}

fn pipelined(
    sock: Sock,
    request: &[u8],
    response_len: usize,
    concurrency: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let mut reader = sock.try_clone()?;
    let control = sock.try_clone()?;
    let mut writer = sock;
    // Send times of the requests in flight, oldest first (responses come
    // back in order on one connection).
    let window = Arc::new((
        Mutex::new(std::collections::VecDeque::<Instant>::new()),
        Condvar::new(),
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let w = window.clone();
    let s = stop.clone();
    let req = request.to_vec();
    let writer_thread = thread::spawn(move || -> io::Result<()> {
        let mut batch = Vec::new();
        while !s.load(Ordering::Relaxed) {
            let room = {
                let (m, cv) = &*w;
                let mut q = m.lock().expect("unpoisoned");
                while q.len() >= concurrency && !s.load(Ordering::Relaxed) {
                    q = cv
                        .wait_timeout(q, Duration::from_millis(10))
                        .expect("unpoisoned")
                        .0;
                }
                let room = concurrency - q.len().min(concurrency);
                let now = Instant::now();
                for _ in 0..room {
                    q.push_back(now);
                }
                room
            };
            batch.clear();
            for _ in 0..room {
                batch.extend_from_slice(&req);
            }
            writer.write_all(&batch)?;
        }
        Ok(())
    });
    let mut buf = vec![0u8; response_len];
    let mut lat = Vec::with_capacity(1 << 20);
    let mut input = BufReader::with_capacity(256 * 1024, &mut reader);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        input.read_exact(&mut buf)?;
        let sent = {
            let (m, cv) = &*window;
            let mut q = m.lock().expect("unpoisoned");
            let t = q.pop_front().expect("a response answers a request");
            cv.notify_one();
            t
        };
        lat.push(sent.elapsed().as_nanos() as u64);
    }
    stop.store(true, Ordering::Relaxed);
    window.1.notify_all();
    // The writer may be blocked on a full socket: closing it unblocks it.
    control.shutdown();
    let _ = writer_thread.join();
    let n = lat.len() as u64;
    Ok((lat, n))
}
