//! Deadlines and cancellation: `cargo run -p weft-tokio --example deadlines`.
//!
//! A call's deadline travels to the server, which cancels the handler when
//! it passes; dropping a call's future cancels it on the server too. The
//! handler learns why through `Request::cancelled()`.

use bytes::Bytes;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use weft_tokio::{
    CallError, CallOptions, CancelReason, ClientOptions, ConstantResolver, HandlerError,
    HandlerMap, Listener, MethodKey,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A handler that never finishes by itself: it waits for cancellation
    // and reports the reason.
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let mut handlers = HandlerMap::new();
    handlers.set("example.Slow", "Forever", move |req| {
        let reasons = reasons_tx.clone();
        async move {
            let reason = req.cancelled().await;
            let _ = reasons.send(reason);
            Err::<Bytes, _>(HandlerError::cancelled())
        }
    });
    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
    let endpoint = listener.local_endpoint()?;
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    let conn =
        weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default()).await?;
    let forever = MethodKey::new("example.Slow", "Forever");

    // 1. A deadline: the caller gets `DeadlineExceeded`, the handler is
    //    cancelled with the same reason.
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..CallOptions::default()
    };
    let err = conn.call(forever, Bytes::new(), opts).await.unwrap_err();
    assert!(matches!(err, CallError::DeadlineExceeded), "{err}");
    assert_eq!(reasons.recv().await, Some(CancelReason::DeadlineExceeded));
    println!("deadline: caller saw `{err}`, handler saw DeadlineExceeded");

    // 2. Dropping the future (here through tokio's timeout) sends a cancel
    //    frame; the handler sees `Cancelled`.
    let call = conn.call(forever, Bytes::new(), CallOptions::default());
    let timed_out = tokio::time::timeout(Duration::from_millis(50), call).await;
    assert!(timed_out.is_err());
    assert_eq!(reasons.recv().await, Some(CancelReason::Cancelled));
    println!("drop: the handler saw Cancelled");

    // 3. With no replica reachable, `wait_for_ready` waits up to the
    //    deadline and then says why no replica was usable.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let nowhere = weft_tokio::connect(
        ConstantResolver::new([weft_tokio::tcp(dead.to_string())]),
        ClientOptions::default(),
    )
    .await?;
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(300)),
        wait_for_ready: true,
        ..CallOptions::default()
    };
    let err = nowhere.call(forever, Bytes::new(), opts).await.unwrap_err();
    assert!(err.is_unreachable(), "{err}");
    println!("no replica: {err}");
    Ok(())
}
