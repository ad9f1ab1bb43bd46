//! `weft serve`: the built-in service on either driver, shut down
//! gracefully on SIGINT or SIGTERM (a second one stops at once).

use crate::Failed;
use crate::target::TlsArgs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::signal::unix::{Signal, SignalKind, signal};
use weft_cli::service::{Service, mio_handlers, tokio_handlers};
use weft_proto::NetEndpoint;
use weft_tokio::{ServerOptions, Shutdown};

/// Which driver serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Driver {
    /// weft-tokio.
    Tokio,
    /// weft-mio.
    Mio,
}

impl Driver {
    pub fn name(self) -> &'static str {
        match self {
            Driver::Tokio => "tokio",
            Driver::Mio => "mio",
        }
    }
}

/// `weft serve`'s arguments.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Where to listen: tcp://HOST:PORT (port 0: any) or unix:///PATH;
    /// tls://HOST:PORT or tls+unix:///PATH with --tls-cert and --tls-key.
    #[arg(long, value_parser = parse_listen)]
    addr: Listen,
    #[command(flatten)]
    tls: TlsArgs,
    /// Which driver serves.
    #[arg(long, value_enum, default_value = "tokio")]
    driver: Driver,
    /// What the `Who` method answers.
    #[arg(long, default_value = "weft")]
    name: String,
    /// Runtime threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// How long requests already received may run after SIGINT/SIGTERM
    /// (10s, 500ms, 2m); a second signal stops at once.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    grace: Duration,
    /// Serve Prometheus metrics on http://ADDR/metrics.
    #[arg(long, value_name = "HOST:PORT", conflicts_with = "observe")]
    metrics_addr: Option<SocketAddr>,
    /// Record spans (discarded) and metrics, to measure their cost.
    #[arg(long)]
    observe: bool,
}

/// A listening address, and whether its scheme said TLS.
#[derive(Debug, Clone)]
struct Listen {
    endpoint: NetEndpoint,
    tls: bool,
}

fn parse_listen(s: &str) -> Result<Listen, String> {
    if s.starts_with("tls://") || s.starts_with("tls+unix://") {
        return NetEndpoint::parse_tls(s)
            .map(|endpoint| Listen {
                endpoint,
                tls: true,
            })
            .map_err(|e| e.to_string());
    }
    s.parse()
        .map(|endpoint| Listen {
            endpoint,
            tls: false,
        })
        .map_err(|e: weft_proto::ParseNetEndpoint| e.to_string())
}

pub fn run(args: ServeArgs) -> Result<(), Failed> {
    if args.observe {
        crate::install_observers()?;
    }
    let tls = args.tls.server()?;
    if args.tls.tls_ca.is_some() {
        return Err(Failed(
            "--tls-ca is a client's; a server's is --tls-client-ca".into(),
        ));
    }
    let tls = match (tls, args.addr.tls) {
        (Some(t), _) => Some(t),
        (None, true) => {
            return Err(Failed(format!(
                "{} needs --tls-cert and --tls-key",
                args.addr.endpoint.tls_address()
            )));
        }
        (None, false) => None,
    };
    let addr = args.addr.endpoint;
    let grace = args.grace;
    let opts = ServerOptions {
        shutdown_grace: grace,
        ..ServerOptions::default()
    };
    let service = Service::new(&args.name);
    // One thread: a current-thread runtime, with no cross-thread wakeups.
    let rt = match args.threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| Failed(format!("runtime: {e}")))?;
    if let NetEndpoint::Unix(path) = &addr {
        remove_stale_socket(path)?;
    }
    let bind_failed = |e: std::io::Error| Failed(format!("cannot listen on {addr}: {e}"));
    // Only a socket this process bound is its to remove: a failed bind
    // leaves whatever is at the path (a live server's socket, a file), and
    // a successor that bound the path while this one drained keeps its own.
    let mut bound = None;
    let result = rt.block_on(async {
        if let Some(m) = args.metrics_addr {
            metrics_exporter_prometheus::PrometheusBuilder::new()
                .with_http_listener(m)
                .install()
                .map_err(|e| Failed(format!("cannot serve metrics on {m}: {e}")))?;
            eprintln!("weft serve: metrics on http://{m}/metrics");
        }
        let mut signals = Signals::new().map_err(|e| Failed(format!("signals: {e}")))?;
        let served = match args.driver {
            Driver::Tokio => {
                let mut listener = weft_tokio::Listener::bind(&addr)
                    .await
                    .map_err(bind_failed)?;
                bound = socket_identity(&addr);
                announce(
                    &listener.local_endpoint().map_err(bind_failed)?,
                    tls.is_some(),
                );
                if let Some(tls) = &tls {
                    listener = listener.tls(tls);
                }
                let shutdown = Shutdown::new();
                let handlers = tokio_handlers(&service);
                let serving =
                    weft_tokio::serve_with_shutdown(listener, handlers, opts, shutdown.clone());
                until_stopped(serving, &mut signals, &shutdown, grace).await
            }
            Driver::Mio => {
                let server = match &tls {
                    Some(tls) => {
                        weft_mio::Server::bind_tls(&addr, tls.clone(), mio_handlers(&service), opts)
                    }
                    None => weft_mio::Server::bind(&addr, mio_handlers(&service), opts),
                }
                .map_err(bind_failed)?;
                bound = socket_identity(&addr);
                announce(server.local_endpoint(), tls.is_some());
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
            }
        };
        served.map_err(|e| Failed(format!("serving {addr}: {e}")))
    });
    if let NetEndpoint::Unix(path) = &addr
        && bound.is_some()
        && socket_identity(&addr) == bound
    {
        let _ = std::fs::remove_file(path);
    }
    result
}

/// The device and inode of the socket file at a Unix endpoint, which tell
/// this process's socket from one bound at the same path later.
fn socket_identity(addr: &NetEndpoint) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let NetEndpoint::Unix(path) = addr else {
        return None;
    };
    let meta = std::fs::symlink_metadata(path).ok()?;
    Some((meta.dev(), meta.ino()))
}

/// A Unix socket file that nobody listens on (left by a crash) would make
/// the bind fail: remove it. A live one is another server's: refuse.
fn remove_stale_socket(path: &Path) -> Result<(), Failed> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        // Not ours to remove; the bind says what is wrong.
        return Ok(());
    }
    match std::os::unix::net::UnixStream::connect(path) {
        Ok(_) => Err(Failed(format!(
            "cannot listen on unix://{}: a server is already listening there",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
            std::fs::remove_file(path).map_err(|e| {
                Failed(format!("removing the stale socket {}: {e}", path.display()))
            })?;
            eprintln!("weft serve: removed the stale socket {}", path.display());
            Ok(())
        }
        Err(_) => Ok(()),
    }
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
pub fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// The first line on standard output: where clients dial (the bench's
/// child-server protocol reads it).
fn announce(endpoint: &NetEndpoint, tls: bool) {
    match tls {
        true => println!("listening {}", endpoint.tls_address()),
        false => println!("listening {endpoint}"),
    }
    let _ = std::io::stdout().flush();
}
