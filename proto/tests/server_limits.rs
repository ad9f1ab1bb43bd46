//! The server's limits on what a client can make it hold: oversize
//! requests, slow frames, silent connections, unread output, and request
//! ids crafted to collide in its request table.

use bytes::Bytes;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_proto::{
    ConnConfig, ConnError, IdHasher, Message, MethodKey, PeerError, RemoteError, RequestHeader,
    SeededIds, ServerConfig, ServerConn, ServerEvent, Version,
};
use weft_proto::{DEFAULT_BODY_TIMEOUT, DEFAULT_HANDSHAKE_TIMEOUT, LINGER};
use weft_proto::{DEFAULT_FLATTEN_LIMIT, Transmit};
use weft_proto::{FrameDecoder, MessageType};

fn config(max_payload: u64) -> ServerConfig {
    ServerConfig {
        conn: ConnConfig {
            max_payload,
            ..ConnConfig::default()
        },
        ..ServerConfig::default()
    }
}

fn version() -> Vec<u8> {
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    tx.push_version(Version::CURRENT);
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn request(id: u64, args: &[u8]) -> Vec<u8> {
    let mut tx = Transmit::new(DEFAULT_FLATTEN_LIMIT);
    let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
    tx.push_request(id, header.fields(), &Bytes::copy_from_slice(args));
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

/// A frame of a type no version knows: the client broke the protocol.
fn unknown_frame() -> Vec<u8> {
    let mut frame = vec![0; 8];
    frame.extend_from_slice(&9u64.to_le_bytes());
    frame
}

/// Every frame the server has queued for the client.
fn sent(conn: &mut ServerConn) -> Vec<Message> {
    let mut out = Vec::new();
    conn.drain_transmit(&mut out);
    let mut dec = FrameDecoder::new(u64::MAX >> 8);
    dec.extend_from_slice(&out);
    std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect()
}

fn events(conn: &mut ServerConn) -> Vec<ServerEvent> {
    std::iter::from_fn(|| conn.poll_event()).collect()
}

#[test]
fn an_oversize_request_is_refused_its_body_discarded_and_the_connection_kept() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, config(1024));
    conn.handle_input(now, &version());
    assert!(matches!(sent(&mut conn)[..], [Message::Version(_)]));
    // A request claiming 1 MB, whose body then streams in.
    let mut header = 7u64.to_le_bytes().to_vec();
    header.extend_from_slice(&(MessageType::Request as u64 | (1_000_000 << 8)).to_le_bytes());
    conn.handle_input(now, &header);
    let body = vec![0xAB; 10_000];
    for _ in 0..100 {
        conn.handle_input(now, &body);
        // Discarded as it arrives: never buffered, never reserved.
        assert!(conn.read_buf(0).capacity() < 128 * 1024);
    }
    let frames = sent(&mut conn);
    let [Message::ErrorResponse { id: 7, payload }] = &frames[..] else {
        panic!("{frames:?}")
    };
    let err = RemoteError::decode(payload).unwrap();
    assert_eq!(
        err.message(),
        "request 7 of 1000000 bytes exceeds the limit of 1024 bytes"
    );
    // The next request on the same connection is served.
    conn.handle_input(now, &request(8, b"hi"));
    let evs = events(&mut conn);
    assert!(
        matches!(&evs[..], [ServerEvent::Request(r)] if r.id == 8 && &r.args[..] == b"hi"),
        "{evs:?}"
    );
    assert!(conn.failure().is_none());
}

#[test]
fn a_connection_without_a_handshake_is_closed_after_the_handshake_timeout() {
    let t0 = Instant::now();
    let mut conn = ServerConn::new(t0, ServerConfig::default());
    assert_eq!(conn.poll_timeout(), Some(t0 + DEFAULT_HANDSHAKE_TIMEOUT));
    conn.handle_timeout(t0 + DEFAULT_HANDSHAKE_TIMEOUT - Duration::from_millis(1));
    assert!(conn.failure().is_none());
    conn.handle_timeout(t0 + DEFAULT_HANDSHAKE_TIMEOUT);
    assert_eq!(
        conn.failure(),
        Some(&ConnError::Peer(PeerError::NoHandshake(
            DEFAULT_HANDSHAKE_TIMEOUT
        )))
    );
    assert!(conn.is_finished());
}

