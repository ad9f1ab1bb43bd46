//! Bodies of the cargo-fuzz targets in `fuzz/`.
//!
//! They live here, as ordinary functions, so that `cargo test` runs them over
//! the checked-in corpus and a crash found by the fuzzer stays a regression
//! test. Each one checks invariants with assertions; a panic is a finding.

use crate::frame::{FrameDecoder, HEADER_LEN};
use crate::{Message, RemoteError, RequestHeader};

/// Payload limit the `frame_decoder` target runs with: small, so the fuzzer
/// reaches the limit checks often.
pub const FUZZ_MAX_PAYLOAD: u64 = 1 << 16;

/// Feeds `data` to a frame decoder in chunks whose sizes come from the data
/// itself, parsing every frame, and checks that memory stays bounded; then
/// again with zeros padded after each chunk, so that frames large enough
/// for a buffer of their own arrive, some held while others are dropped.
pub fn frame_decoder(data: &[u8]) {
    let Some((&seed, rest)) = data.split_first() else {
        return;
    };
    feed_frames(rest, usize::from(seed) + 1, &[], FUZZ_MAX_PAYLOAD, false);
    let pad = vec![0u8; usize::from(seed) * 256];
    feed_frames(
        rest,
        usize::from(seed % 64) + 1,
        &pad,
        FUZZ_LARGE_MAX_PAYLOAD,
        true,
    );
}

/// Payload limit of the large-frame pass: room for frames past the size
/// that gets a buffer of its own (256 KiB).
const FUZZ_LARGE_MAX_PAYLOAD: u64 = 1 << 20;

/// Feeds `rest` to a decoder of `max` bytes per payload, `chunk` bytes at a
/// time each followed by `pad`, parsing every frame (and holding those of
/// even id if `hold`), and checks that memory stays bounded and that held
/// frames keep their bytes: a buffer is not read into again while a frame
/// in it is held.
fn feed_frames(mut rest: &[u8], chunk: usize, pad: &[u8], max: u64, hold: bool) {
    let mut dec = FrameDecoder::new(max);
    let bound = 2 * (HEADER_LEN + max as usize + chunk + pad.len());
    let mut held = Vec::new();
    while !rest.is_empty() {
        let (now, later) = rest.split_at(chunk.min(rest.len()));
        rest = later;
        dec.extend_from_slice(now);
        dec.extend_from_slice(pad);
        loop {
            match dec.decode() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() as u64 <= max);
                    if hold && frame.header.id % 2 == 0 {
                        held.push((frame.payload.clone(), frame.payload.to_vec()));
                    }
                    if let Ok(Message::ErrorResponse { payload, .. }) = Message::parse(frame) {
                        let _ = RemoteError::decode(&payload);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            dec.capacity() <= bound,
            "decoder holds {} bytes",
            dec.capacity()
        );
    }
    for (payload, copy) in held {
        assert_eq!(&payload[..], &copy[..]);
    }
}

/// Decodes `data` as a request header; whatever decodes must re-encode to a
/// header that decodes to the same value.
pub fn request_header(data: &[u8]) {
    if let Ok(h) = RequestHeader::decode(data) {
        let mut buf = Vec::with_capacity(h.encoded_len());
        h.encode(&mut buf);
        assert_eq!(buf.len(), h.encoded_len());
        assert_eq!(RequestHeader::decode(&buf).as_ref(), Ok(&h));
    }
}

/// Decodes `data` as an error payload; whatever decodes must round-trip.
pub fn error_payload(data: &[u8]) {
    if let Ok(e) = RemoteError::decode(data) {
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), e.encoded_len());
        // Lossy UTF-8 repair means the bytes may differ, but not the value.
        assert_eq!(RemoteError::decode(&buf).as_ref(), Ok(&e));
    }
}

/// Reads the fuzzer's bytes as a script: opcodes and their operands.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (now, rest) = self.0.split_at(n.min(self.0.len()));
        self.0 = rest;
        now
    }
}

