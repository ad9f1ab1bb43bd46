//! `weft bench`: weft against the raw loopback socket, in one run.
//!
//! The server runs in a child process (`weft serve`, and `weft raw-echo`
//! for the baseline), so its threads never compete with the client's inside
//! one process; `--pin` places the two processes on cores.

use crate::args::{Args, Usage};
use crate::raw;
use crate::stats::{Point, Progress, merge};
use bytes::Bytes;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use weft_proto::Transmit;
use weft_proto::{CallOptions, MethodKey, NetEndpoint, RequestHeader};

pub const USAGE: &str = "weft bench [--addr ADDR] [--driver tokio|mio] [--transport tcp|unix] [--size N] [--concurrency N] [--connections N] [--duration S] [--warmup S] [--spin-us N] [--json] [--matrix] [--baseline] [--pin split|same|none] [--threads N]";

struct Config {
    addr: Option<NetEndpoint>,
    driver: String,
    transport: String,
    sizes: Vec<usize>,
    concurrencies: Vec<usize>,
    connections: usize,
    duration: Duration,
    warmup: Duration,
    spin: Duration,
    json: bool,
    baseline: bool,
    pin: String,
    threads: usize,
}

pub fn run(mut args: Args) -> Result<(), Usage> {
    let matrix = args.switch("matrix");
    let size: usize = args.parsed("size", 64)?;
    let conc: usize = args.parsed("concurrency", 1)?;
    let secs = |v: f64| Duration::from_secs_f64(v.max(0.0));
    let cfg = Config {
        addr: args
            .value("addr")
            .map(|a| a.parse().map_err(|e| Usage(format!("--addr: {e}"))))
            .transpose()?,
        driver: args.value("driver").unwrap_or_else(|| "tokio".into()),
        transport: args.value("transport").unwrap_or_else(|| "tcp".into()),
        sizes: if matrix {
            vec![64, 4096, 1 << 20]
        } else {
            vec![size]
        },
        concurrencies: if matrix {
            vec![1, 16, 128]
        } else {
            vec![conc.max(1)]
        },
        connections: args.parsed("connections", 1usize)?.max(1),
        duration: secs(args.parsed("duration", 3.0)?),
        warmup: secs(args.parsed("warmup", 0.5)?),
        spin: Duration::from_micros(args.parsed("spin-us", 0u64)?),
        json: args.switch("json"),
        baseline: args.switch("baseline"),
        pin: args.value("pin").unwrap_or_else(|| "none".into()),
        threads: args.parsed("threads", 1usize)?.max(1),
    };
    args.finish()?;
    if !["tokio", "mio"].contains(&cfg.driver.as_str()) {
        return Err(Usage(format!(
            "--driver must be tokio or mio, not {:?}",
            cfg.driver
        )));
    }
    if !["tcp", "unix"].contains(&cfg.transport.as_str()) {
        return Err(Usage(format!(
            "--transport must be tcp or unix, not {:?}",
            cfg.transport
        )));
    }
    let (client_core, server_core) = match cfg.pin.as_str() {
        "none" => (None, None),
        "split" => (Some("0"), Some("1")),
        "same" => (Some("0"), Some("0")),
        other => {
            return Err(Usage(format!(
                "--pin must be split, same or none, not {other:?}"
            )));
        }
    };
    if let Some(core) = client_core {
        pin_self(core);
    }

    let (addr, mut server) = match &cfg.addr {
        Some(a) => (a.clone(), None),
        None => {
            // A server pinned to one core runs one thread.
            let threads = if server_core.is_some() { "1" } else { "2" };
            let (a, c) = spawn_server(
                &["serve", "--driver", &cfg.driver, "--threads", threads],
                &cfg.transport,
                "weft",
                server_core,
            )?;
            (a, Some(c))
        }
    };
    let mut raw_server = None;
    let raw_addr = if cfg.baseline {
        let (a, c) = spawn_server(&["raw-echo"], &cfg.transport, "raw", server_core)?;
        raw_server = Some(c);
        Some(a)
    } else {
        None
    };

    let result = run_points(&cfg, &addr, raw_addr.as_ref());
    for child in [&mut server, &mut raw_server].into_iter().flatten() {
        stop_child(child);
    }
    result
}