#[test]
fn a_frame_that_trickles_in_slower_than_the_body_timeout_closes_the_connection() {
    let t0 = Instant::now();
    let mut conn = ServerConn::new(t0, ServerConfig::default());
    conn.handle_input(t0, &version());
    let _ = sent(&mut conn);
    assert_eq!(conn.poll_timeout(), None, "idle: no timer");
    let req = request(1, &[1; 100]);
    // Whole frames keep the connection alive however long it lives.
    let t1 = t0 + 2 * DEFAULT_BODY_TIMEOUT;
    conn.handle_input(t1, &req);
    assert_eq!(events(&mut conn).len(), 1);
    conn.respond(t1, 1, Ok(Bytes::new()));
    let _ = sent(&mut conn);
    assert_eq!(conn.poll_timeout(), None);
    // Half a frame starts the clock; more bytes of the same frame do not
    // reset it.
    let t2 = t1 + Duration::from_secs(1);
    conn.handle_input(t2, &req[..50]);
    conn.handle_input(t2 + Duration::from_secs(20), &req[50..60]);
    assert_eq!(conn.poll_timeout(), Some(t2 + DEFAULT_BODY_TIMEOUT));
    conn.handle_timeout(t2 + DEFAULT_BODY_TIMEOUT);
    assert_eq!(
        conn.failure(),
        Some(&ConnError::Peer(PeerError::FrameTimeout(
            DEFAULT_BODY_TIMEOUT
        )))
    );
}

#[test]
fn timeouts_past_the_clocks_range_never_fire() {
    let config = ServerConfig {
        handshake_timeout: Duration::MAX,
        body_timeout: Duration::MAX,
        idle_timeout: Some(Duration::MAX),
        ..ServerConfig::default()
    };
    let t0 = Instant::now();
    let far = t0 + Duration::from_secs(50 * 365 * 24 * 60 * 60);
    let mut conn = ServerConn::new(t0, config);
    assert!(conn.next_deadline().is_none_or(|t| t > far));
    conn.handle_input(t0, &version());
    let req = request(1, &[1; 100]);
    conn.handle_input(t0, &req[..50]);
    assert!(conn.next_deadline().is_none_or(|t| t > far));
    conn.handle_input(t0, &req[50..]);
    assert_eq!(events(&mut conn).len(), 1);
    conn.respond(t0, 1, Ok(Bytes::new()));
    // Idle now: the idle timer, too, is past any real wait.
    assert!(conn.next_deadline().is_none_or(|t| t > far));
    conn.handle_timeout(far);
    assert!(conn.failure().is_none(), "{:?}", conn.failure());
    assert_eq!(
        sent(&mut conn).len(),
        2,
        "the version reply and the response"
    );
}

#[test]
fn a_protocol_error_in_the_handshakes_read_still_gets_the_version_reply() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    let mut input = version();
    // Then a frame of an unknown type, in the same read.
    input.extend_from_slice(&unknown_frame());
    conn.handle_input(now, &input);
    assert!(conn.failure().is_some());
    assert!(!conn.is_finished(), "the reply is still to be written");
    assert!(!conn.wants_read());
    let mut copy = Vec::new();
    conn.drain_transmit(&mut copy);
    assert_eq!(copy, version(), "Go's version reply");
    assert!(conn.is_finished());
}

#[test]
fn output_a_broken_client_does_not_take_is_dropped_after_the_linger() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    let mut input = version();
    input.extend_from_slice(&unknown_frame());
    conn.handle_input(now, &input);
    assert!(!conn.is_finished());
    assert_eq!(conn.next_deadline(), Some(now + LINGER));
    conn.handle_timeout(now + LINGER);
    assert!(conn.is_finished());
}

/// The version reply is written, but the transport holds part of it (TLS
/// records the socket had no room for): the broken connection is not
/// finished until the transport reports them out.
#[test]
fn output_the_transport_holds_keeps_a_failed_connection_until_it_is_out() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    let mut input = version();
    input.extend_from_slice(&unknown_frame());
    conn.handle_input(now, &input);
    let _ = sent(&mut conn);
    conn.handle_output_held(now, true);
    assert!(!conn.is_finished(), "held bytes are still output");
    conn.handle_output_held(now + Duration::from_millis(10), false);
    assert!(conn.is_finished());
}

