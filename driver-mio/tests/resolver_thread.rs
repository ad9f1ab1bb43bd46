//! A client that follows a `DynamicResolver` leaves no thread behind once
//! closed: the resolver's thread waits for a change for at most
//! `FOLLOW_MAX_WAIT`, and its answer to a closed client is its last.
//!
//! Its own test binary: it counts the process's resolver threads.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_mio::{
    CallOptions, Client, DynamicResolver, HandlerMap, MethodKey, NetEndpoint, Request, Server,
};

/// Threads of this process named as the mio client's resolver threads
/// (`weft-mio-resolve`, which the kernel cuts to 15 bytes).
fn resolver_threads() -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("weft-mio-resolv"))
        .count()
}

#[test]
fn a_closed_client_leaves_no_resolver_thread() {
    let mut handlers = HandlerMap::new();
    handlers.set("weft.Test", "Echo", |req: Request| Ok(req.args));
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    let server = Server::bind(&bind, handlers, Default::default()).unwrap();
    let resolver = DynamicResolver::new();
    resolver.set([server.local_endpoint().clone()]);
    let client = Client::connect(resolver.clone(), Default::default()).unwrap();
    let key = MethodKey::new("weft.Test", "Echo");
    let out = client.call(key, Bytes::from_static(b"hi"), CallOptions::default());
    assert_eq!(&out.unwrap()[..], b"hi");
    // Following the set: one thread waits for it to change.
    assert_eq!(resolver_threads(), 1);

    client.close();
    // Nothing changes the set; the thread still ends. Polled: a thread's
    // end is not an event this test can wait on.
    let bound = weft_driver::resolver::FOLLOW_MAX_WAIT + Duration::from_secs(2);
    let deadline = Instant::now() + bound;
    while resolver_threads() > 0 {
        assert!(
            Instant::now() < deadline,
            "a resolver thread outlived its closed client by {bound:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The resolver itself is still usable.
    resolver.set(Vec::<NetEndpoint>::new());
    server.shutdown();
}
