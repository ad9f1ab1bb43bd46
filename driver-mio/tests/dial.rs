//! A dial never outlives the client's connect timeout: a TCP address that
//! answers no SYN, or a Unix socket whose server stopped accepting, must
//! not leave a thread blocked in `connect` for minutes (TCP) or for good
//! (Unix) each time the client dials again.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_mio::{CallOptions, Client, ClientOptions, ConstantResolver, MethodKey, NetEndpoint};

/// The client's dial threads still alive.
fn dial_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.trim() == "weft-mio-dial")
        .count()
}

/// Calls `endpoint` once through a client whose connect timeout is short,
/// closes the client, and waits (bounded) for its dial threads to end;
/// the call's error.
fn call_then_close(endpoint: NetEndpoint) -> String {
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = Client::connect(ConstantResolver::new([endpoint]), opts).unwrap();
    let key = MethodKey::new("weft.Test", "Echo");
    let err = client
        .call(key, Bytes::from_static(b"hi"), CallOptions::default())
        .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    client.close();
    // Far longer than the connect timeout, far shorter than the kernel's
    // (about two minutes for TCP, never for Unix).
    let give_up = Instant::now() + Duration::from_secs(10);
    while dial_threads() > 0 && Instant::now() < give_up {
        std::thread::yield_now();
    }
    assert_eq!(dial_threads(), 0, "a dial outlived its connect timeout");
    err.to_string()
}

#[test]
fn dials_end_with_the_connect_timeout() {
    // TCP: a listener that never accepts, its accept queue full, so the
    // kernel drops every further SYN.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let mut queued = Vec::new();
    while let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(100)) {
        queued.push(s);
        assert!(queued.len() < 10_000, "the accept queue never filled");
    }
    call_then_close(NetEndpoint::Tcp(addr.to_string()));
    drop((queued, listener));

    // Unix: the same; a connect there waits for the server with no
    // timeout at all, so the dial must not wait.
    let dir = std::env::temp_dir().join(format!("weft-dial-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.sock");
    let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let mut queued = Vec::new();
    loop {
        match mio::net::UnixStream::connect(&path) {
            Ok(s) => queued.push(s),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
        assert!(queued.len() < 10_000, "the listen queue never filled");
    }
    let err = call_then_close(NetEndpoint::Unix(path));
    assert!(err.contains("listen queue is full"), "{err}");
    drop((queued, listener));
    let _ = std::fs::remove_dir_all(dir);
}