/// Payload limit for the connection targets.
const CONN_FUZZ_CONFIG: crate::ConnConfig = crate::ConnConfig {
    max_payload: 1 << 16,
    flatten_limit: 4096,
    // Small, so scripts reach it.
    max_request_backlog: 256,
};

/// A client connection after a valid handshake, driven by a script of
/// commands, timer ticks and arbitrary peer bytes. Checks that every call
/// ends at most once and that buffered output stays bounded.
pub fn client_conn(data: &[u8]) {
    use crate::{CallOptions, ClientConn, ClientEvent, MethodKey};
    use std::time::{Duration, Instant};

    let mut now = Instant::now();
    let mut conn = ClientConn::new(now, CONN_FUZZ_CONFIG);
    conn.handle_input(
        now,
        &[0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
    );
    let mut started = Vec::new();
    let mut ended = std::collections::HashSet::new();
    let mut out = Vec::new();
    let mut cancels = 0;
    let mut s = Script(data);
    while let Some(op) = s.byte() {
        match op % 7 {
            0 => {
                let deadline = s
                    .byte()
                    .filter(|d| d % 2 == 1)
                    .map(|d| now + Duration::from_micros(u64::from(d) * 10));
                let opts = CallOptions {
                    deadline,
                    ..CallOptions::default()
                };
                started.push(conn.start_call(
                    now,
                    MethodKey([op; 16]),
                    bytes::Bytes::from_static(b"a"),
                    &opts,
                ));
            }
            1 => {
                if let (Some(i), false) = (s.byte(), started.is_empty()) {
                    conn.cancel(now, started[usize::from(i) % started.len()]);
                    cancels += 1;
                }
            }
            2 => {
                let us = u64::from(s.byte().unwrap_or(0)) * 100;
                now += Duration::from_micros(us);
                conn.handle_timeout(now);
            }
            5 => {
                // A transport that takes part of the queue.
                let n = usize::from(s.byte().unwrap_or(0));
                conn.advance_transmit(now, n.min(conn.transmit().len()));
            }
            3 => {
                let n = usize::from(s.byte().unwrap_or(0));
                let bytes = s.take(n).to_vec();
                conn.handle_input(now, &bytes);
            }
            4 => conn.handle_transport_closed(now, "fuzz"),
            _ => {
                out.clear();
                conn.drain_transmit(&mut out);
            }
        }
        while let Some(e) = conn.poll_event() {
            if let ClientEvent::Done { id, .. } = e {
                assert!(started.contains(&id), "unknown call");
                assert!(ended.insert(id), "call ended twice");
            }
        }
        // A request and its cancel take under 64 bytes here; anything more
        // would be output the core invented.
        assert!(conn.transmit().len() <= 64 * started.len() + 64);
        // Requests stop being queued past the backlog bound (one more is
        // let in); cancels of sent requests are still queued.
        let bound = CONN_FUZZ_CONFIG.max_request_backlog + 64 + 16 * cancels;
        assert!(conn.transmit().len() <= bound, "backlog bound broken");
        if !conn.transmit().is_empty() {
            assert_eq!(
                conn.poll_timeout(),
                Some(now),
                "queued output must wake the driver"
            );
        }
    }
    conn.handle_transport_closed(now, "end");
    while let Some(e) = conn.poll_event() {
        if let ClientEvent::Done { id, .. } = e {
            assert!(ended.insert(id), "call ended twice");
        }
    }
    assert_eq!(ended.len(), started.len(), "every call ends");
}

/// A server connection after a valid handshake, fed arbitrary client bytes
/// interleaved with handler answers, timer ticks, graceful shutdowns and
/// the driver's reports (reading paused, output held). Checks that a request
/// is cancelled at most once and only while in flight.
pub fn server_conn(data: &[u8]) {
    use crate::{RemoteError, ServerConn, ServerEvent};
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    let mut now = Instant::now();
    let mut conn = ServerConn::new(now, CONN_FUZZ_CONFIG);
    // Half the inputs speak version 1 (goaway on shutdown), half 0; by
    // length, so that the corpus keeps its meaning.
    let version = (data.len() % 2) as u8;
    conn.handle_input(
        now,
        &[
            0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, version, 0, 0, 0,
        ],
    );
    let mut in_flight: Vec<u64> = Vec::new();
    let mut cancelled = HashSet::new();
    let mut out = Vec::new();
    let mut s = Script(data);
    while let Some(op) = s.byte() {
        let pick = |s: &mut Script<'_>, v: &Vec<u64>| {
            s.byte()
                .filter(|_| !v.is_empty())
                .map(|i| v[usize::from(i) % v.len()])
        };
        match op % 6 {
            0 | 1 => {
                let n = usize::from(s.byte().unwrap_or(0)) * if op % 6 == 1 { 8 } else { 1 };
                let bytes = s.take(n).to_vec();
                conn.handle_input(now, &bytes);
            }
            2 => {
                if let Some(id) = pick(&mut s, &in_flight) {
                    conn.respond(now, id, Ok(bytes::Bytes::from_static(b"r")));
                    in_flight.retain(|x| *x != id);
                }
            }
            3 => {
                if let Some(id) = pick(&mut s, &in_flight) {
                    match (op / 6) % 3 {
                        0 => conn.respond_cancelled(now, id),
                        1 => conn.respond_unknown_method(now, id),
                        _ => conn.respond(now, id, Err(RemoteError::new("e"))),
                    }
                    in_flight.retain(|x| *x != id);
                }
            }
            // A graceful shutdown, its grace from the next byte (0: at once).
            4 if (op / 6) % 4 == 3 => {
                let grace = Duration::from_millis(u64::from(s.byte().unwrap_or(0)));
                conn.shutdown(now, now + grace);
            }
            4 => {
                now += Duration::from_micros(u64::from(s.byte().unwrap_or(0)) * 1000);
                conn.handle_timeout(now);
            }
            // What a driver reports: reading paused at its handler limit
            // (or resumed), bytes its transport still holds.
            _ if (op / 6) % 5 == 2 => conn.handle_read_paused(now, s.byte().unwrap_or(0) % 2 == 0),
            _ if (op / 6) % 5 == 3 => conn.handle_output_held(now, s.byte().unwrap_or(0) % 2 == 0),
            _ => {
                out.clear();
                conn.drain_transmit(&mut out);
                // A graceful close: the driver shuts writes, and the client
                // may close its end.
                if conn.wants_close_write() {
                    conn.handle_write_closed(now);
                    if (op / 6) % 5 == 4 {
                        conn.handle_transport_closed(now, "client closed");
                        assert!(conn.is_finished(), "the client's close ends a half-close");
                    }
                }
            }
        }
        if conn.wants_close_write() {
            assert!(conn.failure().is_some() && conn.transmit().is_empty());
        }
        while let Some(e) = conn.poll_event() {
            match e {
                ServerEvent::Request(r) => {
                    assert!(
                        !in_flight.contains(&r.id),
                        "duplicate in-flight id delivered"
                    );
                    in_flight.push(r.id);
                    cancelled.remove(&r.id);
                }
                ServerEvent::Cancel { id, .. } => {
                    assert!(
                        in_flight.contains(&id),
                        "cancel for a request not in flight"
                    );
                    assert!(cancelled.insert(id), "cancelled twice");
                }
                ServerEvent::Failed(_) => in_flight.clear(),
            }
        }
        assert_eq!(conn.in_flight(), in_flight.len());
    }
}

