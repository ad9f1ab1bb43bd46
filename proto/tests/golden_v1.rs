//! weft's protocol version 1, byte for byte: the version frame weft sends,
//! the goaway frame, and what a weft server answers a version-0 (Go)
//! client, which must be Service Weaver's own bytes.

use bytes::Bytes;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use weft_proto::{
    ClientConn, ConnConfig, FrameDecoder, GoAway, Message, MethodKey, RequestHeader,
    SHUTDOWN_REASON, ServerConn, Transmit, Version,
};

fn read(dir: &str, file: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join(dir)
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn v1(file: &str) -> Vec<u8> {
    read("golden_v1", file)
}

fn encoded(push: impl FnOnce(&mut Transmit)) -> Vec<u8> {
    let mut tx = Transmit::new(0);
    push(&mut tx);
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn decode_one(bytes: &[u8]) -> Message {
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(bytes);
    let m = dec.next_message().expect("a whole frame").expect("valid");
    assert!(dec.next_message().is_none());
    m
}

fn requests(ids: std::ops::RangeInclusive<u64>, version: Version) -> Vec<u8> {
    encoded(|tx| {
        tx.push_version(version);
        for id in ids {
            let header = RequestHeader::new(MethodKey::new("weft.Test", "Echo"));
            tx.push_request(id, header.fields(), &Bytes::from_static(b"x"));
        }
    })
}

#[test]
fn a_weft_client_announces_version_1() {
    let want = v1("version_v1.bin");
    assert_eq!(encoded(|tx| tx.push_version(Version::LATEST)), want);
    let mut client = ClientConn::new(Instant::now(), ConnConfig::default());
    let mut first = Vec::new();
    client.drain_transmit(&mut first);
    assert_eq!(first, want);
    assert_eq!(decode_one(&want), Message::Version(Version(1)));
}

#[test]
fn a_weft_server_answers_each_client_with_the_version_in_use() {
    let now = Instant::now();
    // A version-1 client gets version 1 ...
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &v1("version_v1.bin"));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert_eq!(out, v1("version_v1.bin"));
    // ... a Go client gets exactly what a Go server sends it.
    let go_version = read("golden", "version.bin");
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &go_version);
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert_eq!(out, go_version);
    assert_eq!(server.version(), Some(Version::CURRENT));
}

#[test]
fn goaway_frames_encode_and_decode_byte_for_byte() {
    let cases = [
        ("goaway_3_shutdown.bin", 3, SHUTDOWN_REASON),
        ("goaway_0_empty.bin", 0, ""),
    ];
    for (file, last_id, reason) in cases {
        let want = v1(file);
        assert_eq!(
            encoded(|tx| tx.push_goaway(last_id, reason)),
            want,
            "{file}"
        );
        assert_eq!(
            decode_one(&want),
            Message::GoAway(GoAway {
                last_id,
                reason: reason.into()
            }),
            "{file}"
        );
    }
}

#[test]
fn a_server_shutting_down_after_three_requests_sends_this_goaway() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &requests(1..=3, Version::LATEST));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    server.shutdown(now, now + Duration::from_secs(10));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert_eq!(out, v1("goaway_3_shutdown.bin"));
}

#[test]
fn a_go_client_never_sees_a_goaway() {
    let now = Instant::now();
    let mut server = ServerConn::new(now, ConnConfig::default());
    server.handle_input(now, &requests(1..=3, Version::CURRENT));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert_eq!(out, read("golden", "version.bin"));
    server.shutdown(now, now + Duration::from_secs(10));
    let mut out = Vec::new();
    server.drain_transmit(&mut out);
    assert!(out.is_empty(), "{out:?}");
}

#[test]
fn a_longer_reason_is_cut_to_the_limit_on_a_character_boundary() {
    let reason = "é".repeat(200); // 400 bytes
    let bytes = encoded(|tx| tx.push_goaway(9, &reason));
    let Message::GoAway(g) = decode_one(&bytes) else {
        panic!()
    };
    assert_eq!(g.reason.len(), 256);
    assert_eq!(g.reason, "é".repeat(128));
    // A peer that sends more is cut on decoding too, never rejected.
    let mut raw = bytes[..16].to_vec();
    let long = [b'x'; 1000];
    raw[8..16].copy_from_slice(&(5u64 | ((8 + long.len() as u64) << 8)).to_le_bytes());
    raw.extend_from_slice(&9u64.to_le_bytes());
    raw.extend_from_slice(&long);
    let Message::GoAway(g) = decode_one(&raw) else {
        panic!()
    };
    assert_eq!(
        (g.last_id, g.reason.len()),
        (9, weft_proto::MAX_GOAWAY_REASON)
    );
}
