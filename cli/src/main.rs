//! The `weft` command: serve the built-in test service, make a call, or
//! benchmark weft against the raw loopback socket.

mod bench;
mod call;
mod raw;
mod raw_tokio;
mod serve;
mod target;

/// `--observe` of serve and bench: a `tracing` subscriber that records
/// weft's spans and events at INFO (and writes them nowhere) and a metrics
/// recorder, so that a benchmark shows what observability costs.
pub fn install_observers() -> Result<(), Failed> {
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink))
        .with(tracing_subscriber::filter::LevelFilter::INFO);
    tracing::subscriber::set_global_default(subscriber)
        .map_err(|e| Failed(format!("--observe: {e}")))?;
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .map(drop)
        .map_err(|e| Failed(format!("--observe: {e}")))
}

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// What `weft --help` ends with: the built-in service and the exit codes.
const AFTER_HELP: &str = "\
The built-in service (component weft.Test, served by `weft serve`):
  Echo         returns its arguments
  Who          returns the server's --name
  Sleep        sleeps for the milliseconds in its arguments, then returns
  Deadline     the nanoseconds left before the call's deadline, or `none`
  Metadata     the call's metadata as sorted k=v lines
  Trace        the call's trace context as trace_id-span_id-flags, or `none`
  Error        fails with its arguments as the message
  Panic        panics with its arguments
  CancelWait   waits until the call is cancelled
  CancelCount  how many calls were cancelled so far

Exit codes:
  0  success
  1  the command failed (e.g. the address could not be bound)
  2  usage error
  3  the handler returned an error (weft call)
  4  the deadline passed (weft call)
  5  the call was cancelled (weft call)
  6  communication failed or no replica was reachable (weft call)
  130  interrupted (weft bench prints what it measured first)";

/// Service Weaver's call protocol in Rust: serve, call and benchmark.
#[derive(Debug, Parser)]
#[command(name = "weft", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the built-in weft.Test service until SIGINT or SIGTERM.
    Serve(serve::ServeArgs),
    /// Make one call; the result goes to standard output.
    Call(call::CallArgs),
    /// Load-test a server, against the raw loopback socket if asked.
    Bench(bench::BenchArgs),
    /// The benchmark's baseline server (raw sockets, same frames).
    #[command(hide = true)]
    RawEcho(raw::RawArgs),
}

/// A failure of the command itself (exit 1), with its cause.
#[derive(Debug)]
pub struct Failed(pub String);

/// Exit codes the commands share.
pub mod exit {
    /// The command failed.
    pub const FAILED: u8 = 1;
    /// Interrupted by SIGINT or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let name = match &cli.command {
        Command::Serve(_) => "serve",
        Command::Call(_) => "call",
        Command::Bench(_) => "bench",
        Command::RawEcho(_) => "raw-echo",
    };
    let result = match cli.command {
        Command::Serve(a) => serve::run(a).map(|()| ExitCode::SUCCESS),
        Command::Call(a) => call::run(a),
        Command::Bench(a) => bench::run(a),
        Command::RawEcho(a) => raw::serve(a).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(Failed(msg)) => {
            eprintln!("weft {name}: {msg}");
            ExitCode::from(exit::FAILED)
        }
    }
}
