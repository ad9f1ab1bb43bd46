//! Tests of the mio server's scheduler that need its internals.

use super::*;
use crate::{CallOptions, Client, ClientOptions, ConstantResolver, MethodKey};
use bytes::Bytes;
use std::sync::mpsc;

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

/// A server with one `Block` handler that ignores its cancellation until
/// the returned sender is dropped, and tells when it has started.
fn blocking_server(opts: ServerOptions) -> (Server, mpsc::Receiver<()>, mpsc::Sender<()>) {
    let (started_tx, started) = mpsc::channel();
    let (release, released) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let released = Mutex::new(released);
    let mut handlers = HandlerMap::new();
    handlers.set("t", "Block", move |_: Request| {
        let _ = started_tx.lock().unwrap().send(());
        let _ = released.lock().unwrap().recv();
        Ok(Bytes::new())
    });
    let server = Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), handlers, opts).expect("bind");
    (server, started, release)
}

/// Starts a `Block` call on its own thread; it ends when the server does.
fn call_block(server: &Server) -> thread::JoinHandle<Result<Bytes, crate::CallError>> {
    let endpoint = server.local_endpoint().clone();
    thread::spawn(move || {
        let client = Client::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
            .expect("connect");
        client.call(
            MethodKey::new("t", "Block"),
            Bytes::new(),
            CallOptions::default(),
        )
    })
}

/// Runs `f` on a thread; whether it returned within ten seconds.
fn returns(f: impl FnOnce() + Send + 'static) -> bool {
    let (done, returned) = mpsc::channel();
    thread::spawn(move || {
        f();
        let _ = done.send(());
    });
    returned.recv_timeout(Duration::from_secs(10)).is_ok()
}

#[test]
fn a_handler_that_ignores_its_cancellation_does_not_hold_up_a_stop() {
    for graceful in [true, false] {
        let opts = ServerOptions {
            shutdown_grace: Duration::from_millis(10),
            ..ServerOptions::default()
        };
        let (server, started, release) = blocking_server(opts);
        let call = call_block(&server);
        started.recv().unwrap();
        let stopped = if graceful {
            returns(move || server.shutdown())
        } else {
            returns(move || drop(server))
        };
        assert!(
            stopped,
            "graceful {graceful}: the stop waited for the handler"
        );
        // Its caller was answered: with the cancellation after the grace,
        // by the closed connection after a drop.
        let err = call.join().unwrap().unwrap_err();
        assert_eq!(err.is_cancelled(), graceful, "{err}");
        drop(release);
    }
}

#[test]
fn a_handler_may_stop_its_own_server() {
    let slot: Arc<Mutex<Option<Server>>> = Arc::default();
    let (stopped_tx, stopped) = mpsc::channel();
    let stopped_tx = Mutex::new(stopped_tx);
    let mut handlers = HandlerMap::new();
    let own = slot.clone();
    handlers.set("t", "Stop", move |_: Request| {
        let server = own.lock().unwrap().take();
        if let Some(server) = server {
            server.shutdown();
        }
        let _ = stopped_tx.lock().unwrap().send(());
        Ok(Bytes::new())
    });
    let opts = ServerOptions {
        shutdown_grace: Duration::from_millis(10),
        ..ServerOptions::default()
    };
    let server = Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), handlers, opts).expect("bind");
    let endpoint = server.local_endpoint().clone();
    *slot.lock().unwrap() = Some(server);
    let client = Client::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
        .expect("connect");
    let _ = client.call(
        MethodKey::new("t", "Stop"),
        Bytes::new(),
        CallOptions::default(),
    );
    assert!(
        stopped.recv_timeout(Duration::from_secs(10)).is_ok(),
        "the shutdown from inside a handler did not return"
    );
}

#[test]
fn a_broken_listener_shuts_the_server_down_gracefully() {
    let (started_tx, started) = mpsc::channel();
    let started_tx = Mutex::new(started_tx);
    let mut handlers = HandlerMap::new();
    handlers.set("t", "Slow", move |req: Request| {
        let _ = started_tx.lock().unwrap().send(());
        // Ends early only if cancelled.
        match req.wait_cancelled(Duration::from_millis(300)) {
            Some(_) => Err(weft_driver::server::HandlerError::cancelled()),
            None => Ok(req.args),
        }
    });
    let server = Server::bind(
        &"tcp://127.0.0.1:0".parse().unwrap(),
        handlers,
        ServerOptions::default(),
    )
    .expect("bind");
    let endpoint = server.local_endpoint().clone();
    let slow = thread::spawn(move || {
        let client = Client::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
            .expect("connect");
        client.call(
            MethodKey::new("t", "Slow"),
            Bytes::from_static(b"x"),
            CallOptions::default(),
        )
    });
    started.recv().unwrap();
    {
        let conns = server.shared.lock_conns();
        let Some(Listener::Tcp(l)) = &conns.listener else {
            panic!("a TCP listener")
        };
        // Shutting a listening socket's reads makes accept fail (EINVAL).
        socket2::SockRef::from(l)
            .shutdown(std::net::Shutdown::Read)
            .unwrap();
    }
    // The server stops accepting and drains: the call in flight finishes.
    assert_eq!(&slow.join().unwrap().unwrap()[..], b"x");
    assert!(
        server.shutdown_handle().deadline().is_some(),
        "no shutdown began"
    );
    assert!(
        returns(move || server.shutdown()),
        "the shutdown did not end"
    );
}
