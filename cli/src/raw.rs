//! The raw-socket baseline: the same frames echoed by blocking threads with
//! no RPC machinery, as the limit weft is compared against.

use crate::Failed;
use std::io::{self, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};
use weft_proto::NetEndpoint;

/// `weft raw-echo`'s arguments.
#[derive(Debug, clap::Args)]
pub struct RawArgs {
    /// Where to listen: tcp://HOST:PORT or unix:///PATH.
    #[arg(long)]
    addr: NetEndpoint,
}

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

    fn set_nonblocking(&self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.set_nonblocking(true),
            Sock::Unix(s) => s.set_nonblocking(true),
        }
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
pub fn serve(args: RawArgs) -> Result<(), Failed> {
    let addr = args.addr;
    let err = |e: io::Error| Failed(format!("cannot listen on {addr}: {e}"));
    if std::env::var("WEFT_RAW_SERVER").as_deref() == Ok("tokio") {
        return crate::raw_tokio::serve(&addr).map_err(err);
    }
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
        let len = payload_len(&header);
        // A baseline peer sends small frames; a length like this is garbage.
        if len > MAX_FRAME {
            return;
        }
        payload.resize(len, 0);
        if input.read_exact(&mut payload).is_err() {
            return;
        }
        push_reply(&header, &payload, &mut reply);
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
/// The payload length a frame header announces (the second word, above
/// its low byte, which is the message type).
pub fn payload_len(header: &[u8; 16]) -> usize {
    let word = u64::from_le_bytes(header[8..].try_into().expect("8 bytes"));
    (word >> 8) as usize
}

/// Appends the response frame that answers the request `header` +
/// `payload`: its arguments echoed, the request header stripped, as a
/// server hands only the arguments to its handler.
pub fn push_reply(header: &[u8; 16], payload: &[u8], reply: &mut Vec<u8>) {
    let hlen = payload
        .get(..4)
        .map_or(0, |b| u32::from_le_bytes(b.try_into().expect("4")) as usize);
    let args = payload.get(4 + hlen..).unwrap_or(&[]);
    reply.extend_from_slice(&header[..8]);
    reply.extend_from_slice(&(2u64 | ((args.len() as u64) << 8)).to_le_bytes());
    reply.extend_from_slice(args);
}

pub fn client(
    addr: &NetEndpoint,
    request: &[u8],
    response_len: usize,
    concurrency: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let shape = Shape::from_env();
    if shape == Shape::Tokio {
        if concurrency != 1 {
            return Err(io::Error::other(
                "WEFT_RAW_SHAPE=tokio runs one call in flight only",
            ));
        }
        return crate::raw_tokio::ping_pong(addr, request, response_len, duration);
    }
    let sock = Sock::connect(addr)?;
    let small = concurrency * request.len().max(response_len) <= ONE_THREAD_BYTES;
    match shape {
        Shape::Auto if concurrency == 1 => ping_pong(sock, request, response_len, duration),
        Shape::Auto | Shape::OneThread if small => {
            one_thread(sock, request, response_len, concurrency, duration)
        }
        Shape::Spin if small => {
            sock.set_nonblocking()?;
            one_thread(sock, request, response_len, concurrency, duration)
        }
        _ => pipelined(sock, request, response_len, concurrency, duration),
    }
}

/// Which client the baseline runs, from `WEFT_RAW_SHAPE`: the default picks
/// the best blocking one for the load; the others exist to show that the
/// usual alternatives are not faster (see the README's benchmark notes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Ping-pong at one call in flight, else one thread while the bytes in
    /// flight fit the socket buffers, else a writer and a reader thread.
    Auto,
    /// One thread, even at one call in flight.
    OneThread,
    /// A writer and a reader thread, whatever the load.
    TwoThreads,
    /// One thread busy-polling a non-blocking socket: not a blocking
    /// client, and it burns its core.
    Spin,
    /// A task on a default multi-thread Tokio runtime: Tokio's own floor,
    /// one call in flight only (`raw_tokio.rs`).
    Tokio,
}

impl Shape {
    fn from_env() -> Shape {
        match std::env::var("WEFT_RAW_SHAPE").as_deref() {
            Ok("one-thread") => Shape::OneThread,
            Ok("two-threads") => Shape::TwoThreads,
            Ok("spin") => Shape::Spin,
            Ok("tokio") => Shape::Tokio,
            _ => Shape::Auto,
        }
    }
}

/// The largest frame the echo server takes (the default message limit).
const MAX_FRAME: usize = 100 << 20;

/// In-flight bytes, each way, up to which one thread both writes and reads:
/// well inside the sockets' buffers, so a blocking write cannot wait on a
/// server that waits on this thread to read.
const ONE_THREAD_BYTES: usize = 64 * 1024;

