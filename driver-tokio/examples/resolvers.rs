//! Following a changing set of replicas: `cargo run -p weft-tokio --example resolvers`.
//!
//! Three servers, one client over a `DynamicResolver`. The client spreads
//! calls over the replicas the resolver names; when the set changes, new
//! calls go to the new set at once while a call already running on a
//! removed replica finishes there (the replica drains, then closes).

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::Notify;
use weft_tokio::{
    CallOptions, ClientOptions, Connection, DynamicResolver, HandlerMap, Listener, MethodKey,
    NetEndpoint, Request,
};

fn key(method: &str) -> MethodKey {
    MethodKey::new("example.Replica", method)
}

/// A replica that answers `Who` with its name, and `Hold` once `release`
/// is notified.
async fn replica(name: &'static str, release: Arc<Notify>, entered: Arc<Notify>) -> NetEndpoint {
    let listener = Listener::bind(&weft_tokio::tcp("127.0.0.1:0"))
        .await
        .unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let mut handlers = HandlerMap::new();
    handlers.set("example.Replica", "Who", move |_req: Request| async move {
        Ok(Bytes::from_static(name.as_bytes()))
    });
    handlers.set("example.Replica", "Hold", move |_req: Request| {
        let (release, entered) = (release.clone(), entered.clone());
        async move {
            entered.notify_one();
            release.notified().await;
            Ok(Bytes::from_static(name.as_bytes()))
        }
    });
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));
    endpoint
}

async fn who(conn: &Connection) -> String {
    let out = conn
        .call(key("Who"), Bytes::new(), CallOptions::default())
        .await
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let release = Arc::new(Notify::new());
    let entered = Arc::new(Notify::new());
    let a = replica("a", release.clone(), entered.clone()).await;
    let b = replica("b", release.clone(), entered.clone()).await;
    let c = replica("c", release.clone(), entered.clone()).await;

    // The resolver is a handle: keep a clone to change the set later.
    let resolver = DynamicResolver::new();
    resolver.set([a.clone(), b.clone()]);
    let conn = weft_tokio::connect(resolver.clone(), ClientOptions::default()).await?;

    let mut seen = BTreeMap::new();
    for _ in 0..20 {
        *seen.entry(who(&conn).await).or_insert(0) += 1;
    }
    println!("over a and b: {seen:?}");
    assert_eq!(seen.len(), 2, "round robin uses both replicas");

    // A call that will still be running on `a` when `a` leaves the set.
    resolver.set([a.clone()]);
    while who(&conn).await != "a" {}
    let held = tokio::spawn({
        let conn = conn.clone();
        async move {
            conn.call(key("Hold"), Bytes::new(), CallOptions::default())
                .await
        }
    });
    entered.notified().await;

    // Replace the set: `a` drains (no new calls), `c` takes the new ones.
    resolver.set([c.clone()]);
    while who(&conn).await != "c" {}
    for _ in 0..5 {
        assert_eq!(who(&conn).await, "c");
    }
    println!("after the change every new call goes to c");

    release.notify_one();
    let out = held.await??;
    assert_eq!(&out[..], b"a");
    println!("the call held on the removed replica a finished there");
    conn.close();
    Ok(())
}
