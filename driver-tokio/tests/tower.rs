//! tower on both sides, over real sockets: the client as a `Service`
//! (readiness, cancellation by drop) and handlers wrapped in tower layers.
#![cfg(feature = "tower")]

use bytes::Bytes;
use std::future::poll_fn;
use std::task::Poll;
use std::time::Duration;
use tokio::sync::{Notify, mpsc};
use tower::{Service, ServiceBuilder, ServiceExt};
use weft_tokio::tower::CallRequest;
use weft_tokio::{
    CallError, ClientOptions, Connection, ConstantResolver, HandlerMap, Listener, MethodKey,
    NetEndpoint, Request, tcp,
};

async fn connect(endpoint: NetEndpoint) -> Connection {
    weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default())
        .await
        .unwrap()
}

async fn serve(handlers: HandlerMap) -> NetEndpoint {
    let listener = Listener::bind(&tcp("127.0.0.1:0")).await.unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    endpoint
}

/// Turns a lost wakeup into a failure instead of a hang. The timer is
/// looked at first: woken only by it, `f` fails even if it is ready by then.
async fn within<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::select! {
        biased;
        _ = tokio::time::sleep(Duration::from_secs(10)) => panic!("{what}: never woken"),
        v = f => v,
    }
}

fn echo() -> MethodKey {
    MethodKey::new("weft.Test", "Echo")
}

#[tokio::test]
async fn the_client_is_a_service_whose_readiness_follows_the_replicas() {
    // Bound but not yet served: the dial succeeds, the handshake waits.
    let listener = Listener::bind(&tcp("127.0.0.1:0")).await.unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let mut client = connect(endpoint).await;
    let first = poll_fn(|cx| Poll::Ready(client.poll_ready(cx))).await;
    assert!(first.is_pending(), "ready before any handshake: {first:?}");

    let mut handlers = HandlerMap::new();
    handlers.set(
        "weft.Test",
        "Echo",
        |req: Request| async move { Ok(req.args) },
    );
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    // Woken by the handshake, not by polling again (the timeout only
    // turns a lost wakeup into a failure instead of a hang).
    let out = within("ready", client.ready())
        .await
        .unwrap()
        .call(CallRequest::new(echo(), Bytes::from_static(b"hi")))
        .await
        .unwrap();
    assert_eq!(&out[..], b"hi");

    client.close();
    let closed = client.ready().await.map(|_| ()).unwrap_err();
    assert!(matches!(closed, CallError::Connection(_)), "{closed}");
}

#[tokio::test]
async fn an_unreachable_service_is_ready_and_its_call_names_the_cause() {
    // A port nothing listens on.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = tcp(dead.local_addr().unwrap().to_string());
    drop(dead);
    let client = connect(endpoint).await;
    let err = within(
        "call",
        client.oneshot(CallRequest::new(echo(), Bytes::new())),
    )
    .await
    .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test]
async fn a_client_timeout_layer_cancels_the_call_on_the_server() {
    let (cancelled_tx, mut cancelled) = mpsc::unbounded_channel();
    let mut handlers = HandlerMap::new();
    handlers.set("weft.Test", "Hang", move |req: Request| {
        let tx = cancelled_tx.clone();
        async move {
            let reason = req.cancelled().await;
            let _ = tx.send(reason);
            Err(weft_tokio::HandlerError::cancelled())
        }
    });
    let client = connect(serve(handlers).await).await;
    let client = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .concurrency_limit(4)
        .service(client);
    let hang = CallRequest::new(MethodKey::new("weft.Test", "Hang"), Bytes::new());
    let err = within("call", client.oneshot(hang)).await.unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err}");
    // The timeout dropped the call's future: the server was told.
    cancelled.recv().await.expect("the handler saw the cancel");
}

#[tokio::test]
async fn server_layers_limit_and_shed_load_with_an_error_the_caller_reads() {
    let release = std::sync::Arc::new(Notify::new());
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let held = release.clone();
    let slow = tower::service_fn(move |req: Request| {
        let held = held.clone();
        let entered = entered_tx.clone();
        async move {
            let _ = entered.send(());
            held.notified().await;
            Ok::<Bytes, std::io::Error>(req.args)
        }
    });
    let mut handlers = HandlerMap::new();
    handlers.set_service(
        "weft.Test",
        "Slow",
        ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(1)
            .service(slow),
    );
    let conn = connect(serve(handlers).await).await;
    let slow = MethodKey::new("weft.Test", "Slow");

    let first = {
        let conn = conn.clone();
        let key = slow;
        tokio::spawn(async move {
            conn.call(key, Bytes::from_static(b"1"), Default::default())
                .await
        })
    };
    entered.recv().await.unwrap();
    // The only permit is held: the second call is shed, and says why.
    let err = conn
        .call(slow, Bytes::from_static(b"2"), Default::default())
        .await
        .unwrap_err();
    match &err {
        CallError::Remote(e) => assert_eq!(e.to_string(), "service overloaded"),
        other => panic!("expected an application error, got {other}"),
    }
    release.notify_one();
    assert_eq!(&first.await.unwrap().unwrap()[..], b"1");
    // With the permit back, the method serves again.
    let again = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call(slow, Bytes::from_static(b"3"), Default::default())
                .await
        }
    });
    entered.recv().await.unwrap();
    release.notify_one();
    assert_eq!(&again.await.unwrap().unwrap()[..], b"3");
}

#[tokio::test]
async fn a_request_cancelled_while_a_layer_holds_it_never_runs() {
    let release = std::sync::Arc::new(Notify::new());
    // What the inner service was handed: the arguments, and whether the
    // request was already cancelled then.
    let (ran_tx, mut ran) = mpsc::unbounded_channel();
    let held = release.clone();
    let inner = tower::service_fn(move |req: Request| {
        let held = held.clone();
        let _ = ran_tx.send((req.args.clone(), req.is_cancelled()));
        async move {
            if &req.args[..] == b"hold" {
                held.notified().await;
            }
            Ok::<Bytes, std::io::Error>(req.args)
        }
    });
    let mut handlers = HandlerMap::new();
    handlers.set_service(
        "weft.Test",
        "Limited",
        ServiceBuilder::new().concurrency_limit(1).service(inner),
    );
    handlers.set(
        "weft.Test",
        "Echo",
        |req: Request| async move { Ok(req.args) },
    );
    let conn = connect(serve(handlers).await).await;
    let limited = MethodKey::new("weft.Test", "Limited");
    let first = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call(limited, Bytes::from_static(b"hold"), Default::default())
                .await
        }
    });
    assert_eq!(&ran.recv().await.unwrap().0[..], b"hold");
    // Waits for the permit until its deadline.
    let late = weft_tokio::CallOptions {
        deadline: Some(std::time::Instant::now() + Duration::from_millis(100)),
        ..Default::default()
    };
    let err = conn
        .call(limited, Bytes::from_static(b"late"), late)
        .await
        .unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    // A round trip, so the server has passed the late call's deadline too.
    conn.call(echo(), Bytes::from_static(b"x"), Default::default())
        .await
        .unwrap();
    release.notify_one();
    assert_eq!(&first.await.unwrap().unwrap()[..], b"hold");
    let after = within(
        "the permit",
        conn.call(limited, Bytes::from_static(b"after"), Default::default()),
    )
    .await
    .unwrap();
    assert_eq!(&after[..], b"after");
    let (args, cancelled) = ran.recv().await.unwrap();
    assert_eq!(
        (&args[..], cancelled),
        (&b"after"[..], false),
        "the cancelled request ran once the permit was free"
    );
}
