//! A dial never outlives the client's connect timeout: to a TCP address
//! that answers no SYN, the kernel would keep trying for about two
//! minutes, with a task and a socket held for each attempt the client
//! makes meanwhile.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_tokio::{CallOptions, ClientOptions, ConstantResolver, MethodKey, NetEndpoint};

/// Sockets of this process's network namespace still sending a SYN to
/// `port` (state 02 in `/proc/net/tcp`).
fn connecting_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let remote = u16::from_str_radix(f[2].split(':').nth(1).unwrap(), 16).unwrap();
            f[3] == "02" && remote == port
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dial_to_a_silent_address_ends_with_the_connect_timeout() {
    // A listener that never accepts, its accept queue full, so the kernel
    // drops every further SYN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        queued.push(s);
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let endpoint = NetEndpoint::Tcp(addr.to_string());
    let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), opts)
        .await
        .unwrap();
    let key = MethodKey::new("weft.Test", "Echo");
    let err = conn
        .call(key, Bytes::from_static(b"hi"), CallOptions::default())
        .await
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    conn.close();
    // Far longer than the connect timeout, far shorter than the kernel's.
    let give_up = Instant::now() + Duration::from_secs(10);
    while connecting_to(addr.port()) > 0 && Instant::now() < give_up {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        connecting_to(addr.port()),
        0,
        "a dial outlived its connect timeout"
    );
    drop((queued, listener));
}
