//! Request ids crafted to collide in a server's request table.
//!
//! Before the table was keyed per connection, ids `(i << 40) * C⁻¹` all
//! landed in one bucket of its fixed hash (40 000 of them cost seconds of
//! CPU). This feeds a `ServerConn` 40 000 such requests and, for
//! comparison, 40 000 ordinary ids, and reports the time each takes.

use bytes::Bytes;
use std::time::Instant;
use weft_proto::{
    DEFAULT_FLATTEN_LIMIT, MethodKey, RequestHeader, ServerConfig, ServerConn, Transmit,
};

const N: u64 = 40_000;

fn crafted(i: u64) -> u64 {
    const C: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut inv: u64 = 1;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(C.wrapping_mul(inv)));
    }
    (i << 40).wrapping_mul(inv)
}

fn wire(ids: impl Iterator<Item = u64>) -> Vec<u8> {
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    tx.push_version(weft_proto::Version::CURRENT);
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    for id in ids {
        tx.push_request(id, header.fields(), &Bytes::new());
    }
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn run(name: &str, bytes: &[u8]) {
    let best = (0..3)
        .map(|_| {
            let now = Instant::now();
            let config = ServerConfig {
                hash_seed: 0x5eed,
                ..ServerConfig::default()
            };
            let mut conn = ServerConn::new(now, config);
            let start = Instant::now();
            conn.handle_input(now, bytes);
            assert_eq!(conn.in_flight() as u64, N);
            start.elapsed()
        })
        .min()
        .expect("three runs");
    println!("{name:<36} {:>8.1} ms", best.as_secs_f64() * 1e3);
}

fn main() {
    run("40 000 requests, ordinary ids", &wire(1..=N));
    run("40 000 requests, crafted ids", &wire((1..=N).map(crafted)));
}
