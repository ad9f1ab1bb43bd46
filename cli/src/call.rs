//! `weft call`: one call, result on stdout, error and its kind on stderr.

use crate::Failed;
use crate::target::{Target, TlsArgs};
use bytes::Bytes;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use weft_proto::{CallError, CallOptions, Metadata, MethodKey};

/// `weft call`'s arguments.
#[derive(Debug, clap::Args)]
pub struct CallArgs {
    /// The server: tcp://HOST:PORT, unix:///PATH, tls://HOST:PORT,
    /// tls+unix:///PATH, or replicas: unixdir:///DIR, dns://NAME:PORT,
    /// dns+srv://_SVC._tcp.NAME.
    #[arg(long)]
    addr: Target,
    #[command(flatten)]
    tls: TlsArgs,
    /// The component: its full name, e.g. a Go interface's package path
    /// and name (github.com/acme/shop/Cart).
    #[arg(long, default_value = "weft.Test")]
    component: String,
    /// The method's name.
    #[arg(long)]
    method: String,
    #[command(flatten)]
    payload: Payload,
    /// Give up after this long (10s, 500ms, 2m); `none` waits forever.
    #[arg(long, default_value = "10s", value_parser = parse_timeout)]
    timeout: Timeout,
    /// The timeout in milliseconds (overrides --timeout).
    #[arg(long, value_name = "MS")]
    timeout_ms: Option<u64>,
    /// Metadata for the handler, as k=v; repeat for more.
    #[arg(long = "meta", value_name = "K=V", value_parser = parse_meta)]
    meta: Vec<(String, String)>,
    /// Retry after communication errors until the timeout (only for
    /// idempotent methods).
    #[arg(long)]
    retry: bool,
}

/// The arguments of a call: a string, a file, or standard input.
#[derive(Debug, Clone, clap::Args)]
pub struct Payload {
    /// The arguments, as a string.
    #[arg(long, conflicts_with = "data_file")]
    data: Option<String>,
    /// The arguments, from a file; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    data_file: Option<PathBuf>,
}

impl Payload {
    /// Whether any arguments were given.
    pub fn is_given(&self) -> bool {
        self.data.is_some() || self.data_file.is_some()
    }

    /// The bytes given (none: empty).
    pub fn read(&self) -> Result<Bytes, Failed> {
        match (&self.data, &self.data_file) {
            (Some(d), _) => Ok(Bytes::from(d.clone())),
            (None, Some(f)) if f.as_os_str() == "-" => {
                let mut buf = Vec::new();
                std::io::stdin()
                    .read_to_end(&mut buf)
                    .map_err(|e| Failed(format!("reading standard input: {e}")))?;
                Ok(Bytes::from(buf))
            }
            (None, Some(f)) => std::fs::read(f)
                .map(Bytes::from)
                .map_err(|e| Failed(format!("--data-file {}: {e}", f.display()))),
            (None, None) => Ok(Bytes::new()),
        }
    }
}

/// A call's timeout; `None`: none.
#[derive(Debug, Clone, Copy)]
struct Timeout(Option<Duration>);

/// `10s`, `500ms`, `2m`, a bare number of seconds, or `none`.
fn parse_timeout(s: &str) -> Result<Timeout, String> {
    if s == "none" {
        return Ok(Timeout(None));
    }
    crate::serve::parse_duration(s).map(|d| Timeout(Some(d)))
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not k=v"))
}

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

pub fn run(args: CallArgs) -> Result<ExitCode, Failed> {
    let data = args.payload.read()?;
    let timeout = match args.timeout_ms {
        Some(ms) => Some(Duration::from_millis(ms)),
        None => args.timeout.0,
    };
    let mut metadata = None;
    for (k, v) in &args.meta {
        metadata.get_or_insert_with(Metadata::new).insert(k, v);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Failed(format!("runtime: {e}")))?;
    let key = MethodKey::new(&args.component, &args.method);
    let tls = args.tls.client(&args.addr)?;
    let result = rt.block_on(async {
        let opts = CallOptions {
            // A timeout past what the clock can hold is no deadline.
            deadline: timeout.and_then(|t| Instant::now().checked_add(t)),
            metadata,
            retry: args.retry,
            ..CallOptions::default()
        };
        let conn =
            crate::target::connect_tokio(&args.addr, tls.as_ref(), Default::default()).await?;
        let r = conn.call(key, data, opts).await;
        conn.close();
        r
    });
    Ok(match result {
        Ok(out) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`weft call ... | head -c1`) is not an error.
            let _ = stdout.write_all(&out).and_then(|_| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            // Every error but a handler's already says what kind it is;
            // print the chain once.
            match e.remote() {
                Some(_) => eprintln!("weft call: remote error: {e}"),
                None => eprintln!("weft call: {e}"),
            }
            ExitCode::from(exit_code(&e))
        }
    })
}

fn exit_code(e: &CallError) -> u8 {
    if e.is_deadline_exceeded() {
        exit::DEADLINE
    } else if e.is_cancelled() {
        exit::CANCELLED
    } else if e.is_communication() || e.is_unreachable() {
        exit::COMMUNICATION
    } else {
        exit::REMOTE
    }
}
