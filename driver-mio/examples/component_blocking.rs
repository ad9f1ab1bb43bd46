//! A typed component on the blocking driver:
//! `cargo run -p weft-mio --example component_blocking`.
//!
//! With plain `fn` methods, `#[component]` makes a component served by
//! weft-mio; `CounterBlockingClient` calls it from ordinary threads. (The
//! same generated encoding lets a tokio client call it, and a blocking
//! client call a tokio server.)

use std::sync::atomic::{AtomicI64, Ordering};
use weft_mio::codec::ErrorList;
use weft_mio::{Client, ConstantResolver, HandlerMap, Server};

/// A counter.
#[weft_mio::component(name = "github.com/acme/count/Counter")]
pub trait Counter {
    /// Adds `n`; returns the new value.
    fn add(&self, n: i64) -> Result<i64, ErrorList>;
    /// The value.
    fn get(&self) -> Result<i64, ErrorList>;
}

#[derive(Default)]
struct Count(AtomicI64);

impl Counter for Count {
    fn add(&self, n: i64) -> Result<i64, ErrorList> {
        if n < 0 {
            return Err(ErrorList::new("a counter only goes up"));
        }
        Ok(self.0.fetch_add(n, Ordering::SeqCst) + n)
    }
    fn get(&self) -> Result<i64, ErrorList> {
        Ok(self.0.load(Ordering::SeqCst))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut handlers = HandlerMap::new();
    CounterServer::register(&mut handlers, Count::default());
    let server = Server::bind(&"tcp://127.0.0.1:0".parse()?, handlers, Default::default())?;
    let client = Client::connect(
        ConstantResolver::new([server.local_endpoint().clone()]),
        Default::default(),
    )?;
    let counter = CounterBlockingClient::new(client);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let counter = counter.clone();
            std::thread::spawn(move || counter.add(10).map(|_| ()))
        })
        .collect();
    for t in threads {
        t.join().expect("thread")?;
    }
    assert_eq!(counter.get()?, 40);
    let err = counter.add(-1).unwrap_err();
    assert_eq!(err.to_string(), "a counter only goes up");
    println!("counter = {}, add(-1): {err}", counter.get()?);
    Ok(())
}
