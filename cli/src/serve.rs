//! `weft serve`: the built-in service on either driver, shut down
//! gracefully on SIGINT or SIGTERM (a second one stops at once).

use crate::args::{Args, Usage};
use std::io::Write;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use weft_cli::service::{Service, mio_handlers, tokio_handlers};
use weft_proto::NetEndpoint;
use weft_tokio::{ServerOptions, Shutdown};

pub const USAGE: &str = "weft serve --addr tcp://127.0.0.1:7000|unix:///path [--driver tokio|mio] [--name NAME] [--threads N] [--grace 10s]";

pub fn run(mut args: Args) -> Result<(), Usage> {
    let addr: NetEndpoint = args
        .value("addr")
        .ok_or_else(|| Usage("--addr is required".into()))?
        .parse()
        .map_err(|e| Usage(format!("--addr: {e}")))?;
    let driver = args.value("driver").unwrap_or_else(|| "tokio".into());
    let name = args.value("name").unwrap_or_else(|| "weft".into());
    let threads: usize = args.parsed("threads", 2)?;
    let grace = match args.value("grace") {
        Some(g) => parse_duration(&g).map_err(|e| Usage(format!("--grace: {e}")))?,
        None => ServerOptions::default().shutdown_grace,
    };
    args.finish()?;
    let opts = ServerOptions {
        shutdown_grace: grace,
        ..ServerOptions::default()
    };
    let service = Service::new(&name);
    // One thread: a current-thread runtime, with no cross-thread wakeups.
    let rt = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| Usage(format!("runtime: {e}")))?;
    let result = match driver.as_str() {
        "tokio" => rt.block_on(async {
            let mut signals = Signals::new()?;
            let listener = weft_tokio::Listener::bind(&addr).await?;
            announce(&listener.local_endpoint()?);
            let shutdown = Shutdown::new();
            let handlers = tokio_handlers(&service);
            let serving =
                weft_tokio::serve_with_shutdown(listener, handlers, opts, shutdown.clone());
            until_stopped(serving, &mut signals, &shutdown, grace).await
        }),
        "mio" => rt.block_on(async {
            let mut signals = Signals::new()?;
            let server = weft_mio::Server::bind(&addr, mio_handlers(&service), opts)?;
            announce(server.local_endpoint());
            let shutdown = server.shutdown_handle();
            // `Server::shutdown` blocks until the server has stopped, so it
            // waits on a thread of its own while signals are still heard.
            let serving = async {
                shutdown.changed(0).await;
                tokio::task::spawn_blocking(move || server.shutdown())
                    .await
                    .map_err(std::io::Error::other)
            };
            until_stopped(serving, &mut signals, &shutdown, grace).await
        }),
        other => {
            return Err(Usage(format!(
                "--driver must be tokio or mio, not {other:?}"
            )));
        }
    };
    if let NetEndpoint::Unix(path) = &addr {
        let _ = std::fs::remove_file(path);
    }
    result.map_err(|e: std::io::Error| Usage(format!("serve: {e}")))
}

/// Runs `serving` (which returns once the server has stopped): the first
/// signal starts a graceful shutdown, the second stops at once.
async fn until_stopped(
    serving: impl std::future::Future<Output = std::io::Result<()>>,
    signals: &mut Signals,
    shutdown: &Shutdown,
    grace: Duration,
) -> std::io::Result<()> {
    let mut serving = std::pin::pin!(serving);
    tokio::select! {
        result = &mut serving => return result,
        () = signals.next() => {}
    }
    eprintln!("weft serve: shutting down, grace {grace:?}; signal again to stop at once");
    shutdown.graceful(grace);
    tokio::select! {
        result = &mut serving => return result,
        () = signals.next() => {}
    }
    eprintln!("weft serve: stopping at once");
    shutdown.immediate();
    serving.await
}

/// SIGINT and SIGTERM, each heard as often as it comes.
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> std::io::Result<Signals> {
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    async fn next(&mut self) {
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
    }
}

/// `10s`, `500ms`, `2m`, or a bare number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 10s or 500ms"))?;
    match unit {
        "" | "s" => Ok(Duration::from_secs(n)),
        "ms" => Ok(Duration::from_millis(n)),
        "m" => Ok(Duration::from_secs(n.saturating_mul(60))),
        _ => Err(format!("{s:?}: unit must be ms, s or m")),
    }
}

fn announce(endpoint: &NetEndpoint) {
    println!("listening {endpoint}");
    let _ = std::io::stdout().flush();
}
