//! A server that completes the handshake and hangs up at once must not
//! draw a redial storm: a connection no call succeeded on backs off like a
//! failed dial (it used to reset the backoff: 15 466 connections in 2 s
//! from one idle tokio client). And a retried call that keeps losing its
//! connection ends at its deadline saying why.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_proto::{CallOptions, NetEndpoint};
use weft_tests::{Driver, TestClient};

/// Accepts, answers the version, closes; counts connections.
fn handshake_then_hang_up() -> (NetEndpoint, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = NetEndpoint::Tcp(listener.local_addr().unwrap().to_string());
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut version = [0u8; 20];
            if s.read_exact(&mut version).is_ok() {
                let _ = s.write_all(&version);
            }
            // Dropped: the connection closes right after the handshake.
        }
    });
    (endpoint, accepted)
}

/// Accepts, answers the version, hangs up once a request's first bytes
/// arrive.
fn hang_up_on_requests() -> NetEndpoint {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = NetEndpoint::Tcp(listener.local_addr().unwrap().to_string());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { return };
            std::thread::spawn(move || {
                let mut version = [0u8; 20];
                if s.read_exact(&mut version).is_ok() && s.write_all(&version).is_ok() {
                    let _ = s.read(&mut [0u8; 1]);
                }
            });
        }
    });
    endpoint
}

fn a_retried_call_says_why_at_its_deadline(driver: Driver) {
    let client = TestClient::connect(driver, vec![hang_up_on_requests()]).unwrap();
    let opts = CallOptions {
        retry: true,
        deadline: Some(Instant::now() + Duration::from_millis(500)),
        ..CallOptions::default()
    };
    let err = client.call("Echo", "hi", opts).unwrap_err();
    client.close();
    assert!(err.is_deadline_exceeded(), "{err}");
    let text = err.to_string();
    assert!(text.contains("last attempt: communication error"), "{text}");
}

#[test]
fn tokio_retried_call_says_why_at_its_deadline() {
    a_retried_call_says_why_at_its_deadline(Driver::Tokio);
}

#[test]
fn mio_retried_call_says_why_at_its_deadline() {
    a_retried_call_says_why_at_its_deadline(Driver::Mio);
}

fn redials_back_off(driver: Driver) {
    let (endpoint, accepted) = handshake_then_hang_up();
    let client = TestClient::connect(driver, vec![endpoint]).unwrap();
    // An observation window, not a synchronisation: how many connections
    // does the client open in a second? With the backoff (10 ms x 1.3^n,
    // jittered) about fifteen; a slower machine only opens fewer.
    std::thread::sleep(Duration::from_secs(1));
    let n = accepted.load(Ordering::SeqCst);
    client.close();
    assert!((2..=40).contains(&n), "{n} connections in one second");
}

#[test]
fn tokio_client_backs_off_from_a_server_that_hangs_up_after_the_handshake() {
    redials_back_off(Driver::Tokio);
}

#[test]
fn mio_client_backs_off_from_a_server_that_hangs_up_after_the_handshake() {
    redials_back_off(Driver::Mio);
}
