//! `weft bench`: a load tester for weft servers, and weft against the raw
//! loopback socket in one run.
//!
//! With no `--addr`, the server runs in a child process (`weft serve`, and
//! `weft raw-echo` for the baseline), so its threads never compete with
//! the client's inside one process; `--pin` places the two processes on
//! cores. Each side runs as users run it unless a flag asks for a tuned
//! shape: the Tokio client on Tokio's default multi-thread runtime, the
//! mio client from plain threads.

mod child;
mod load;
mod stats;
mod summary;
mod tls;

use crate::call::Payload;
use crate::serve::Driver;
use crate::target::{Target, TlsArgs};
use crate::{Failed, exit, raw};
use bytes::Bytes;
use child::ChildServer;
use load::{Control, Job};
use stats::{Point, Record};
use std::io::Write;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use summary::{Sample, Summary};
use weft_proto::{MethodKey, NetEndpoint, RequestHeader, Transmit};

/// Set by SIGINT or SIGTERM: stop, report what was measured, exit 130.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Which socket the child servers listen on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    Tcp,
    Unix,
}

/// Where the client and the child server run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Pin {
    /// Anywhere.
    None,
    /// The client on core 0, the server on core 1.
    Split,
    /// Both on core 0.
    Same,
}

/// `weft bench`'s arguments.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// A server to load (any `weft call --addr` form); without it,
    /// `weft serve` runs as a child process.
    #[arg(long)]
    addr: Option<Target>,
    #[command(flatten)]
    tls_args: TlsArgs,
    /// Also measure each point over TLS (a child server with a throwaway
    /// certificate), and report TLS against plaintext.
    #[arg(long, conflicts_with = "addr")]
    tls: bool,
    /// Which client (and child server) driver.
    #[arg(long, value_enum, default_value = "tokio")]
    driver: Driver,
    /// The child servers' socket.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: Transport,
    /// The component to call.
    #[arg(long, default_value = "weft.Test")]
    component: String,
    /// The method to call.
    #[arg(long, default_value = "Echo")]
    method: String,
    #[command(flatten)]
    payload: Payload,
    /// Bytes of arguments when no --data or --data-file is given.
    #[arg(long, default_value_t = 64)]
    size: usize,
    /// Calls in flight per connection (open loop: at most, in all).
    #[arg(long, short = 'c', default_value_t = 1)]
    concurrency: usize,
    /// Connections (each a client of its own).
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Stop after this many measured calls.
    #[arg(long, short = 'n')]
    requests: Option<u64>,
    /// Seconds to measure, or `inf` (until Ctrl-C or -n); 3 unless -n.
    #[arg(long, value_parser = parse_seconds)]
    duration: Option<Seconds>,
    /// Seconds of unrecorded calls first.
    #[arg(long, default_value = "0.5", value_parser = parse_seconds)]
    warmup: Seconds,
    /// Open loop: start this many calls per second, each timed from when
    /// it should have started (no coordinated omission).
    #[arg(long, value_name = "CALLS_PER_SEC")]
    rate: Option<f64>,
    /// mio client: spin this long before parking for a response.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// One JSON object per point on standard output.
    #[arg(long)]
    json: bool,
    /// Sizes 64 B, 4 KiB, 1 MiB x 1, 16, 128 in flight.
    #[arg(long, conflicts_with_all = ["data", "data_file", "rate"])]
    matrix: bool,
    /// Also measure the raw-socket ceiling with the same frames.
    #[arg(long)]
    baseline: bool,
    /// Pin the client and the child server to cores (a tuned shape).
    #[arg(long, value_enum, default_value = "none")]
    pin: Pin,
    /// Record spans and metrics in the client and the child server (a
    /// subscriber at INFO writing nowhere, a Prometheus recorder): what
    /// observability costs.
    #[arg(long)]
    observe: bool,
    /// Client threads. Tokio: worker threads (a tuned shape; default:
    /// Tokio's default, one per core of the machine, pinned or not). mio,
    /// closed loop: caller threads sharing the calls in flight (default:
    /// one per call up to 16, then 16).
    #[arg(long)]
    threads: Option<usize>,
    /// The child server's runtime threads (1: a current-thread runtime, a
    /// tuned shape); default: `weft serve`'s, as users run it.
    #[arg(long, conflicts_with = "addr")]
    server_threads: Option<usize>,
    /// Measure each point this many times, weft and the ceiling
    /// alternating, and end with the medians: a JSON object per point
    /// (`"summary": true`) or a markdown table.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
}

/// A number of seconds, or infinite (`None`).
#[derive(Debug, Clone, Copy)]
pub struct Seconds(Option<Duration>);

