//! Steady-state heap allocations per call on each side of a connection,
//! counted exactly: start -> transmit -> request event -> respond ->
//! transmit -> response event. The payload `Bytes` the caller hands in is
//! made outside the counted region.

mod counting;

use bytes::Bytes;
use counting::allocations;
use std::time::{Duration, Instant};
use weft_proto::{
    CallOptions, ClientConn, ClientEvent, ConnConfig, MethodKey, ServerConn, ServerEvent,
};

/// Allocations allowed per call per side. The ceiling is 2; the
/// cores reach ~0 (buffers are reused once warm), so the test holds them
/// near that to catch any regression on the per-call path.
const BUDGET: f64 = 0.05;

struct Totals {
    client: u64,
    server: u64,
}

/// Runs `calls` calls one at a time (`batch` = 1) or `batch` at a time, and
/// counts allocations made inside each core's methods.
fn run(
    client: &mut ClientConn,
    server: &mut ServerConn,
    now: Instant,
    calls: usize,
    batch: usize,
    opts: &CallOptions,
) -> Totals {
    let method = MethodKey::new("weft.Test", "Echo");
    let args: Vec<Bytes> = (0..batch).map(|_| Bytes::from(vec![7u8; 64])).collect();
    let mut wire = Vec::with_capacity(1 << 20);
    let mut t = Totals {
        client: 0,
        server: 0,
    };
    for _ in 0..calls / batch {
        let (n, ()) = allocations(|| {
            for a in &args {
                client.start_call(now, method, a.clone(), opts);
            }
            wire.clear();
            client.drain_transmit(&mut wire);
        });
        t.client += n;
        let (n, ()) = allocations(|| {
            server.handle_input(now, &wire);
            while let Some(ServerEvent::Request(req)) = server.poll_event() {
                server.respond(now, req.id, Ok(req.args));
            }
            wire.clear();
            server.drain_transmit(&mut wire);
        });
        t.server += n;
        let (n, done) = allocations(|| {
            client.handle_input(now, &wire);
            let mut done = 0;
            while let Some(ClientEvent::Done { result, .. }) = client.poll_event() {
                assert_eq!(result.expect("echo").len(), 64);
                done += 1;
            }
            done
        });
        assert_eq!(done, batch);
        t.client += n;
    }
    t
}

fn connected() -> (ClientConn, ServerConn, Instant) {
    let now = Instant::now();
    let mut client = ClientConn::new(now, ConnConfig::default());
    let mut server = ServerConn::new(now, ConnConfig::default());
    let mut wire = Vec::new();
    client.drain_transmit(&mut wire);
    server.handle_input(now, &wire);
    wire.clear();
    server.drain_transmit(&mut wire);
    client.handle_input(now, &wire);
    assert!(matches!(
        client.poll_event(),
        Some(ClientEvent::Connected { .. })
    ));
    (client, server, now)
}

fn per_call(batch: usize, opts: &CallOptions) -> (f64, f64) {
    let (mut client, mut server, now) = connected();
    run(&mut client, &mut server, now, 4096, batch, opts); // warm-up: buffers grow once
    let calls = 16_384;
    let t = run(&mut client, &mut server, now, calls, batch, opts);
    let per = |n: u64| n as f64 / calls as f64;
    println!(
        "batch {batch}: client {:.3}, server {:.3} allocations per call",
        per(t.client),
        per(t.server)
    );
    (per(t.client), per(t.server))
}

#[test]
fn one_call_at_a_time_stays_within_budget() {
    let (c, s) = per_call(1, &CallOptions::default());
    assert!(c <= BUDGET && s <= BUDGET, "client {c}, server {s}");
}

#[test]
fn pipelined_calls_stay_within_budget() {
    let (c, s) = per_call(64, &CallOptions::default());
    assert!(c <= BUDGET && s <= BUDGET, "client {c}, server {s}");
}

#[test]
fn calls_with_deadlines_stay_within_budget() {
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(3600)),
        ..Default::default()
    };
    let (c, s) = per_call(16, &opts);
    assert!(c <= BUDGET && s <= BUDGET, "client {c}, server {s}");
}
