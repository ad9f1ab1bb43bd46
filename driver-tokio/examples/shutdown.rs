//! Graceful shutdown: `cargo run -p weft-tokio --example shutdown`.
//!
//! `serve_until` stops accepting when its signal fires, tells weft clients
//! to go elsewhere (goaway), lets the requests it already has finish, and
//! cancels whatever still runs when the grace period ends. It returns once
//! every connection is closed.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, mpsc, oneshot};
use weft_tokio::{
    CallOptions, CancelReason, ClientOptions, ConstantResolver, HandlerError, HandlerMap, Listener,
    MethodKey, Request, ServerOptions,
};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let release = Arc::new(Notify::new());
    let (entered_tx, mut entered) = mpsc::unbounded_channel();
    let (reason_tx, mut reason) = mpsc::unbounded_channel();
    let mut handlers = HandlerMap::new();
    // Finishes when released.
    let (rel, tx) = (release.clone(), entered_tx.clone());
    handlers.set("example.Job", "Finish", move |req: Request| {
        let (rel, tx) = (rel.clone(), tx.clone());
        async move {
            let _ = tx.send(());
            rel.notified().await;
            Ok(req.args)
        }
    });
    // Never finishes by itself: only the end of the grace period stops it.
    handlers.set("example.Job", "Stuck", move |req: Request| {
        let (tx, reason_tx) = (entered_tx.clone(), reason_tx.clone());
        async move {
            let _ = tx.send(());
            let _ = reason_tx.send(req.cancelled().await);
            Err::<Bytes, _>(HandlerError::cancelled())
        }
    });

    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
    let endpoint = listener.local_endpoint()?;
    let opts = ServerOptions {
        shutdown_grace: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(weft_tokio::serve_until(listener, handlers, opts, async {
        let _ = stopped.await;
    }));

    let conn =
        weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default()).await?;
    let call = |method: &'static str| {
        let conn = conn.clone();
        tokio::spawn(async move {
            let key = MethodKey::new("example.Job", method);
            conn.call(key, Bytes::from_static(b"done"), CallOptions::default())
                .await
        })
    };
    let finishing = call("Finish");
    let stuck = call("Stuck");
    entered.recv().await;
    entered.recv().await;

    // The signal: both calls are running on the server.
    stop.send(()).unwrap();
    release.notify_one();
    let out = finishing.await??;
    assert_eq!(&out[..], b"done");
    println!("the call in flight at the signal finished: {:?}", out);

    let err = stuck.await?.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    assert_eq!(reason.recv().await, Some(CancelReason::Shutdown));
    println!("the call still running at the grace deadline was cancelled: {err}");

    server.await??;
    println!("serve_until returned: the server has stopped");
    Ok(())
}
