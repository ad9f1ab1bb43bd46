//! Encode and decode throughput of a 64-byte request and its response.
//!
//! A plain harness (no criterion): each case runs for a fixed number of
//! frames, three times, and reports the best rate in frames per second.

use bytes::Bytes;
use std::hint::black_box;
use std::time::Instant;
use weft_proto::{DEFAULT_FLATTEN_LIMIT, Transmit};
use weft_proto::{DEFAULT_MAX_PAYLOAD, FrameDecoder};
use weft_proto::{Message, MethodKey, RequestHeader};

const FRAMES: usize = 2_000_000;
const BATCH: usize = 64;

fn rate(name: &str, mut f: impl FnMut() -> usize) {
    let best = (0..3)
        .map(|_| {
            let start = Instant::now();
            let n = f();
            n as f64 / start.elapsed().as_secs_f64()
        })
        .fold(0.0, f64::max);
    println!("{name:<28} {:>8.2} M frames/s", best / 1e6);
}

fn main() {
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    let args = Bytes::from(vec![0x78; 64]);

    // Encoding: push a batch, then consume it as a writer would.
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    rate("encode request (64 B)", || {
        for i in 0..FRAMES / BATCH {
            for j in 0..BATCH {
                tx.push_request((i * BATCH + j) as u64 + 1, header.fields(), &args);
            }
            black_box(tx.first_chunk());
            tx.advance(tx.len());
        }
        FRAMES
    });
    rate("encode response (64 B)", || {
        for i in 0..FRAMES / BATCH {
            for j in 0..BATCH {
                tx.push_response((i * BATCH + j) as u64 + 1, &args);
            }
            black_box(tx.first_chunk());
            tx.advance(tx.len());
        }
        FRAMES
    });

    // Decoding: a batch of frames arrives as one read.
    let mut wire = Vec::new();
    for i in 0..BATCH {
        tx.push_request(i as u64 + 1, header.fields(), &args);
    }
    tx.drain_into(&mut wire);
    let requests = wire.clone();
    wire.clear();
    for i in 0..BATCH {
        tx.push_response(i as u64 + 1, &args);
    }
    tx.drain_into(&mut wire);
    let responses = wire;

    for (name, input) in [
        ("decode request (64 B)", &requests),
        ("decode response (64 B)", &responses),
    ] {
        let mut dec = FrameDecoder::new(DEFAULT_MAX_PAYLOAD);
        rate(name, || {
            for _ in 0..FRAMES / BATCH {
                dec.extend_from_slice(input);
                while let Some(frame) = dec.decode().expect("valid frames") {
                    black_box(Message::parse(frame).expect("valid message"));
                }
            }
            FRAMES
        });
    }
}
