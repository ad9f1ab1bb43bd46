//! A listener that breaks (accept fails for good) ends accepting, not the
//! connections: they drain as in a graceful shutdown, the caller's
//! shutdown trigger is left alone, and `serve` returns the error.

mod common;

use bytes::Bytes;
use common::{Counters, handlers, key};
use std::time::Duration;
use weft_tokio::{
    CallOptions, ClientOptions, ConstantResolver, NetEndpoint, ServerOptions, Shutdown,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_listener_drains_its_connections_and_returns_the_error() {
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let endpoint = NetEndpoint::Tcp(std_listener.local_addr().unwrap().to_string());
    // The same socket, to break it from outside.
    let twin = std_listener.try_clone().unwrap();
    let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
    let counters = Counters::default();
    let mut handlers = handlers("s", &counters);
    let started = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = started.clone();
    handlers.set("weft.Test", "Slow", move |_req: weft_tokio::Request| {
        signal.notify_one();
        async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            Ok(Bytes::from_static(b"slow"))
        }
    });
    let shutdown = Shutdown::new();
    let server = tokio::spawn(weft_tokio::serve_with_shutdown(
        listener,
        handlers,
        ServerOptions::default(),
        shutdown.clone(),
    ));
    let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
        .await
        .unwrap();
    let slow = tokio::spawn(async move {
        conn.call(key("Slow"), Bytes::new(), CallOptions::default())
            .await
    });
    started.notified().await;
    // Shutting a listening socket's reads makes accept fail with EINVAL.
    socket2::SockRef::from(&twin)
        .shutdown(std::net::Shutdown::Read)
        .unwrap();
    let served = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve returned")
        .unwrap();
    assert!(served.is_err(), "{served:?}");
    assert_eq!(
        slow.await.unwrap().unwrap(),
        Bytes::from_static(b"slow"),
        "drained, not cancelled"
    );
    assert!(
        shutdown.deadline().is_none(),
        "the caller's trigger was pulled"
    );
}
