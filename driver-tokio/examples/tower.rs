//! tower layers on both sides of a weft call:
//! `cargo run -p weft-tokio --features tower --example tower`.
//!
//! The server wraps its handler in a concurrency limit and a load shedder;
//! the client wraps its connection in a timeout and a retry policy. Starts
//! its own server on a free port and exits when done.

use bytes::Bytes;
use std::time::Duration;
use tower::retry::Policy;
use tower::{ServiceBuilder, ServiceExt};
use weft_tokio::tower::{BoxError, CallRequest};
use weft_tokio::{ClientOptions, ConstantResolver, HandlerMap, Listener, MethodKey, Request, tcp};

/// Retries a call up to `left` more times when the server shed it.
#[derive(Clone)]
struct RetryShed {
    left: usize,
}

impl Policy<CallRequest, Bytes, BoxError> for RetryShed {
    type Future = tokio::time::Sleep;

    fn retry(
        &mut self,
        _req: &mut CallRequest,
        result: &mut Result<Bytes, BoxError>,
    ) -> Option<Self::Future> {
        let shed = matches!(result, Err(e) if e.to_string() == "service overloaded");
        (shed && self.left > 0).then(|| {
            self.left -= 1;
            tokio::time::sleep(Duration::from_millis(10))
        })
    }

    fn clone_request(&mut self, req: &CallRequest) -> Option<CallRequest> {
        Some(req.clone())
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // Server: at most two requests of this method at a time; more are
    // refused at once ("service overloaded") rather than queued.
    let shout = tower::service_fn(|req: Request| async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        Ok::<_, std::str::Utf8Error>(Bytes::from(std::str::from_utf8(&req.args)?.to_uppercase()))
    });
    let mut handlers = HandlerMap::new();
    handlers.set_service(
        "example.Shouter",
        "Shout",
        ServiceBuilder::new()
            .load_shed()
            .concurrency_limit(2)
            .service(shout),
    );
    let listener = Listener::bind(&tcp("127.0.0.1:0")).await?;
    let endpoint = listener.local_endpoint()?;
    tokio::spawn(weft_tokio::serve(listener, handlers, Default::default()));

    // Client: every call within a second, a shed call retried up to 20 times.
    let conn =
        weft_tokio::connect(ConstantResolver::new([endpoint]), ClientOptions::default()).await?;
    let client = ServiceBuilder::new()
        .retry(RetryShed { left: 20 })
        .timeout(Duration::from_secs(1))
        .service(conn.clone());

    let key = MethodKey::new("example.Shouter", "Shout");
    let calls = (0..6).map(|i| {
        let req = CallRequest::new(key, Bytes::from(format!("call {i}")));
        client.clone().oneshot(req)
    });
    for out in futures_join(calls).await {
        println!("{}", String::from_utf8_lossy(&out?));
    }
    conn.close();
    Ok(())
}

/// Runs the calls concurrently (six calls against a limit of two: some are
/// shed and retried).
async fn futures_join<F: std::future::Future + Send + 'static>(
    calls: impl Iterator<Item = F>,
) -> Vec<F::Output>
where
    F::Output: Send,
{
    let tasks: Vec<_> = calls.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("call task"));
    }
    out
}
