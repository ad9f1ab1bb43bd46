//! Errors and how to match them: `cargo run -p weft-tokio --example errors`.
//!
//! `CallError` says who failed: the handler (`Remote`, with the handler's
//! message and its chain of causes), the deadline, the caller, the
//! transport (`is_communication()`: the call may or may not have run), or
//! the replicas (`is_unreachable()`, naming each endpoint and its error).

use bytes::Bytes;
use weft_tokio::{
    CallError, CallOptions, ClientOptions, ConnError, ConstantResolver, HandlerMap, Listener,
    MethodKey, Request,
};

/// An application error with a cause, as a handler might return it.
#[derive(Debug, thiserror::Error)]
#[error("cannot open the ledger")]
struct LedgerError(#[source] std::io::Error);

fn key(method: &str) -> MethodKey {
    MethodKey::new("example.Bank", method)
}

fn classify(err: &CallError) -> &'static str {
    match err {
        CallError::Remote(_) => "the handler failed",
        CallError::DeadlineExceeded => "the deadline passed",
        CallError::Cancelled => "the caller cancelled",
        CallError::RequestTooLarge { .. } => "the request was too large to send",
        CallError::Connection(ConnError::Closed) => "the client was closed",
        e if e.is_unreachable() => "no replica could be reached",
        e if e.is_communication() => "the transport failed (the call may have run)",
        _ => "other",
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut handlers = HandlerMap::new();
    handlers.set("example.Bank", "Balance", |_req: Request| async move {
        let cause = std::io::Error::new(std::io::ErrorKind::NotFound, "ledger.db missing");
        Err::<Bytes, _>(LedgerError(cause).into())
    });
    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0")).await?;
    let endpoint = listener.local_endpoint()?;
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    let opts = ClientOptions {
        max_message_size: 1024,
        ..ClientOptions::default()
    };
    let conn = weft_tokio::connect(ConstantResolver::new([endpoint]), opts).await?;

    // The handler's error arrives with its chain, outermost first.
    let err = conn
        .call(key("Balance"), Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    let CallError::Remote(remote) = &err else {
        panic!("{err}")
    };
    let chain: Vec<&str> = remote.entries.iter().map(|e| e.message.as_str()).collect();
    println!("{}: {err} (chain: {chain:?})", classify(&err));
    assert_eq!(chain, ["cannot open the ledger", "ledger.db missing"]);

    // A method the server does not have is the server's error too.
    let err = conn
        .call(key("Rob"), Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    println!("{}: {err}", classify(&err));
    assert!(matches!(err, CallError::Remote(_)));

    // Too large for the limit: refused before anything is sent.
    let big = Bytes::from(vec![0u8; 4096]);
    let err = conn
        .call(key("Balance"), big, CallOptions::default())
        .await
        .unwrap_err();
    println!("{}: {err}", classify(&err));
    assert!(matches!(err, CallError::RequestTooLarge { .. }));

    // A closed client fails its calls with a connection error.
    conn.close();
    let err = conn
        .call(key("Balance"), Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    println!("{}: {err}", classify(&err));
    assert!(matches!(err, CallError::Connection(ConnError::Closed)));

    // Nobody listening: the call fails fast and names the endpoint.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?;
    let nowhere = weft_tokio::connect(
        ConstantResolver::new([weft_tokio::tcp(dead.to_string())]),
        ClientOptions::default(),
    )
    .await?;
    let err = nowhere
        .call(key("Balance"), Bytes::new(), CallOptions::default())
        .await
        .unwrap_err();
    println!("{}: {err}", classify(&err));
    assert!(err.is_unreachable());
    Ok(())
}