fn run_points(
    cfg: &Config,
    addr: &NetEndpoint,
    raw_addr: Option<&NetEndpoint>,
) -> Result<(), Usage> {
    let err = |e: String| Usage(format!("bench: {e}"));
    for &size in &cfg.sizes {
        for &conc in &cfg.concurrencies {
            let weft = measure_weft(cfg, addr, size, conc).map_err(err)?;
            report(cfg, &weft, None);
            if let Some(raw_addr) = raw_addr {
                let raw = measure_raw(cfg, raw_addr, size, conc).map_err(err)?;
                report(cfg, &raw, Some(&weft));
            }
        }
    }
    Ok(())
}

fn report(cfg: &Config, p: &Point, weft: Option<&Point>) {
    if cfg.json {
        println!("{}", p.json());
        return;
    }
    println!("{}", p.human());
    if let Some(w) = weft {
        println!(
            "  weft / raw: throughput {:.2}x   p50 latency {:.2}x",
            w.calls_per_sec() / p.calls_per_sec(),
            w.quantile_us(0.5) / p.quantile_us(0.5)
        );
    }
}

/// The request frame weft sends for `size` bytes of arguments, so the
/// baseline moves exactly the same bytes.
fn request_frame(size: usize) -> Vec<u8> {
    let mut tx = Transmit::new(usize::MAX);
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    tx.push_request(1, header.fields(), &Bytes::from(vec![0x5a; size]));
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn measure_raw(
    cfg: &Config,
    addr: &NetEndpoint,
    size: usize,
    conc: usize,
) -> Result<Point, String> {
    let request = request_frame(size);
    let progress = Progress::new(format!("raw size {size} x{conc}"));
    progress.show(Duration::ZERO, cfg.duration);
    if !cfg.warmup.is_zero() {
        raw::client(addr, &request, 16 + size, conc, cfg.warmup).map_err(|e| e.to_string())?;
    }
    let start = Instant::now();
    let (lat, calls) =
        raw::client(addr, &request, 16 + size, conc, cfg.duration).map_err(|e| e.to_string())?;
    let seconds = start.elapsed().as_secs_f64();
    progress.clear();
    Ok(Point {
        system: "raw-socket".into(),
        transport: cfg.transport.clone(),
        size,
        concurrency: conc,
        connections: 1,
        calls,
        seconds,
        latencies: merge(vec![lat]),
    })
}

fn measure_weft(
    cfg: &Config,
    addr: &NetEndpoint,
    size: usize,
    conc: usize,
) -> Result<Point, String> {
    let progress = Progress::new(format!("weft-{} size {size} x{conc}", cfg.driver));
    let args = Bytes::from(vec![0x5a; size]);
    let (parts, seconds) = match cfg.driver.as_str() {
        "tokio" => tokio_load(cfg, addr, &args, conc, &progress)?,
        _ => mio_load(cfg, addr, &args, conc, &progress)?,
    };
    progress.clear();
    let latencies = merge(parts);
    Ok(Point {
        system: format!("weft-{}", cfg.driver),
        transport: cfg.transport.clone(),
        size,
        concurrency: conc,
        connections: cfg.connections,
        calls: latencies.len() as u64,
        seconds,
        latencies,
    })
}

/// Runs the warmup, then the measured phase; workers record only while
/// `measuring` is set.
fn phases(cfg: &Config, progress: &Progress, measuring: &AtomicBool, stop: &AtomicBool) -> f64 {
    std::thread::sleep(cfg.warmup);
    measuring.store(true, Ordering::SeqCst);
    let start = Instant::now();
    while start.elapsed() < cfg.duration {
        progress.show(start.elapsed(), cfg.duration);
        std::thread::sleep(
            Duration::from_millis(100).min(cfg.duration.saturating_sub(start.elapsed())),
        );
    }
    stop.store(true, Ordering::SeqCst);
    start.elapsed().as_secs_f64()
}

fn tokio_load(
    cfg: &Config,
    addr: &NetEndpoint,
    args: &Bytes,
    conc: usize,
    progress: &Progress,
) -> Result<(Vec<Vec<u64>>, f64), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(cfg.threads)
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let measuring = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let key = MethodKey::new("weft.Test", "Echo");
    let mut tasks = Vec::new();
    for _ in 0..cfg.connections {
        let conn = rt
            .block_on(weft_tokio::connect(
                weft_tokio::ConstantResolver::new([addr.clone()]),
                Default::default(),
            ))
            .map_err(|e| e.to_string())?;
        for _ in 0..conc {
            let (conn, args, measuring, stop) =
                (conn.clone(), args.clone(), measuring.clone(), stop.clone());
            tasks.push(rt.spawn(async move {
                let mut lat = Vec::with_capacity(1 << 16);
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    conn.call(key, args.clone(), CallOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    if measuring.load(Ordering::Relaxed) {
                        lat.push(t.elapsed().as_nanos() as u64);
                    }
                }
                Ok::<_, String>(lat)
            }));
        }
    }
    let seconds = phases(cfg, progress, &measuring, &stop);
    let mut parts = Vec::new();
    for t in tasks {
        parts.push(rt.block_on(t).map_err(|e| e.to_string())??);
    }
    Ok((parts, seconds))
}