/// Held bytes a peer never takes are dropped with the connection after the
/// linger, as queued ones are; a connection that fails with nothing queued
/// but bytes held starts its linger then.
#[test]
fn output_held_after_a_failure_waits_no_longer_than_the_linger() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    conn.handle_input(now, &version());
    let _ = sent(&mut conn);
    conn.handle_output_held(now, true);
    // The peer broke the protocol.
    conn.handle_input(now, &unknown_frame());
    assert!(conn.failure().is_some());
    assert!(!conn.is_finished());
    assert_eq!(conn.next_deadline(), Some(now + LINGER));
    conn.handle_timeout(now + LINGER);
    assert!(conn.is_finished());
}

/// A transport that failed holds nothing worth waiting for.
#[test]
fn a_closed_transport_drops_what_it_held() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    conn.handle_input(now, &version());
    conn.handle_output_held(now, true);
    conn.handle_transport_closed(now, "reset");
    assert!(conn.is_finished());
    // A driver's flush after the failure still sees the bytes in its
    // stream: they are not waited for.
    conn.handle_output_held(now, false);
    conn.handle_output_held(now, true);
    assert!(conn.is_finished());
}

#[test]
fn a_client_that_does_not_read_stops_being_read() {
    let now = Instant::now();
    let cfg = ServerConfig {
        max_queued_output: 64 * 1024,
        ..ServerConfig::default()
    };
    let mut conn = ServerConn::new(now, cfg);
    conn.handle_input(now, &version());
    let args = Bytes::from(vec![0; 16 * 1024]);
    let mut id = 0;
    while conn.wants_read() {
        id += 1;
        conn.handle_input(now, &request(id, &args));
        for e in events(&mut conn) {
            if let ServerEvent::Request(r) = e {
                conn.respond(now, r.id, Ok(r.args));
            }
        }
        assert!(id < 100, "never stopped reading");
    }
    // Just past the bound, not a byte of unbounded growth.
    assert!(conn.transmit().len() <= 64 * 1024 + 16 * 1024 + 64);
    // Once the client reads, reading resumes.
    let mut out = Vec::new();
    conn.drain_transmit(&mut out);
    assert!(conn.wants_read());
}

/// A request whose frame arrived whole but whose header does not decode
/// (here a bool byte of 2) is that request's problem, not the
/// connection's: it is answered with an error naming it, and the next
/// request is served.
#[test]
fn a_request_with_a_bad_header_is_refused_alone() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    conn.handle_input(now, &version());
    let _ = sent(&mut conn);
    let mut bad = request(1, b"x");
    // Frame header (16), header length (4), then the header's trace flag.
    assert_eq!(bad[16 + 4 + 24], 0, "the trace context flag");
    bad[16 + 4 + 24] = 2;
    let mut input = bad;
    input.extend_from_slice(&request(2, b"ok"));
    conn.handle_input(now, &input);
    assert_eq!(conn.failure(), None);
    let got = events(&mut conn);
    assert!(
        matches!(&got[..], [ServerEvent::Request(r)] if r.id == 2),
        "{got:?}"
    );
    let answers = sent(&mut conn);
    let [Message::ErrorResponse { id: 1, payload }] = &answers[..] else {
        panic!("{answers:?}")
    };
    let err = RemoteError::decode(payload).unwrap();
    assert!(err.to_string().contains("bad bool byte 2"), "{err}");
}

fn frame_timed_out(conn: &ServerConn) -> bool {
    conn.failure()
        == Some(&ConnError::Peer(PeerError::FrameTimeout(
            DEFAULT_BODY_TIMEOUT,
        )))
}

/// A driver that stops reading (its requests waiting for a handler hold
/// all they may) tells the core: a frame half-decoded before that is not
/// the client's fault while the pause lasts, and gets its whole time
/// again once the server reads again.
#[test]
fn the_body_timeout_does_not_run_while_the_driver_holds_the_bytes() {
    let t0 = Instant::now();
    let mut conn = ServerConn::new(t0, ServerConfig::default());
    conn.handle_input(t0, &version());
    let _ = sent(&mut conn);
    let req = request(1, &[1; 100]);
    conn.handle_input(t0, &req[..50]);
    conn.handle_read_paused(t0, true);
    conn.handle_timeout(t0 + DEFAULT_BODY_TIMEOUT);
    assert_eq!(conn.failure(), None, "paused by the server");
    let t1 = t0 + DEFAULT_BODY_TIMEOUT * 3 / 2;
    conn.handle_read_paused(t1, false);
    assert_eq!(conn.poll_timeout(), Some(t1 + DEFAULT_BODY_TIMEOUT));
    // Still half a frame a whole timeout after reading resumed: the client.
    conn.handle_timeout(t1 + DEFAULT_BODY_TIMEOUT);
    assert!(frame_timed_out(&conn), "{:?}", conn.failure());
}