fn parse_seconds(s: &str) -> Result<Seconds, String> {
    if matches!(s, "inf" | "infinite" | "forever") {
        return Ok(Seconds(None));
    }
    let secs: f64 = s
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds or `inf`"))?;
    Duration::try_from_secs_f64(secs)
        .map(|d| Seconds(Some(d)))
        .map_err(|e| format!("{s:?}: {e}"))
}

pub fn run(args: BenchArgs) -> Result<ExitCode, Failed> {
    if args.observe {
        crate::install_observers()?;
    }
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(Failed(format!("--rate must be a positive number, not {r}")));
    }
    if args.warmup.0.is_none() {
        return Err(Failed("--warmup cannot be infinite".into()));
    }
    // The first signal stops the run and reports; a second exits at once
    // (the child server dies with its parent).
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(exit::INTERRUPTED.into());
        }
    });
    let (client_core, server_core) = match args.pin {
        Pin::None => (None, None),
        Pin::Split => (Some("0"), Some("1")),
        Pin::Same => (Some("0"), Some("0")),
    };
    // Tokio's default worker count is the machine's cores; pinning the
    // process to one would make it one, a shape users do not run.
    let client_threads = match (args.driver, client_core, args.threads) {
        (Driver::Tokio, Some(_), None) => {
            std::thread::available_parallelism().ok().map(usize::from)
        }
        (_, _, threads) => threads,
    };
    if let Some(core) = client_core {
        pin_self(core);
    }
    let unix = args.transport == Transport::Unix;
    let server_threads = args.server_threads.map(|n| n.to_string());
    let server = match &args.addr {
        Some(_) => None,
        None => {
            let mut serve = vec!["serve", "--driver", args.driver.name()];
            if let Some(threads) = &server_threads {
                serve.extend(["--threads", threads]);
            }
            if args.observe {
                serve.push("--observe");
            }
            Some(ChildServer::spawn(&serve, unix, "weft", server_core)?)
        }
    };
    let addr = match (&args.addr, &server) {
        (Some(a), _) => a.clone(),
        (None, Some(s)) => s.addr.clone(),
        (None, None) => unreachable!("a child server without --addr"),
    };
    let client_tls = args.tls_args.client(&addr)?;
    // --tls: a second child server, behind TLS with a throwaway certificate.
    let tls_server = match args.tls {
        true => {
            let certs = tls::Throwaway::new()?;
            let mut serve = vec![
                "serve",
                "--driver",
                args.driver.name(),
                "--tls-cert",
                certs.cert_path(),
                "--tls-key",
                certs.key_path(),
            ];
            if let Some(threads) = &server_threads {
                serve.extend(["--threads", threads]);
            }
            let child = ChildServer::spawn(&serve, unix, "tls", server_core)?;
            Some((child, certs))
        }
        false => None,
    };
    let raw_server = match args.baseline {
        true => Some(ChildServer::spawn(&["raw-echo"], unix, "raw", server_core)?),
        false => None,
    };
    let payload = args
        .payload
        .is_given()
        .then(|| args.payload.read())
        .transpose()?;
    let sizes = match (&payload, args.matrix) {
        (Some(p), _) => vec![p.len()],
        (None, true) => vec![64, 4096, 1 << 20],
        (None, false) => vec![args.size],
    };
    let concurrencies = match args.matrix {
        true => vec![1, 16, 128],
        false => vec![args.concurrency.max(1)],
    };
    let name: &'static str = Box::leak(format!("{}.{}", args.component, args.method).into());
    let key = MethodKey::new(&args.component, &args.method);
    let mut out = Output::new(args.json);
    let pin = match args.pin {
        Pin::None => "none",
        Pin::Split => "split",
        Pin::Same => "same",
    };
    let mut summaries = Vec::new();
    for &size in &sizes {
        for &concurrency in &concurrencies {
            let args_bytes = payload
                .clone()
                .unwrap_or_else(|| Bytes::from(vec![0x5a; size]));
            let job = Job {
                addr: addr.clone(),
                tls: client_tls.clone(),
                key,
                name,
                args: args_bytes.clone(),
                concurrency,
                connections: args.connections.max(1),
                rate: args.rate,
            };
            let mut summary = Summary {
                system: format!("weft-{}", args.driver.name()),
                pin,
                size: args_bytes.len(),
                concurrency,
                weft: Vec::new(),
                raw: Vec::new(),
            };
            for _ in 0..args.runs {
                let weft = measure_weft(&args, client_threads, &job)?;
                let mut interrupted = weft.interrupted;
                if !out.point(&weft, None) {
                    return Ok(ExitCode::SUCCESS);
                }
                summary.weft.push(Sample::of(&weft));
                if let Some((child, certs)) = &tls_server
                    && !interrupted
                {
                    let tls_job = Job {
                        addr: child.addr.clone(),
                        tls: Some(certs.client()?),
                        ..job.clone()
                    };
                    let over_tls = measure_weft(&args, client_threads, &tls_job)?;
                    interrupted = over_tls.interrupted;
                    if !out.compare(&over_tls, &weft, "tls / plaintext") {
                        return Ok(ExitCode::SUCCESS);
                    }
                }
                if let Some(raw) = &raw_server
                    && !interrupted
                {
                    let Target::Net(raw_addr) = &raw.addr else {
                        return Err(Failed(format!("the raw server said {}", raw.addr)));
                    };
                    let p = measure_raw(&args, raw_addr, key, &args_bytes, concurrency)?;
                    if !out.point(&p, Some(&weft)) {
                        return Ok(ExitCode::SUCCESS);
                    }
                    summary.raw.push(Sample::of(&p));
                }
                if interrupted {
                    return Ok(ExitCode::from(exit::INTERRUPTED));
                }
            }
            if args.runs > 1 && args.json && !out.line(&summary.json()) {
                return Ok(ExitCode::SUCCESS);
            }
            summaries.push(summary);
        }
    }
    if args.runs > 1 && !args.json {
        let mut table = format!(
            "\nmedians of {} runs:\n\n{}",
            args.runs,
            Summary::header(raw_server.is_some())
        );
        for s in &summaries {
            table.push('\n');
            table.push_str(&s.row());
        }
        out.line(&table);
    }
    drop((server, raw_server, tls_server));
    Ok(ExitCode::SUCCESS)
}