fn mio_load(
    cfg: &Config,
    addr: &NetEndpoint,
    args: &Bytes,
    conc: usize,
    progress: &Progress,
) -> Result<(Vec<Vec<u64>>, f64), String> {
    let measuring = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let key = MethodKey::new("weft.Test", "Echo");
    let clients = (0..cfg.connections)
        .map(|_| {
            let resolver = weft_mio::ConstantResolver::new([addr.clone()]);
            let client = weft_mio::Client::connect(resolver, Default::default())
                .map_err(|e| e.to_string())?;
            client.set_optimistic_spin(cfg.spin);
            Ok::<_, String>(client)
        })
        .collect::<Result<Vec<_>, _>>()?;
    // A blocking client keeps calls in flight with threads, or with
    // `start` + `wait` from fewer threads. Up to 16 in flight, one thread
    // per call; beyond, 16 threads each keep their share in flight and wait
    // for the oldest (calls on one connection finish in order).
    let threads = conc.min(16);
    std::thread::scope(|scope| {
        let mut workers = Vec::new();
        for client in &clients {
            for t in 0..threads {
                let share = conc / threads + usize::from(t < conc % threads);
                let (measuring, stop) = (&measuring, &stop);
                workers.push(scope.spawn(move || {
                    let mut lat = Vec::with_capacity(1 << 16);
                    let mut inflight = std::collections::VecDeque::with_capacity(share);
                    while !stop.load(Ordering::Relaxed) {
                        while inflight.len() < share {
                            inflight.push_back((
                                Instant::now(),
                                client.start(key, args.clone(), CallOptions::default()),
                            ));
                        }
                        let (t, call) = inflight.pop_front().expect("filled above");
                        call.wait().map_err(|e| e.to_string())?;
                        if measuring.load(Ordering::Relaxed) {
                            lat.push(t.elapsed().as_nanos() as u64);
                        }
                    }
                    for (_, call) in inflight {
                        call.wait().map_err(|e| e.to_string())?;
                    }
                    Ok::<_, String>(lat)
                }));
            }
        }
        let seconds = phases(cfg, progress, &measuring, &stop);
        let parts = workers
            .into_iter()
            .map(|w| w.join().expect("worker"))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((parts, seconds))
    })
}

/// Starts `weft <args> --addr ...` and waits for its `listening ADDR` line.
fn spawn_server(
    args: &[&str],
    transport: &str,
    tag: &str,
    core: Option<&str>,
) -> Result<(NetEndpoint, Child), Usage> {
    let exe = std::env::current_exe().map_err(|e| Usage(format!("own path: {e}")))?;
    let addr = match transport {
        "unix" => format!(
            "unix://{}",
            std::env::temp_dir()
                .join(format!("weft-bench-{}-{tag}.sock", std::process::id()))
                .display()
        ),
        _ => "tcp://127.0.0.1:0".into(),
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
    let mut child = cmd
        .spawn()
        .map_err(|e| Usage(format!("starting server: {e}")))?;
    let stdout = child.stdout.take().expect("piped");
    let mut line = String::new();
    BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| Usage(format!("server output: {e}")))?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or_else(|| Usage(format!("server said {line:?}")))?
        .parse()
        .map_err(|e| Usage(format!("server address: {e}")))?;
    Ok((addr, child))
}

fn stop_child(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

/// Moves every thread of this process to `core`.
fn pin_self(core: &str) {
    let pid = std::process::id().to_string();
    let _ = Command::new("taskset")
        .args(["-a", "-p", "-c", core, &pid])
        .stdout(Stdio::null())
        .status();
}
