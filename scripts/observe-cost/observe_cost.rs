//! The load behind `scripts/observe-cost/run.sh`: a weft-tokio echo server
//! and a client keeping 128 calls of 64 bytes in flight, each as a user's
//! `#[tokio::main]` program runs them. Written against the API the
//! project had before observability, so that the same source builds both
//! the library before issue 16 and after it.
//!
//! `observe_cost serve ADDR` serves until its standard input closes;
//! `observe_cost load ADDR SECONDS [CALLS]` prints `calls_per_sec N`, or,
//! given CALLS, makes exactly that many calls (for instruction counts).

use bytes::Bytes;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weft_tokio::{
    CallOptions, ClientOptions, ConstantResolver, HandlerMap, Listener, MethodKey, NetEndpoint,
    Request, ServerOptions,
};

const IN_FLIGHT: usize = 128;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: NetEndpoint = args[1].parse()?;
    match args[0].as_str() {
        "serve" => serve(addr).await,
        "load" => {
            let secs: f64 = args[2].parse()?;
            let calls: Option<u64> = args.get(3).map(|c| c.parse()).transpose()?;
            load(addr, Duration::from_secs_f64(secs), calls).await
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

async fn serve(addr: NetEndpoint) -> Result<(), Box<dyn std::error::Error>> {
    let listener = Listener::bind(&addr).await?;
    let mut handlers = HandlerMap::new();
    handlers.set("weft.Test", "Echo", |req: Request| async move { Ok(req.args) });
    // Standard input closing (the script ending) stops the server.
    let stdin_closed = tokio::task::spawn_blocking(|| {
        let mut sink = Vec::new();
        let _ = std::io::Read::read_to_end(&mut std::io::stdin(), &mut sink);
    });
    weft_tokio::serve_until(listener, handlers, ServerOptions::default(), async {
        let _ = stdin_closed.await;
    })
    .await?;
    Ok(())
}

async fn load(
    addr: NetEndpoint,
    duration: Duration,
    calls: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let conn = Arc::new(
        weft_tokio::connect(ConstantResolver::new([addr]), ClientOptions::default()).await?,
    );
    let key = MethodKey::new("weft.Test", "Echo");
    let payload = Bytes::from(vec![7u8; 64]);
    // Warm up: connections made, buffers grown.
    for _ in 0..1000 {
        conn.call(key, payload.clone(), CallOptions::default()).await?;
    }
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let budget = calls.map(|c| Arc::new(AtomicU64::new(c)));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..IN_FLIGHT {
        let (conn, payload, done, stop, budget) = (
            conn.clone(),
            payload.clone(),
            done.clone(),
            stop.clone(),
            budget.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                if let Some(b) = &budget
                    && b.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_err()
                {
                    break;
                }
                let out = conn.call(key, payload.clone(), CallOptions::default()).await;
                assert_eq!(out.expect("call failed").len(), 64);
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    if calls.is_none() {
        tokio::time::sleep(duration).await;
        stop.store(true, Ordering::Relaxed);
    }
    for t in tasks {
        t.await?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    println!("calls_per_sec {:.0}", done.load(Ordering::Relaxed) as f64 / elapsed);
    conn.close();
    Ok(())
}
