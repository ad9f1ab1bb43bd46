//! An echo server on mio: `cargo run -p weft-mio --example mio_server -- tcp://127.0.0.1:7000`.
//! Serves until stdin closes (press Ctrl-D).

use weft_mio::{HandlerError, HandlerMap, Request, Server, ServerOptions};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:7000".into());
    let mut handlers = HandlerMap::new();
    handlers.set("weft.Test", "Echo", |req: Request| Ok(req.args));
    handlers.set("weft.Test", "Hello", |req: Request| {
        let name =
            std::str::from_utf8(&req.args).map_err(|_| HandlerError::new("name is not UTF-8"))?;
        Ok(format!("hello, {name}").into())
    });
    let server = Server::bind(&addr.parse()?, handlers, ServerOptions::default())?;
    println!("listening {}", server.local_endpoint());
    std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    server.shutdown();
    Ok(())
}
