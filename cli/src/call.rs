//! `weft call`: one call, result on stdout, error and its kind on stderr.

use crate::args::{Args, Usage};
use bytes::Bytes;
use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft_proto::{CallError, CallOptions, Metadata, MethodKey, NetEndpoint};

pub const USAGE: &str = "weft call --addr ADDR [--component weft.Test] --method M [--data STR | --data-file F] [--timeout-ms N] [--meta k=v]... [--retry]";

/// Exit codes, one per kind of failure.
pub mod exit {
    /// The handler returned an error.
    pub const REMOTE: u8 = 3;
    /// The deadline passed.
    pub const DEADLINE: u8 = 4;
    /// The call was cancelled.
    pub const CANCELLED: u8 = 5;
    /// Communication failed or no replica was reachable.
    pub const COMMUNICATION: u8 = 6;
}

pub fn run(mut args: Args) -> Result<ExitCode, Usage> {
    let addr: NetEndpoint = args
        .value("addr")
        .ok_or_else(|| Usage("--addr is required".into()))?
        .parse()
        .map_err(|e| Usage(format!("--addr: {e}")))?;
    let component = args
        .value("component")
        .unwrap_or_else(|| "weft.Test".into());
    let method = args
        .value("method")
        .ok_or_else(|| Usage("--method is required".into()))?;
    let data = match (args.value("data"), args.value("data-file")) {
        (Some(_), Some(_)) => return Err(Usage("give --data or --data-file, not both".into())),
        (Some(d), None) => Bytes::from(d),
        (None, Some(f)) => {
            Bytes::from(std::fs::read(&f).map_err(|e| Usage(format!("--data-file {f}: {e}")))?)
        }
        (None, None) => Bytes::new(),
    };
    let timeout: Option<u64> = args
        .value("timeout-ms")
        .map(|v| v.parse().map_err(|_| Usage(format!("--timeout-ms: {v:?}"))))
        .transpose()?;
    let mut metadata = None;
    for kv in args.values("meta") {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| Usage(format!("--meta wants k=v, got {kv:?}")))?;
        metadata.get_or_insert_with(Metadata::new).insert(k, v);
    }
    let retry = args.switch("retry");
    args.finish()?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Usage(e.to_string()))?;
    let result = rt.block_on(async {
        let opts = CallOptions {
            deadline: timeout.map(|ms| Instant::now() + Duration::from_millis(ms)),
            metadata,
            retry,
            ..CallOptions::default()
        };
        let conn = weft_tokio::connect(
            weft_tokio::ConstantResolver::new([addr]),
            Default::default(),
        )
        .await?;
        let r = conn
            .call(MethodKey::new(&component, &method), data, opts)
            .await;
        conn.close();
        r
    });
    Ok(match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            let _ = stdout.write_all(&out).and_then(|_| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            let (_, code) = classify(&e);
            // Every error but a handler's already says what kind it is;
            // print the chain once.
            match e.remote() {
                Some(_) => eprintln!("weft call: remote error: {e}"),
                None => eprintln!("weft call: {e}"),
            }
            ExitCode::from(code)
        }
    })
}

fn classify(e: &CallError) -> (&'static str, u8) {
    if e.is_deadline_exceeded() {
        ("deadline exceeded", exit::DEADLINE)
    } else if e.is_cancelled() {
        ("cancelled", exit::CANCELLED)
    } else if e.is_communication() || e.is_unreachable() {
        ("communication error", exit::COMMUNICATION)
    } else {
        ("remote error", exit::REMOTE)
    }
}
