//! A client that follows a `DynamicResolver` leaves no task behind once
//! closed: its resolve task races the resolver against the client's close.
//!
//! Its own test binary and runtime: it counts the runtime's live tasks.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_tokio::{CallOptions, DynamicResolver, HandlerMap, Listener, MethodKey, Request};

#[test]
fn a_closed_client_leaves_no_resolve_task() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let alive = || rt.metrics().num_alive_tasks();
    let listener = rt
        .block_on(Listener::bind(&weft_tokio::tcp("127.0.0.1:0")))
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let mut handlers = HandlerMap::new();
    handlers.set(
        "weft.Test",
        "Echo",
        |req: Request| async move { Ok(req.args) },
    );
    let server = rt.spawn(weft_tokio::serve(listener, handlers, Default::default()));
    let resolver = DynamicResolver::new();
    resolver.set([endpoint]);

    // The server's tasks, before the client has any.
    let before = alive();
    let conn = rt
        .block_on(weft_tokio::connect(resolver.clone(), Default::default()))
        .unwrap();
    let key = MethodKey::new("weft.Test", "Echo");
    let out = rt.block_on(conn.call(key, Bytes::from_static(b"hi"), CallOptions::default()));
    assert_eq!(&out.unwrap()[..], b"hi");
    assert!(alive() > before, "the client runs tasks");

    conn.close();
    drop(conn);
    // Nothing changes the set; the client's tasks still end. Polled: a
    // task's end is not an event this test can wait on. The server keeps
    // the connection's task until it sees the close, and that ends too.
    let bound = Duration::from_secs(7);
    let deadline = Instant::now() + bound;
    while alive() > before {
        assert!(
            Instant::now() < deadline,
            "{} tasks outlived their closed client by {bound:?}",
            alive() - before
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.abort();
}
