//! The `weft.Test` service, implemented once per driver.
//!
//! | method | behaviour |
//! | --- | --- |
//! | `Echo` | returns the arguments |
//! | `Error` | fails with the arguments as message |
//! | `Sleep` | sleeps the decimal milliseconds in the arguments, ending early if cancelled |
//! | `Who` | returns the server's name |
//! | `CancelWait` | waits until cancelled, then counts one cancellation |
//! | `CancelCount` | the number of cancellations counted, decimal |
//! | `Metadata` | request metadata as sorted `k=v` lines joined by newlines |
//! | `Deadline` | microseconds left until the request's deadline, or `none` |
//! | `Trace` | the trace context as `trace_id-span_id-flags` hex, or `none` |
//! | `Panic` | panics with [`PANIC_MESSAGE`], after sleeping the decimal milliseconds in the arguments if any (so it panics inline, or after moving off) |

use bytes::Bytes;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use weft_proto::{HandlerError, Metadata, TraceContext};

/// The component all methods belong to.
pub const COMPONENT: &str = "weft.Test";

/// What `Panic` panics with.
pub const PANIC_MESSAGE: &str = "weft.Test.Panic panics on purpose";

/// State shared by a server's handlers.
#[derive(Debug)]
pub struct Service {
    name: Bytes,
    /// (handlers of Sleep and CancelWait started, cancellations counted)
    counts: Mutex<(u64, u64)>,
    counted: Condvar,
}

impl Service {
    /// A service answering `Who` with `name`.
    pub fn new(name: &str) -> Arc<Service> {
        Arc::new(Service {
            name: Bytes::from(name.to_owned()),
            counts: Mutex::new((0, 0)),
            counted: Condvar::new(),
        })
    }

    /// Cancellations counted by `CancelWait`.
    pub fn cancel_count(&self) -> u64 {
        self.counts.lock().expect("unpoisoned").1
    }

    /// `Sleep` and `CancelWait` handlers started.
    pub fn started(&self) -> u64 {
        self.counts.lock().expect("unpoisoned").0
    }

    /// Blocks until at least `n` cancellations are counted or `timeout`
    /// passes; returns whether they were.
    pub fn wait_cancel_count(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |c| c.1 >= n)
    }

    /// Blocks until at least `n` `Sleep` or `CancelWait` handlers have
    /// started (so their requests are in flight), or `timeout` passes.
    pub fn wait_started(&self, n: u64, timeout: Duration) -> bool {
        self.wait(timeout, |c| c.0 >= n)
    }

    fn wait(&self, timeout: Duration, done: impl Fn(&(u64, u64)) -> bool) -> bool {
        let g = self.counts.lock().expect("unpoisoned");
        let (g, _) = self
            .counted
            .wait_timeout_while(g, timeout, |c| !done(c))
            .expect("unpoisoned");
        done(&g)
    }

    fn bump(&self, f: impl FnOnce(&mut (u64, u64))) {
        f(&mut self.counts.lock().expect("unpoisoned"));
        self.counted.notify_all();
    }

    fn count_start(&self) {
        self.bump(|c| c.0 += 1);
    }

    fn count_cancel(&self) {
        self.bump(|c| c.1 += 1);
    }
}

fn parse_ms(args: &[u8]) -> Result<u64, String> {
    std::str::from_utf8(args)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .ok_or_else(|| {
            format!(
                "Sleep wants decimal milliseconds, got {:?}",
                String::from_utf8_lossy(args)
            )
        })
}

/// `Panic`'s milliseconds: none if the arguments are empty.
fn panic_delay(args: &[u8]) -> Result<Duration, HandlerError> {
    match args {
        [] => Ok(Duration::ZERO),
        ms => parse_ms(ms)
            .map(Duration::from_millis)
            .map_err(HandlerError::new),
    }
}

fn metadata_lines(md: Option<&Metadata>) -> Bytes {
    let mut lines: Vec<String> = md
        .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
        .unwrap_or_default();
    lines.sort();
    Bytes::from(lines.join("\n"))
}

fn deadline_text(deadline: Option<Instant>) -> Bytes {
    Bytes::from(match deadline {
        Some(d) => d
            .saturating_duration_since(Instant::now())
            .as_micros()
            .to_string(),
        None => "none".to_owned(),
    })
}