/// Writes reports to standard output; a reader that went away (`| head`)
/// ends the run quietly.
struct Output {
    json: bool,
    stdout: std::io::Stdout,
}

impl Output {
    fn new(json: bool) -> Output {
        Output {
            json,
            stdout: std::io::stdout(),
        }
    }

    /// Prints `text`; whether anyone still reads.
    fn line(&mut self, text: &str) -> bool {
        let mut lock = self.stdout.lock();
        writeln!(lock, "{text}").and_then(|()| lock.flush()).is_ok()
    }

    /// Prints `p` and, for people, its ratios to `base`.
    fn compare(&mut self, p: &Point, base: &Point, what: &str) -> bool {
        let mut text = if self.json { p.json() } else { p.human() };
        if !self.json {
            text.push_str(&format!(
                "\n  {what}: throughput {:.2}x   p50 latency {:.2}x",
                p.calls_per_sec() / base.calls_per_sec(),
                p.quantile_us(0.5) / base.quantile_us(0.5)
            ));
        }
        let mut lock = self.stdout.lock();
        writeln!(lock, "{text}").and_then(|()| lock.flush()).is_ok()
    }

    fn point(&mut self, p: &Point, weft: Option<&Point>) -> bool {
        let mut text = if self.json { p.json() } else { p.human() };
        if let (false, Some(w)) = (self.json, weft) {
            text.push_str(&format!(
                "\n  weft / raw: throughput {:.2}x   p50 latency {:.2}x",
                w.calls_per_sec() / p.calls_per_sec(),
                w.quantile_us(0.5) / p.quantile_us(0.5)
            ));
        }
        let mut lock = self.stdout.lock();
        writeln!(lock, "{text}").and_then(|()| lock.flush()).is_ok()
    }
}

fn transport_of(addr: &NetEndpoint) -> &'static str {
    Target::Net(addr.clone()).transport()
}

fn measure_weft(args: &BenchArgs, threads: Option<usize>, job: &Job) -> Result<Point, Failed> {
    let control = Control::new(args.requests);
    // With no warmup every call is measured, the first ones too: the
    // workers start calling before the phase loop runs.
    if args.warmup.0.unwrap_or_default().is_zero() {
        control.measuring.store(true, Ordering::SeqCst);
    }
    let label = format!(
        "weft-{} size {} x{}",
        args.driver.name(),
        job.args.len(),
        job.concurrency
    );
    let mut seconds = 0.0;
    let mut interrupted = false;
    let phases = || {
        (seconds, interrupted) = phases(args, &control, &label);
        control.stop.store(true, Ordering::SeqCst);
    };
    let record = match args.driver {
        Driver::Tokio => load::tokio_load(job, threads, &control, phases)?,
        Driver::Mio => {
            let spin = Duration::from_micros(args.spin_us);
            load::mio_load(job, threads, spin, &control, phases)?
        }
    };
    Ok(Point {
        system: format!("weft-{}", args.driver.name()),
        transport: job.addr.transport(),
        method: job.name.to_owned(),
        size: job.args.len(),
        concurrency: job.concurrency,
        connections: job.connections,
        rate: job.rate,
        seconds,
        record,
        interrupted,
    })
}

