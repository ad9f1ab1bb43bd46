//! The blocking driver end to end: `cargo run -p weft-mio --example blocking`.
//!
//! Two servers behind a `DynamicResolver`, a deadline that the handler
//! sees, a call cancelled from another thread, and a graceful shutdown
//! that lets a running call finish.

use bytes::Bytes;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use weft_mio::{
    CallError, CallOptions, CancelReason, Client, ClientOptions, DynamicResolver, HandlerError,
    HandlerMap, MethodKey, Request, Server, ServerOptions,
};

enum Event {
    Started,
    Cancelled(CancelReason),
}

fn key(method: &str) -> MethodKey {
    MethodKey::new("example.Blocking", method)
}

/// A server named `name`: `Who` answers the name; `Wait` says it started
/// on `events`, blocks until its request is cancelled and reports why;
/// `Slow` takes 100 ms.
fn server(name: &'static str, events: mpsc::Sender<Event>) -> Server {
    let mut handlers = HandlerMap::new();
    handlers.set("example.Blocking", "Who", move |_req: Request| {
        Ok(Bytes::from_static(name.as_bytes()))
    });
    handlers.set("example.Blocking", "Wait", move |req: Request| {
        let _ = events.send(Event::Started);
        // Bounded, so a lost cancellation cannot hang the example.
        let reason = req.wait_cancelled(Duration::from_secs(30));
        let _ = events.send(Event::Cancelled(reason.expect("cancelled within 30 s")));
        Err(HandlerError::cancelled())
    });
    handlers.set("example.Blocking", "Slow", |req: Request| {
        std::thread::sleep(Duration::from_millis(100));
        Ok(req.args)
    });
    let opts = ServerOptions {
        shutdown_grace: Duration::from_secs(5),
        ..ServerOptions::default()
    };
    Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), handlers, opts).unwrap()
}

fn who(client: &Client) -> String {
    let out = client
        .call(key("Who"), Bytes::new(), CallOptions::default())
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (events_tx, events) = mpsc::channel();
    let a = server("a", events_tx.clone());
    let b = server("b", events_tx);
    let started = || matches!(events.recv(), Ok(Event::Started));
    let cancelled = || match events.recv() {
        Ok(Event::Cancelled(reason)) => Some(reason),
        _ => None,
    };

    let resolver = DynamicResolver::new();
    resolver.set([a.local_endpoint().clone()]);
    let client = Client::connect(resolver.clone(), ClientOptions::default())?;
    assert_eq!(who(&client), "a");

    // The client follows the resolver: move every new call to b.
    resolver.set([b.local_endpoint().clone()]);
    while who(&client) != "b" {}
    println!("the client moved from a to b");
    a.shutdown();

    // A deadline travels with the call; the handler is cancelled by it.
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let err = client.call(key("Wait"), Bytes::new(), opts).unwrap_err();
    assert!(matches!(err, CallError::DeadlineExceeded), "{err}");
    assert!(started());
    assert_eq!(cancelled(), Some(CancelReason::DeadlineExceeded));
    println!("deadline: {err}; the handler saw DeadlineExceeded");

    // Cancelling from another thread, once the handler runs.
    let pending = client.start(key("Wait"), Bytes::new(), CallOptions::default());
    let cancel = pending.cancel_handle();
    assert!(started());
    let canceller = std::thread::spawn(move || cancel.cancel());
    let err = pending.wait().unwrap_err();
    canceller.join().unwrap();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(cancelled(), Some(CancelReason::Cancelled));
    println!("cancelled from another thread: {err}; the handler saw Cancelled");

    // A graceful shutdown while a call runs: the call still succeeds.
    let slow = client.start(
        key("Slow"),
        Bytes::from_static(b"kept"),
        CallOptions::default(),
    );
    // Wait until the server has the request: a second call on the same
    // connection is answered only after the first one was read.
    assert_eq!(who(&client), "b");
    let stopping = std::thread::spawn(move || b.shutdown());
    assert_eq!(&slow.wait()?[..], b"kept");
    stopping.join().unwrap();
    println!("the call running during the shutdown finished; the server stopped");
    client.close();
    Ok(())
}
