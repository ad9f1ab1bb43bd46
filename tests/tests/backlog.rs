//! A replica whose server stops reading gets no more calls once its
//! connection holds `ClientOptions::max_request_backlog` bytes: they go to
//! the replicas that read, over real sockets, on both client drivers.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use weft_proto::{CallOptions, NetEndpoint};
use weft_tests::{ClientOptions, Driver, TestClient, TestServer, Transport};

const ARGS: usize = 256 << 10;
const CALLS: usize = 120;

/// Answers the version handshake, then never reads again; the socket stays
/// open until the returned sender is dropped.
fn deaf_server() -> (NetEndpoint, mpsc::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = NetEndpoint::Tcp(listener.local_addr().unwrap().to_string());
    let (done, wait) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut version = [0u8; 20];
        if s.read_exact(&mut version).is_ok() && s.write_all(&version).is_ok() {
            // Holds the connection, unread, until the test ends.
            let _ = wait.recv();
        }
    });
    (endpoint, done)
}

fn calls_go_around_a_server_that_stops_reading(client: Driver, server: Driver) {
    let (deaf, _hold) = deaf_server();
    let healthy = TestServer::start(server, Transport::Tcp, "healthy");
    let opts = ClientOptions {
        max_request_backlog: ARGS,
        ..ClientOptions::default()
    };
    let c = TestClient::connect_with(client, vec![deaf, healthy.endpoint.clone()], opts).unwrap();
    // Both replicas up before the calls, so round robin would split them.
    let warm = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(500)),
        ..CallOptions::default()
    };
    for _ in 0..4 {
        let _ = c.call("Echo", "warm", warm.clone());
    }
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(2)),
        ..CallOptions::default()
    };
    let results = c.start_calls("Echo", vec![1u8; ARGS], CALLS, opts).wait();
    c.close();
    let stuck = results.iter().filter(|r| r.is_err()).count();
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(r.is_deadline_exceeded(), "{r}");
    }
    // What the deaf connection holds: its bound plus one request, and what
    // the kernel's buffers took before they filled. Without the bound
    // round robin sends it half.
    assert!(
        stuck < CALLS / 4,
        "{stuck} of {CALLS} calls were placed on the replica that stopped reading"
    );
    healthy.stop();
}

#[test]
fn tokio_client_goes_around_a_server_that_stops_reading() {
    calls_go_around_a_server_that_stops_reading(Driver::Tokio, Driver::Mio);
}

#[test]
fn mio_client_goes_around_a_server_that_stops_reading() {
    calls_go_around_a_server_that_stops_reading(Driver::Mio, Driver::Tokio);
}