/// The same while the server does not read because the client does not
/// take its answers: not the client's slow frame either.
#[test]
fn the_body_timeout_does_not_run_while_output_is_over_its_limit() {
    let t0 = Instant::now();
    let cfg = ServerConfig {
        max_queued_output: 1024,
        ..ServerConfig::default()
    };
    let mut conn = ServerConn::new(t0, cfg);
    conn.handle_input(t0, &version());
    let _ = sent(&mut conn);
    // A whole request and half the next in one read.
    let mut input = request(1, &[1; 4096]);
    let next = request(2, &[2; 100]);
    input.extend_from_slice(&next[..50]);
    conn.handle_input(t0, &input);
    for e in events(&mut conn) {
        if let ServerEvent::Request(r) = e {
            conn.respond(t0, r.id, Ok(r.args));
        }
    }
    assert!(!conn.wants_read(), "the answer is over the limit");
    conn.handle_timeout(t0 + DEFAULT_BODY_TIMEOUT);
    assert_eq!(conn.failure(), None, "not read by the server's choice");
    // The client takes the answer: the frame's time runs whole from the
    // next moment the connection hears of.
    let n = conn.transmit().len();
    conn.advance_transmit(n);
    let t1 = t0 + DEFAULT_BODY_TIMEOUT * 3 / 2;
    conn.handle_timeout(t1);
    assert_eq!(conn.failure(), None);
    assert_eq!(conn.poll_timeout(), Some(t1 + DEFAULT_BODY_TIMEOUT));
    conn.handle_timeout(t1 + DEFAULT_BODY_TIMEOUT);
    assert!(frame_timed_out(&conn), "{:?}", conn.failure());
}

/// A key that counts how often the map compares it: the work a lookup
/// does beyond hashing.
#[derive(Clone, Copy)]
struct Counted(u64);

static COMPARISONS: AtomicUsize = AtomicUsize::new(0);

impl PartialEq for Counted {
    fn eq(&self, other: &Self) -> bool {
        COMPARISONS.fetch_add(1, Ordering::Relaxed);
        self.0 == other.0
    }
}
impl Eq for Counted {}
impl Hash for Counted {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.0);
    }
}

/// Ids that all hash alike under the fixed hash the server used to key its
/// request table with: the fixed hash is `(0 ^ id) * C`, so `(i << 40) * C⁻¹`
/// hashes to `i << 40`, whose top bits (hashbrown's tag) and low bits
/// (its bucket) are the same for every small `i`.
fn crafted_ids(n: u64) -> Vec<u64> {
    const C: u64 = 0x9e37_79b9_7f4a_7c15;
    // C is odd, so it has an inverse mod 2^64 (Newton's iteration).
    let mut inv: u64 = 1;
    for _ in 0..6 {
        inv = inv.wrapping_mul(2u64.wrapping_sub(C.wrapping_mul(inv)));
    }
    assert_eq!(C.wrapping_mul(inv), 1);
    (1..=n).map(|i| (i << 40).wrapping_mul(inv)).collect()
}

fn comparisons_to_insert<S: std::hash::BuildHasher>(ids: &[u64], hasher: S) -> usize {
    let mut map = HashMap::with_hasher(hasher);
    COMPARISONS.store(0, Ordering::Relaxed);
    for &id in ids {
        // What the server does per request: look the id up, then add it.
        assert!(!map.contains_key(&Counted(id)));
        map.insert(Counted(id), ());
    }
    COMPARISONS.load(Ordering::Relaxed)
}

#[test]
fn crafted_request_ids_do_not_collide_in_the_keyed_request_table() {
    let ids = crafted_ids(2_000);
    // Against the fixed hash they collide: quadratic work.
    let fixed = comparisons_to_insert(&ids, BuildHasherDefault::<IdHasher>::default());
    assert!(fixed > 1_000_000, "the crafted ids collide: {fixed}");
    // Against the keyed hash the server uses, whatever the key, they spread.
    for seed in [0, 1, 0xdead_beef] {
        let keyed = comparisons_to_insert(&ids, SeededIds::new(seed));
        assert!(keyed < 2 * ids.len(), "seed {seed}: {keyed} comparisons");
    }
    let ids = crafted_ids(40_000);
    let keyed = comparisons_to_insert(&ids, SeededIds::new(7));
    assert!(keyed < 2 * ids.len(), "{keyed} comparisons for 40 000 ids");
}
