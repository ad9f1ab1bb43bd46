//! The `weft` command: serve the built-in test service, make a call, or
//! benchmark weft against the raw loopback socket.

mod args;
mod bench;
mod call;
mod raw;
mod serve;
mod stats;

use args::{Args, Usage};
use std::process::ExitCode;

const USAGE_EXIT: u8 = 2;

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let (usage, result) = match cmd.as_str() {
        "serve" => (
            serve::USAGE,
            Args::parse(argv, &[])
                .and_then(serve::run)
                .map(|()| ExitCode::SUCCESS),
        ),
        "call" => (
            call::USAGE,
            Args::parse(argv, &["retry"]).and_then(call::run),
        ),
        "bench" => (
            bench::USAGE,
            Args::parse(argv, &["json", "matrix", "baseline"])
                .and_then(bench::run)
                .map(|()| ExitCode::SUCCESS),
        ),
        "raw-echo" => (
            raw::USAGE,
            Args::parse(argv, &[])
                .and_then(raw::serve)
                .map(|()| ExitCode::SUCCESS),
        ),
        "" | "help" | "--help" | "-h" => {
            println!(
                "weft: Service Weaver's call protocol in Rust\n\n  {}\n  {}\n  {}",
                serve::USAGE,
                call::USAGE,
                bench::USAGE
            );
            return ExitCode::SUCCESS;
        }
        other => (
            "weft serve|call|bench ...",
            Err(Usage(format!("unknown command {other:?}"))),
        ),
    };
    match result {
        Ok(code) => code,
        Err(Usage(msg)) => {
            eprintln!("weft {cmd}: {msg}\nusage: {usage}");
            ExitCode::from(USAGE_EXIT)
        }
    }
}
