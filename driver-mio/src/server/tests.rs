//! Tests of the mio server's scheduler that need its internals.

use super::*;
use crate::{CallOptions, Client, ClientOptions, ConstantResolver, MethodKey};
use bytes::Bytes;

/// Worker threads alive, against the scheduler's count, once no
/// spawn is half done (a thread is counted just before it starts).
fn threads_agree(server: &Server) -> bool {
    let give_up = Instant::now() + Duration::from_secs(5);
    loop {
        let counted = server.shared.sched().threads;
        let alive = server
            .shared
            .threads
            .lock()
            .expect("unpoisoned")
            .iter()
            .filter(|t| t.thread().name() == Some("weft-mio-server") && !t.is_finished())
            .count();
        if counted == alive {
            return true;
        }
        if Instant::now() > give_up {
            eprintln!("{counted} threads counted, {alive} alive");
            return false;
        }
        thread::yield_now();
    }
}

#[test]
fn a_panicking_handler_fails_its_call_and_keeps_its_thread() {
    // Handlers that start inline, and handlers moved off first.
    for inline in [Some(Duration::from_micros(20)), None] {
        let mut handlers = HandlerMap::new();
        handlers.set("t", "Panic", |_: Request| panic!("on purpose"));
        handlers.set("t", "PanicLater", |req: Request| {
            // Long enough to move off the leader first.
            req.wait_cancelled(Duration::from_millis(5));
            std::panic::panic_any(String::from("on purpose"))
        });
        handlers.set("t", "Echo", |req: Request| Ok(req.args));
        let opts = ServerOptions {
            inline_handler_duration: inline,
            ..ServerOptions::default()
        };
        let server =
            Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), handlers, opts).expect("bind");
        let client = Client::connect(
            ConstantResolver::new([server.local_endpoint().clone()]),
            ClientOptions::default(),
        )
        .expect("connect");
        let call = |method| {
            let opts = CallOptions {
                deadline: Some(Instant::now() + Duration::from_secs(10)),
                ..CallOptions::default()
            };
            client.call(MethodKey::new("t", method), Bytes::from_static(b"x"), opts)
        };
        for _ in 0..5 {
            for method in ["Panic", "PanicLater"] {
                let err = call(method).unwrap_err();
                assert_eq!(
                    err.remote().map(|r| r.message()),
                    Some("handler panicked: on purpose"),
                    "{method} with {inline:?}: {err}"
                );
                assert_eq!(&call("Echo").unwrap()[..], b"x");
            }
        }
        assert!(threads_agree(&server), "a thread was lost to a panic");
        client.close();
        server.shutdown();
    }
}

#[test]
fn the_leader_waits_in_poll_without_the_connection_lock() {
    let server = Server::bind(
        &"tcp://127.0.0.1:0".parse().expect("endpoint"),
        HandlerMap::new(),
        ServerOptions::default(),
    )
    .expect("bind");
    // With no connection nothing is ready, so once a worker has taken
    // the poller it stays in `poll`.
    while server.shared.sched().event_loop.is_some() {
        thread::yield_now();
    }
    assert!(
        server.shared.conns.try_lock().is_ok(),
        "the leader holds the connections while it waits"
    );
    server.shutdown();
}
