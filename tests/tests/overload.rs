//! weft-mio's server-wide cap: at most 256 handlers run at once, each on a
//! thread of its own; past that a bounded number of requests wait and the
//! rest are answered `overloaded` at once, while the event loop goes on
//! (the 257th thread leads). weft-tokio runs handlers as tasks and has no
//! such cap, so this runs on the mio server only, from both clients.

use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};
use weft_proto::CallOptions;
use weft_tests::{Driver, ServerOptions, TestClient, TestServer, Transport};

/// weft-mio's cap on handlers running at once.
const MAX_RUNNING: u64 = 256;
const QUEUED: usize = 8;
const REFUSED: usize = 4;
/// A hang guard, far past anything these calls take.
const STUCK: Duration = Duration::from_secs(20);

/// Every call gets a deadline past [`STUCK`], so a server that stopped
/// answering fails the test instead of hanging it.
fn guarded() -> CallOptions {
    CallOptions {
        deadline: Some(Instant::now() + 2 * STUCK),
        ..CallOptions::default()
    }
}

fn refused_past_the_queue(c: Driver) {
    let opts = ServerOptions {
        // Room for every thread on one connection.
        max_concurrent_handlers_per_connection: 512,
        max_queued_requests: QUEUED,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(Driver::Mio, Transport::Tcp, "s", opts);
    let blocker = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    let queued = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    let blocked = blocker.start_calls("CancelWait", "", MAX_RUNNING as usize, guarded());
    assert!(
        server.service.wait_started(MAX_RUNNING, STUCK),
        "{} handlers started",
        server.service.started()
    );
    thread::scope(|scope| {
        // Every handler thread is blocked: of these, QUEUED wait for one
        // and the rest are refused, which only a loop still turning can do.
        let (done_tx, done) = mpsc::channel();
        for i in 0..QUEUED + REFUSED {
            let (queued, done_tx) = (&queued, done_tx.clone());
            scope.spawn(move || {
                let arg = format!("q{i}");
                let r = queued.call("Echo", arg.clone(), guarded());
                let _ = done_tx.send((arg, r));
            });
        }
        for _ in 0..REFUSED {
            let (_, r) = done.recv_timeout(STUCK).expect("refused at once");
            let err = r.unwrap_err();
            assert_eq!(
                err.remote().map(|e| e.message()),
                Some("overloaded"),
                "{err}"
            );
        }
        // Freeing the threads runs the queued ones.
        blocker.close();
        for _ in 0..QUEUED {
            let (arg, r) = done.recv_timeout(STUCK).expect("queued call ran");
            assert_eq!(r.unwrap(), arg);
        }
    });
    assert!(server.service.wait_cancel_count(MAX_RUNNING, STUCK));
    assert!(blocked.wait().iter().all(|r| r.is_err()));
    // Later calls are served.
    assert_eq!(
        &queued.call("Echo", "later", guarded()).unwrap()[..],
        b"later"
    );
    queued.close();
    server.stop();
}

#[test]
fn mio_server_refuses_past_its_queue_tokio_client() {
    refused_past_the_queue(Driver::Tokio);
}

#[test]
fn mio_server_refuses_past_its_queue_mio_client() {
    refused_past_the_queue(Driver::Mio);
}