/// A pool over up to three replicas, driven by a script: calls started
/// (with or without deadline, retry, wait-for-ready) and cancelled, dials
/// that succeed or fail, server bytes (a version 0 or 1 reply, a goaway,
/// or anything),
/// broken transports, endpoint sets changing, time passing. Checks Service
/// Weaver's replica invariants after every step, that no call ends twice,
/// and that after `close` every call has ended.
pub fn pool(data: &[u8]) {
    use crate::{
        Action, CallOptions, ConnId, EndpointsVersion, MethodKey, Pool, PoolCallId, PoolConfig,
        PoolEvent, Resolution, ResolverKind, RoundRobin,
    };
    use std::collections::HashSet;
    use std::time::{Duration, Instant};

    const VERSION_REPLY: [u8; 20] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let addrs = |bits: u8| -> Vec<String> {
        ["a", "b", "c"]
            .iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, a)| a.to_string())
            .collect()
    };
    let mut now = Instant::now();
    let config = PoolConfig {
        conn: CONN_FUZZ_CONFIG,
        ..PoolConfig::default()
    };
    let initial = Resolution {
        addrs: addrs(0b011),
        version: Some(EndpointsVersion(1)),
    };
    let Ok(mut pool) = Pool::connect(
        now,
        config,
        Box::new(RoundRobin::new()),
        ResolverKind::Watched,
        initial,
    ) else {
        return;
    };
    let mut dialing: Vec<ConnId> = Vec::new();
    let mut open: Vec<ConnId> = Vec::new();
    let mut started: Vec<PoolCallId> = Vec::new();
    let mut ended: HashSet<PoolCallId> = HashSet::new();
    let mut version = 1;
    let mut sink = Vec::new();
    let mut s = Script(data);
    let mut drain = |pool: &mut Pool, dialing: &mut Vec<ConnId>, open: &mut Vec<ConnId>| loop {
        let mut progressed = false;
        while let Some(action) = pool.poll_action() {
            progressed = true;
            match action {
                Action::Dial { conn, .. } => dialing.push(conn),
                Action::Close { conn } => {
                    dialing.retain(|c| *c != conn);
                    open.retain(|c| *c != conn);
                }
                _ => {}
            }
        }
        while let Some(conn) = pool.poll_transmit() {
            progressed = true;
            sink.clear();
            pool.drain_transmit(conn, &mut sink);
        }
        while let Some(PoolEvent::Done { id, .. }) = pool.poll_event() {
            progressed = true;
            assert!(ended.insert(id), "{id:?} ended twice");
        }
        if !progressed {
            break;
        }
    };
    let pick = |s: &mut Script<'_>, v: &[ConnId]| {
        s.byte()
            .filter(|_| !v.is_empty())
            .map(|i| v[usize::from(i) % v.len()])
    };
    while let Some(op) = s.byte() {
        match op % 8 {
            0 => {
                let arg = s.byte().unwrap_or(0);
                let opts = CallOptions {
                    deadline: (arg & 1 != 0)
                        .then(|| now + Duration::from_millis(u64::from(arg >> 3) * 10)),
                    retry: arg & 2 != 0,
                    wait_for_ready: arg & 4 != 0,
                    ..CallOptions::default()
                };
                let key = MethodKey::new("weft.Test", "Echo");
                started.push(pool.start_call(now, key, bytes::Bytes::new(), opts));
            }
            1 => {
                if let Some(i) = s.byte().filter(|_| !started.is_empty()) {
                    pool.cancel(now, started[usize::from(i) % started.len()]);
                }
            }
            2 => {
                if let Some(conn) = pick(&mut s, &dialing) {
                    dialing.retain(|c| *c != conn);
                    open.push(conn);
                    pool.handle_dial_ok(now, conn);
                }
            }
            3 => {
                if let Some(conn) = pick(&mut s, &dialing) {
                    dialing.retain(|c| *c != conn);
                    pool.handle_dial_failed(now, conn, "refused");
                }
            }
            4 => {
                if let Some(conn) = pick(&mut s, &open) {
                    let mut v1 = VERSION_REPLY;
                    v1[16] = 1;
                    match (op >> 3) & 3 {
                        1 => pool.handle_input(now, conn, &VERSION_REPLY),
                        2 => pool.handle_input(now, conn, &v1),
                        // A goaway (after a version-1 reply, or a protocol
                        // error after a version-0 one).
                        3 => {
                            let mut tx = crate::Transmit::new(0);
                            tx.push_goaway(u64::from(s.byte().unwrap_or(0)), "fuzz");
                            let mut frame = Vec::new();
                            tx.drain_into(&mut frame);
                            pool.handle_input(now, conn, &frame);
                        }
                        _ => {
                            let n = usize::from(s.byte().unwrap_or(0));
                            let bytes = s.take(n).to_vec();
                            pool.handle_input(now, conn, &bytes);
                        }
                    }
                }
            }
            5 => {
                if let Some(conn) = pick(&mut s, &open) {
                    open.retain(|c| *c != conn);
                    pool.handle_transport_closed(now, conn, "broken");
                }
            }
            6 => {
                version += 1;
                let res = Resolution {
                    addrs: addrs(s.byte().unwrap_or(0)),
                    version: Some(EndpointsVersion(version)),
                };
                pool.handle_resolved(now, res);
            }
            _ => {
                now += Duration::from_millis(u64::from(s.byte().unwrap_or(0)) * 10);
                pool.handle_timeout(now);
            }
        }
        drain(&mut pool, &mut dialing, &mut open);
        pool.assert_invariants();
    }
    pool.close(now);
    drain(&mut pool, &mut dialing, &mut open);
    let started: HashSet<PoolCallId> = started.into_iter().collect();
    assert_eq!(ended, started, "every call ends once the pool closes");
}