/// The warmup, then the measured phase, with a progress bar on a
/// terminal; returns the measured seconds and whether a signal cut it
/// short.
fn phases(args: &BenchArgs, control: &Control, label: &str) -> (f64, bool) {
    let step = Duration::from_millis(50);
    let warmup = args.warmup.0.unwrap_or_default();
    let warmup_end = Instant::now()
        .checked_add(warmup)
        .unwrap_or_else(far_future);
    while Instant::now() < warmup_end && !INTERRUPTED.load(Ordering::Relaxed) {
        std::thread::sleep(step.min(warmup_end.saturating_duration_since(Instant::now())));
    }
    control.measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    let duration = match args.duration {
        Some(Seconds(d)) => d,
        None if args.requests.is_some() => None,
        None => Some(Duration::from_secs(3)),
    };
    let bar = progress(label, duration, args.requests);
    loop {
        if INTERRUPTED.load(Ordering::Relaxed) {
            break;
        }
        let elapsed = start.elapsed();
        let ended = control.ended.load(Ordering::Relaxed);
        match (duration, args.requests) {
            (_, Some(n)) => bar.set_position(ended.min(n)),
            (Some(_), None) => bar.set_position(elapsed.as_millis() as u64),
            (None, None) => bar.set_position(ended),
        }
        if duration.is_some_and(|d| elapsed >= d) {
            break;
        }
        if args.requests.is_some_and(|n| ended >= n) {
            break;
        }
        let left = duration.map_or(step, |d| d.saturating_sub(elapsed));
        std::thread::sleep(step.min(left));
    }
    bar.finish_and_clear();
    (
        start.elapsed().as_secs_f64(),
        INTERRUPTED.load(Ordering::Relaxed),
    )
}

/// An instant no run reaches (a year away), for durations past what the
/// clock can hold.
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(365 * 24 * 3600)
}

/// A bar over the measured time or calls; hidden when standard error is
/// not a terminal.
fn progress(
    label: &str,
    duration: Option<Duration>,
    requests: Option<u64>,
) -> indicatif::ProgressBar {
    use indicatif::{ProgressBar, ProgressStyle};
    let (bar, template) = match (duration, requests) {
        (_, Some(n)) => (ProgressBar::new(n), "{msg:40} [{bar:30}] {pos}/{len} calls"),
        (Some(d), None) => (
            ProgressBar::new(d.as_millis() as u64),
            "{msg:40} [{bar:30}] {elapsed}",
        ),
        (None, None) => (
            ProgressBar::new_spinner(),
            "{msg:40} {spinner} {pos} calls {elapsed}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("#>-"));
    }
    bar.set_message(label.to_owned());
    bar
}

/// The request frame weft sends for `args`, so the baseline moves exactly
/// the same bytes.
fn request_frame(key: MethodKey, args: &Bytes) -> Vec<u8> {
    let mut tx = Transmit::new(usize::MAX);
    let header = RequestHeader::new(key);
    tx.push_request(1, header.fields(), args);
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn measure_raw(
    args: &BenchArgs,
    addr: &NetEndpoint,
    key: MethodKey,
    payload: &Bytes,
    concurrency: usize,
) -> Result<Point, Failed> {
    let request = request_frame(key, payload);
    let size = payload.len();
    let failed = |e: std::io::Error| Failed(format!("raw baseline: {e}"));
    let warmup = args.warmup.0.unwrap_or_default();
    if !warmup.is_zero() {
        raw::client(addr, &request, 16 + size, concurrency, warmup).map_err(failed)?;
    }
    // The baseline runs as long as weft did, or 3 s for an open-ended run.
    let duration = match args.duration {
        Some(Seconds(Some(d))) => d,
        _ => Duration::from_secs(3),
    };
    let start = Instant::now();
    let (latencies, _) =
        raw::client(addr, &request, 16 + size, concurrency, duration).map_err(failed)?;
    let seconds = start.elapsed().as_secs_f64();
    let record = Record::of(latencies);
    Ok(Point {
        system: "raw-socket".into(),
        transport: transport_of(addr),
        method: "raw".into(),
        size,
        concurrency,
        connections: 1,
        rate: None,
        seconds,
        record,
        interrupted: false,
    })
}

/// Moves every thread of this process to `core`.
fn pin_self(core: &str) {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", core, &pid])
        .stdout(std::process::Stdio::null())
        .status();
}
