//! An echo server: `cargo run -p weft-tokio --example tokio_server -- tcp://127.0.0.1:7000`.
//! Stops on Ctrl-C.

use weft_tokio::{HandlerMap, Listener, NetEndpoint, Request, ServerOptions};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: NetEndpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:7000".into())
        .parse()?;
    let listener = Listener::bind(&addr).await?;
    println!("listening {}", listener.local_endpoint()?);

    let mut handlers = HandlerMap::new();
    handlers.set(
        "weft.Test",
        "Echo",
        |req: Request| async move { Ok(req.args) },
    );
    handlers.set("weft.Test", "Hello", |req: Request| async move {
        let name = std::str::from_utf8(&req.args)?.to_owned();
        Ok(format!("hello, {name}").into())
    });

    weft_tokio::serve_until(listener, handlers, ServerOptions::default(), async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
