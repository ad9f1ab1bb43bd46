//! A steady load: a fixed number of calls kept in flight until stopped,
//! counting calls, failures and the longest single call.

use crate::{ClientImpl, TestClient};
use bytes::Bytes;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};
use weft_cli::service::COMPONENT;
use weft_proto::{CallError, CallOptions, MethodKey};

/// What a [`Load`] saw.
#[derive(Debug, Default, Clone)]
pub struct LoadReport {
    /// Calls that ended, successfully or not.
    pub calls: u64,
    /// The failed ones, with their errors (the first 10 kept).
    pub failures: u64,
    /// The first errors.
    pub errors: Vec<String>,
    /// The longest time one call took.
    pub longest: Duration,
}

impl LoadReport {
    fn add(&mut self, took: Duration, result: &Result<Bytes, CallError>) {
        self.calls += 1;
        self.longest = self.longest.max(took);
        if let Err(e) = result {
            self.failures += 1;
            if self.errors.len() < 10 {
                self.errors.push(e.to_string());
            }
        }
    }
}

/// Calls kept in flight by [`TestClient::keep_calling`].
pub struct Load {
    stop: Arc<AtomicBool>,
    report: Arc<Mutex<LoadReport>>,
    workers: Vec<thread::JoinHandle<()>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    rt: Option<Arc<tokio::runtime::Runtime>>,
}

impl Load {
    /// The report so far.
    pub fn report(&self) -> LoadReport {
        self.report.lock().expect("unpoisoned").clone()
    }

    /// Stops starting calls, waits for those in flight, and reports.
    pub fn finish(self) -> LoadReport {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            w.join().expect("load thread");
        }
        if let Some(rt) = self.rt {
            for t in self.tasks {
                rt.block_on(t).expect("load task");
            }
        }
        Arc::try_unwrap(self.report)
            .map(|m| m.into_inner().expect("unpoisoned"))
            .unwrap_or_else(|r| r.lock().expect("unpoisoned").clone())
    }
}

impl TestClient {
    /// Keeps `n` calls of `weft.Test.<method>(args)` in flight (each
    /// caller starts its next call as its last one ends) until
    /// [`Load::finish`]. Calls have default options: no retry.
    pub fn keep_calling(&self, n: usize, method: &str, args: &'static str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let report = Arc::new(Mutex::new(LoadReport::default()));
        let key = MethodKey::new(COMPONENT, method);
        let args = Bytes::from_static(args.as_bytes());
        let mut load = Load {
            stop: stop.clone(),
            report: report.clone(),
            workers: Vec::new(),
            tasks: Vec::new(),
            rt: None,
        };
        match &self.inner {
            ClientImpl::Tokio { rt, conn } => {
                load.rt = Some(rt.clone());
                for _ in 0..n {
                    let (conn, args, stop, report) =
                        (conn.clone(), args.clone(), stop.clone(), report.clone());
                    load.tasks.push(rt.spawn(async move {
                        while !stop.load(Ordering::Relaxed) {
                            let start = Instant::now();
                            let r = conn.call(key, args.clone(), CallOptions::default()).await;
                            report.lock().expect("unpoisoned").add(start.elapsed(), &r);
                        }
                    }));
                }
            }
            ClientImpl::Mio(c) => {
                // A blocking caller per slot.
                for _ in 0..n {
                    let (c, args, stop, report) =
                        (c.clone(), args.clone(), stop.clone(), report.clone());
                    load.workers.push(thread::spawn(move || {
                        while !stop.load(Ordering::Relaxed) {
                            let start = Instant::now();
                            let r = c.call(key, args.clone(), CallOptions::default());
                            report.lock().expect("unpoisoned").add(start.elapsed(), &r);
                        }
                    }));
                }
            }
        }
        load
    }
}