/// Many small requests in flight from one thread: write every free slot in
/// one call, then one blocking read takes whatever responses arrived. No
/// hand-off between threads at all.
fn one_thread(
    mut sock: Sock,
    request: &[u8],
    response_len: usize,
    concurrency: usize,
    duration: Duration,
) -> io::Result<(Vec<u64>, u64)> {
    let mut sent_at = vec![Instant::now(); concurrency];
    let mut batch = Vec::with_capacity(request.len() * concurrency);
    let mut lat = Vec::with_capacity(1 << 20);
    let mut buf = vec![0u8; (256 * 1024).max(2 * response_len)];
    let (mut filled, mut sent, mut received) = (0usize, 0u64, 0u64);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let free = concurrency as u64 - (sent - received);
        if free > 0 {
            let now = Instant::now();
            batch.clear();
            for i in 0..free {
                sent_at[((sent + i) % concurrency as u64) as usize] = now;
                batch.extend_from_slice(request);
            }
            sent += free;
            write_all_spinning(&mut sock, &batch)?;
        }
        let n = loop {
            match sock.read(&mut buf[filled..]) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::hint::spin_loop(),
                other => break other?,
            }
        };
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        filled += n;
        let whole = filled / response_len;
        let now = Instant::now();
        for i in 0..whole as u64 {
            let slot = ((received + i) % concurrency as u64) as usize;
            lat.push(now.duration_since(sent_at[slot]).as_nanos() as u64);
        }
        received += whole as u64;
        let used = whole * response_len;
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
    let n = lat.len() as u64;
    Ok((lat, n))
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

/// Many requests in flight on one socket, done the way a careful
/// hand-written blocking client would: one thread writes, one reads.
///
/// - The writer sends every free slot in one `write` call, and sleeps
///   (parks) only when no slot is free.
/// - The reader takes whatever one `read` returns, accounts for every
///   whole response in it, and hands the freed slots back through an
///   atomic counter: no lock, no condvar, and a system call (an unpark)
///   only when the writer is asleep.
/// - Send times travel in a ring indexed by request number, one atomic per
///   slot; responses come back in order on one connection.
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
    let shared = Arc::new(Pipeline {
        received: AtomicU64::new(0),
        writer_asleep: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        sent_at: (0..concurrency).map(|_| AtomicU64::new(0)).collect(),
    });
    let epoch = Instant::now();
    let w = shared.clone();
    let req = request.to_vec();
    let writer_thread = thread::spawn(move || -> io::Result<()> {
        let mut batch = Vec::with_capacity(req.len() * concurrency);
        let mut sent: u64 = 0;
        while !w.stop.load(Ordering::Relaxed) {
            let free = concurrency as u64 - (sent - w.received.load(Ordering::Acquire));
            if free == 0 {
                // Announce the sleep, then look again: a reader that freed a
                // slot in between either sees the flag or is seen here.
                w.writer_asleep.store(true, Ordering::SeqCst);
                if sent - w.received.load(Ordering::SeqCst) == concurrency as u64
                    && !w.stop.load(Ordering::SeqCst)
                {
                    thread::park();
                }
                w.writer_asleep.store(false, Ordering::Relaxed);
                continue;
            }
            let now = epoch.elapsed().as_nanos() as u64;
            batch.clear();
            for i in 0..free {
                let slot = ((sent + i) % concurrency as u64) as usize;
                w.sent_at[slot].store(now, Ordering::Relaxed);
                batch.extend_from_slice(&req);
            }
            sent += free;
            // The write publishes the send times (the reader cannot see a
            // response before the request went out).
            std::sync::atomic::fence(Ordering::Release);
            writer.write_all(&batch)?;
        }
        Ok(())
    });
    let writer_handle = writer_thread.thread().clone();
    let mut lat = Vec::with_capacity(1 << 20);
    let mut buf = vec![0u8; (256 * 1024).max(2 * response_len)];
    let (mut filled, mut received) = (0usize, 0u64);
    let end = Instant::now() + duration;
    while Instant::now() < end {
        let n = reader.read(&mut buf[filled..])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "server closed",
            ));
        }
        filled += n;
        let whole = filled / response_len;
        if whole == 0 {
            continue;
        }
        std::sync::atomic::fence(Ordering::Acquire);
        let now = epoch.elapsed().as_nanos() as u64;
        for i in 0..whole as u64 {
            let slot = ((received + i) % concurrency as u64) as usize;
            lat.push(now.saturating_sub(shared.sent_at[slot].load(Ordering::Relaxed)));
        }
        received += whole as u64;
        shared.received.store(received, Ordering::SeqCst);
        if shared.writer_asleep.load(Ordering::SeqCst) {
            writer_handle.unpark();
        }
        let used = whole * response_len;
        buf.copy_within(used..filled, 0);
        filled -= used;
    }
    shared.stop.store(true, Ordering::SeqCst);
    writer_handle.unpark();
    // The writer may be blocked on a full socket: closing it unblocks it.
    control.shutdown();
    let _ = writer_thread.join();
    let n = lat.len() as u64;
    Ok((lat, n))
}

/// `write_all` that also works on a non-blocking socket, by retrying.
fn write_all_spinning(sock: &mut Sock, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match sock.write(bytes) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
            {
                std::hint::spin_loop()
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// What the pipelined client's two threads share.
struct Pipeline {
    /// Responses the reader has accounted for.
    received: AtomicU64,
    /// The writer found no free slot and is parked (or about to be).
    writer_asleep: AtomicBool,
    stop: AtomicBool,
    /// Send time of request `n` (ns since the run began) at `n % slots`.
    sent_at: Vec<AtomicU64>,
}
