//! `weft serve`: the built-in service on either driver.

use crate::args::{Args, Usage};
use std::io::Write;
use weft_cli::service::{Service, mio_handlers, tokio_handlers};
use weft_proto::NetEndpoint;

pub const USAGE: &str = "weft serve --addr tcp://127.0.0.1:7000|unix:///path [--driver tokio|mio] [--name NAME] [--threads N]";

pub fn run(mut args: Args) -> Result<(), Usage> {
    let addr: NetEndpoint = args
        .value("addr")
        .ok_or_else(|| Usage("--addr is required".into()))?
        .parse()
        .map_err(|e| Usage(format!("--addr: {e}")))?;
    let driver = args.value("driver").unwrap_or_else(|| "tokio".into());
    let name = args.value("name").unwrap_or_else(|| "weft".into());
    let threads: usize = args.parsed("threads", 2)?;
    args.finish()?;
    let service = Service::new(&name);
    // One thread: a current-thread runtime, with no cross-thread wakeups.
    let rt = match threads {
        0 | 1 => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        n => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(n)
            .enable_all()
            .build(),
    }
    .map_err(|e| Usage(format!("runtime: {e}")))?;
    let result = match driver.as_str() {
        "tokio" => rt.block_on(async {
            let listener = weft_tokio::Listener::bind(&addr).await?;
            announce(&listener.local_endpoint()?);
            weft_tokio::serve_until(
                listener,
                tokio_handlers(&service),
                Default::default(),
                shutdown_signal(),
            )
            .await
        }),
        "mio" => (|| {
            let server = weft_mio::Server::bind(&addr, mio_handlers(&service), Default::default())?;
            announce(server.local_endpoint());
            rt.block_on(shutdown_signal());
            server.shutdown();
            Ok(())
        })(),
        other => {
            return Err(Usage(format!(
                "--driver must be tokio or mio, not {other:?}"
            )));
        }
    };
    if let NetEndpoint::Unix(path) = &addr {
        let _ = std::fs::remove_file(path);
    }
    result.map_err(|e: std::io::Error| Usage(format!("serve: {e}")))
}

fn announce(endpoint: &NetEndpoint) {
    println!("listening {endpoint}");
    let _ = std::io::stdout().flush();
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
