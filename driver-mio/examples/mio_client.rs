//! Calls the example server from several threads at once:
//! `cargo run -p weft-mio --example mio_client -- tcp://127.0.0.1:7000`.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_mio::{CallOptions, Client, ClientOptions, ConstantResolver, MethodKey, NetEndpoint};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let addr: NetEndpoint = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "tcp://127.0.0.1:7000".into())
        .parse()?;
    let client = Client::connect(ConstantResolver::new([addr]), ClientOptions::default())?;
    std::thread::scope(|s| {
        for name in ["ada", "grace", "edsger"] {
            let client = &client;
            s.spawn(move || {
                let opts = CallOptions {
                    deadline: Some(Instant::now() + Duration::from_secs(1)),
                    ..Default::default()
                };
                match client.call(
                    MethodKey::new("weft.Test", "Hello"),
                    Bytes::from(name),
                    opts,
                ) {
                    Ok(out) => println!("{}", String::from_utf8_lossy(&out)),
                    Err(e) => eprintln!("{name}: {e}"),
                }
            });
        }
    });
    client.close();
    Ok(())
}