/// Decodes `data[1..]` as a value of the type `data[0]` picks; whatever
/// decodes must re-encode to no more bytes than it came from (nothing is
/// invented) and decode again to the same encoding.
pub fn codec(data: &[u8]) {
    use crate::codec::{
        self, AppError, Complex, Decode, Encode, Encoder, ErrorList, GoTime, Nilable,
    };
    use std::collections::BTreeMap;

    fn check<T: Decode + Encode>(input: &[u8]) {
        let Ok(v) = codec::decode::<T>(input) else {
            return;
        };
        let once = codec::encode(&v);
        assert!(
            once.len() <= input.len(),
            "{} bytes from {}",
            once.len(),
            input.len()
        );
        let again = codec::decode::<T>(&once).expect("a re-encoded value decodes");
        assert_eq!(codec::encode(&again), once);
    }

    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 12 {
        0 => check::<(bool, i8, u16, i32, u64, isize, char)>(rest),
        1 => check::<(f32, f64, Complex<f64>)>(rest),
        2 => check::<String>(rest),
        3 => check::<Vec<String>>(rest),
        4 => check::<Nilable<Vec<u8>>>(rest),
        5 => check::<BTreeMap<String, Vec<i64>>>(rest),
        // A HashMap re-encodes in another order (random, as in Go).
        6 => check::<BTreeMap<u8, Option<Box<(u8, String)>>>>(rest),
        7 => check::<[Option<i16>; 3]>(rest),
        8 => check::<(GoTime, std::time::Duration)>(rest),
        9 => check::<Vec<Vec<Vec<u32>>>>(rest),
        10 => check::<(Nilable<Vec<String>>, Nilable<BTreeMap<String, String>>)>(rest),
        _ => {
            let mut dec = codec::Decoder::new(rest);
            type List = ErrorList<codec::NoRegisteredErrors>;
            if let Ok(Some(list)) = List::decode_error(&mut dec) {
                // Messages that are not UTF-8 are replaced (U+FFFD, up to
                // 3 bytes for 1), so the bound is looser than for values;
                // an entry of a type not registered reads as a message
                // naming it (its key from the input, and a fixed text).
                let mut enc = Encoder::new();
                list.encode_error(&mut enc);
                assert!(enc.as_slice().len() <= 3 * dec.offset() + 128);
                let again = List::decode_error(&mut codec::Decoder::new(enc.as_slice()));
                assert_eq!(again, Ok(Some(list)));
            }
        }
    }
}