fn trace_text(trace: Option<&TraceContext>) -> Bytes {
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    Bytes::from(match trace {
        Some(t) => format!("{}-{}-{:02x}", hex(&t.trace_id), hex(&t.span_id), t.flags),
        None => "none".to_owned(),
    })
}

/// The service for weft-tokio.
pub fn tokio_handlers(svc: &Arc<Service>) -> weft_tokio::HandlerMap {
    use weft_tokio::{HandlerError, Request};
    let mut h = weft_tokio::HandlerMap::new();
    h.set(
        COMPONENT,
        "Echo",
        |req: Request| async move { Ok(req.args) },
    );
    h.set(COMPONENT, "Error", |req: Request| async move {
        Err(HandlerError::new(
            String::from_utf8_lossy(&req.args).into_owned(),
        ))
    });
    let s = svc.clone();
    h.set(COMPONENT, "Sleep", move |req: Request| {
        s.count_start();
        async move {
            let ms = parse_ms(&req.args).map_err(HandlerError::new)?;
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(ms)) => Ok(Bytes::new()),
                _ = req.cancelled() => Err(HandlerError::cancelled()),
            }
        }
    });
    let s = svc.clone();
    h.set(COMPONENT, "Who", move |_: Request| {
        let name = s.name.clone();
        async move { Ok(name) }
    });
    let s = svc.clone();
    h.set(COMPONENT, "CancelWait", move |req: Request| {
        let s = s.clone();
        s.count_start();
        async move {
            req.cancelled().await;
            s.count_cancel();
            Err(HandlerError::cancelled())
        }
    });
    let s = svc.clone();
    h.set(COMPONENT, "CancelCount", move |_: Request| {
        let n = s.cancel_count();
        async move { Ok(Bytes::from(n.to_string())) }
    });
    h.set(COMPONENT, "Metadata", |req: Request| async move {
        Ok(metadata_lines(req.metadata.as_ref()))
    });
    h.set(COMPONENT, "Deadline", |req: Request| async move {
        Ok(deadline_text(req.deadline))
    });
    h.set(COMPONENT, "Trace", |req: Request| async move {
        Ok(trace_text(req.trace.as_ref()))
    });
    h.set(COMPONENT, "Panic", |req: Request| async move {
        let delay = panic_delay(&req.args)?;
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        panic!("{PANIC_MESSAGE}")
    });
    h
}

/// The service for weft-mio.
pub fn mio_handlers(svc: &Arc<Service>) -> weft_mio::HandlerMap {
    use weft_mio::{HandlerError, Request};
    let mut h = weft_mio::HandlerMap::new();
    h.set(COMPONENT, "Echo", |req: Request| Ok(req.args));
    h.set(COMPONENT, "Error", |req: Request| {
        Err(HandlerError::new(
            String::from_utf8_lossy(&req.args).into_owned(),
        ))
    });
    let s = svc.clone();
    h.set(COMPONENT, "Sleep", move |req: Request| {
        s.count_start();
        let ms = parse_ms(&req.args).map_err(HandlerError::new)?;
        match req.wait_cancelled(Duration::from_millis(ms)) {
            Some(_) => Err(HandlerError::cancelled()),
            None => Ok(Bytes::new()),
        }
    });
    let s = svc.clone();
    h.set(COMPONENT, "Who", move |_: Request| Ok(s.name.clone()));
    let s = svc.clone();
    h.set(COMPONENT, "CancelWait", move |req: Request| {
        s.count_start();
        while req.wait_cancelled(Duration::from_secs(3600)).is_none() {}
        s.count_cancel();
        Err(HandlerError::cancelled())
    });
    let s = svc.clone();
    h.set(COMPONENT, "CancelCount", move |_: Request| {
        Ok(Bytes::from(s.cancel_count().to_string()))
    });
    h.set(COMPONENT, "Metadata", |req: Request| {
        Ok(metadata_lines(req.metadata.as_ref()))
    });
    h.set(COMPONENT, "Deadline", |req: Request| {
        Ok(deadline_text(req.deadline))
    });
    h.set(COMPONENT, "Trace", |req: Request| {
        Ok(trace_text(req.trace.as_ref()))
    });
    h.set(COMPONENT, "Panic", |req: Request| {
        let delay = panic_delay(&req.args)?;
        if !delay.is_zero() {
            req.wait_cancelled(delay);
        }
        panic!("{PANIC_MESSAGE}")
    });
    h
}
