//! One side speaks TLS and the other does not: both cores say so at once,
//! instead of a decode error or a wait for a frame that never comes.

use std::time::Instant;
use weft_proto::{ClientConn, ClientEvent, ConnConfig, ConnError, PeerError};
use weft_proto::{ServerConfig, ServerConn};

/// The start of a TLS 1.2/1.3 ClientHello record, as rustls sends it.
const CLIENT_HELLO: &[u8] = &[
    0x16, 0x03, 0x01, 0x00, 0xf8, 0x01, 0x00, 0x00, 0xf4, 0x03, 0x03,
];
/// A complete fatal `decode_error` alert: what a TLS server answers to a
/// plaintext hello.
const ALERT: &[u8] = &[0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x32];

#[test]
fn a_plaintext_server_names_a_tls_client_at_its_hello() {
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    // Three bytes are enough: the server does not wait for a frame header.
    conn.handle_input(now, &CLIENT_HELLO[..3]);
    assert_eq!(conn.failure(), Some(&ConnError::Peer(PeerError::SpokeTls)));
    assert!(conn.failure().unwrap().to_string().contains("TLS"));
}

#[test]
fn a_plaintext_client_names_a_tls_server_by_its_alert() {
    let now = Instant::now();
    let mut conn = ClientConn::new(now, ConnConfig::default());
    conn.handle_input(now, ALERT);
    let events: Vec<_> = std::iter::from_fn(|| conn.poll_event()).collect();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, ClientEvent::Failed(ConnError::Peer(PeerError::SpokeTls)))),
        "{events:?}"
    );
}

#[test]
fn a_weft_version_frame_is_never_taken_for_tls() {
    // Its id is 0, so its first byte is 0.
    let now = Instant::now();
    let mut conn = ServerConn::new(now, ServerConfig::default());
    conn.handle_input(now, &[0, 0, 0]);
    assert!(conn.failure().is_none());
}
