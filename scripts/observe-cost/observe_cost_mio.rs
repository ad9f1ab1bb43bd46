//! The mio form of `observe_cost.rs`: a weft-mio echo server, and a
//! blocking client called from 128 plain threads, each with one 64-byte
//! call at a time. Same roles and output.

use bytes::Bytes;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use weft_mio::{
    CallOptions, Client, ClientOptions, ConstantResolver, HandlerMap, MethodKey, NetEndpoint,
    Request, Server, ServerOptions,
};

const IN_FLIGHT: usize = 128;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let addr: NetEndpoint = args[1].parse()?;
    match args[0].as_str() {
        "serve" => {
            let mut handlers = HandlerMap::new();
            handlers.set("weft.Test", "Echo", |req: Request| Ok(req.args));
            let server = Server::bind(&addr, handlers, ServerOptions::default())?;
            // Standard input closing (the script ending) stops the server.
            std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
            server.shutdown();
            Ok(())
        }
        "load" => {
            let secs: f64 = args[2].parse()?;
            let calls: Option<u64> = args.get(3).map(|c| c.parse()).transpose()?;
            load(addr, Duration::from_secs_f64(secs), calls)
        }
        other => Err(format!("unknown role {other}").into()),
    }
}

fn load(
    addr: NetEndpoint,
    duration: Duration,
    calls: Option<u64>,
) -> Result<(), Box<dyn std::error::Error>> {
    let client = Client::connect(ConstantResolver::new([addr]), ClientOptions::default())?;
    let key = MethodKey::new("weft.Test", "Echo");
    let payload = Bytes::from(vec![7u8; 64]);
    for _ in 0..1000 {
        client.call(key, payload.clone(), CallOptions::default())?;
    }
    let done = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let budget = AtomicU64::new(calls.unwrap_or(u64::MAX));
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..IN_FLIGHT {
            s.spawn(|| {
                while !stop.load(Ordering::Relaxed)
                    && budget
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                        .is_ok()
                {
                    let out = client.call(key, payload.clone(), CallOptions::default());
                    assert_eq!(out.expect("call failed").len(), 64);
                    done.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        if calls.is_none() {
            std::thread::sleep(duration);
            stop.store(true, Ordering::Relaxed);
        }
    });
    let elapsed = start.elapsed().as_secs_f64();
    println!("calls_per_sec {:.0}", done.load(Ordering::Relaxed) as f64 / elapsed);
    client.close();
    Ok(())
}
