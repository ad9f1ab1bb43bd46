//! Calls the example server: `cargo run -p weft-tokio --example tokio_client -- tcp://127.0.0.1:7000 world`.

use bytes::Bytes;
use std::time::{Duration, Instant};
use weft_tokio::{CallOptions, ClientOptions, ConstantResolver, MethodKey, NetEndpoint};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr: NetEndpoint = args
        .next()
        .unwrap_or_else(|| "tcp://127.0.0.1:7000".into())
        .parse()?;
    let name = args.next().unwrap_or_else(|| "world".into());

    let conn = weft_tokio::connect(ConstantResolver::new([addr]), ClientOptions::default()).await?;
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(1)),
        ..CallOptions::default()
    };
    let out = conn
        .call(
            MethodKey::new("weft.Test", "Hello"),
            Bytes::from(name),
            opts,
        )
        .await?;
    println!("{}", String::from_utf8_lossy(&out));
    conn.close();
    Ok(())
}
