//! End-to-end scenarios over real TCP and Unix sockets and in-memory pipes,
//! after Service Weaver's call_test.go.

mod common;

use bytes::Bytes;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use weft_tokio::{
    BoxFuture, BoxStream, CallError, CallOptions, ClientOptions, Connection, ConstantResolver,
    DynamicResolver, Endpoint, Metadata, NetEndpoint, ServerOptions, TraceContext,
};

type Rt = Result<(), Box<dyn std::error::Error>>;

async fn client(endpoints: Vec<NetEndpoint>) -> Connection {
    weft_tokio::connect(ConstantResolver::new(endpoints), ClientOptions::default())
        .await
        .unwrap()
}

async fn echo(conn: &Connection, data: &'static [u8]) -> Result<Bytes, CallError> {
    conn.call(
        key("Echo"),
        Bytes::from_static(data),
        CallOptions::default(),
    )
    .await
}

/// Bounds a test step that should finish quickly.
async fn within<T>(limit: Duration, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, f).await.expect("timed out")
}

const SOON: Duration = Duration::from_secs(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_tcp() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    assert_eq!(&within(SOON, echo(&conn, b"hello")).await?[..], b"hello");
    conn.close();
    server.stop().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_a_unix_socket() -> Rt {
    let sock = TempSock::new("call");
    let server = start(weft_tokio::unix(&sock.path), "s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    assert_eq!(&within(SOON, echo(&conn, b"hello")).await?[..], b"hello");
    conn.close();
    server.stop().await?;
    Ok(())
}

/// Dials in-memory pipes served with `serve_on`.
struct Pipe {
    counters: Counters,
}

impl Endpoint for Pipe {
    fn dial(&self) -> BoxFuture<'_, std::io::Result<BoxStream>> {
        Box::pin(async move {
            let (ours, theirs) = tokio::io::duplex(64 * 1024);
            weft_tokio::serve_on(
                theirs,
                handlers("pipe", &self.counters),
                ServerOptions::default(),
            );
            Ok(Box::new(ours) as BoxStream)
        })
    }
    fn address(&self) -> String {
        "pipe://memory".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_over_an_in_memory_pipe() -> Rt {
    let resolver = ConstantResolver::new([Pipe {
        counters: Counters::default(),
    }]);
    let conn = weft_tokio::connect(resolver, ClientOptions::default()).await?;
    assert_eq!(&within(SOON, echo(&conn, b"hello")).await?[..], b"hello");
    let big = Bytes::from(vec![7u8; 1 << 20]);
    let out = within(
        SOON,
        conn.call(key("Echo"), big.clone(), CallOptions::default()),
    )
    .await?;
    assert_eq!(out, big, "1 MiB round trip through a 64 KiB pipe");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_concurrent_callers_for_100_ms() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let end = Instant::now() + Duration::from_millis(100);
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let conn = conn.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0;
            while Instant::now() < end {
                let args = Bytes::from(vec![i; 1 + n % 100]);
                let out = conn
                    .call(key("Echo"), args.clone(), CallOptions::default())
                    .await
                    .unwrap();
                assert_eq!(out, args);
                n += 1;
            }
            n
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += within(SOON, t).await?;
    }
    assert!(total >= 10, "{total} calls");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_errors_keep_their_message() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let err = within(
        SOON,
        conn.call(
            key("Error"),
            Bytes::from_static(b"boom"),
            CallOptions::default(),
        ),
    )
    .await
    .unwrap_err();
    assert_eq!(err.remote().unwrap().message(), "boom");
    assert_eq!(err.to_string(), "boom");
    assert!(!err.is_communication() && !err.is_unreachable());
    assert!(!err.is_deadline_exceeded() && !err.is_cancelled());
    let unknown = within(
        SOON,
        conn.call(key("Nope"), Bytes::new(), CallOptions::default()),
    )
    .await
    .unwrap_err();
    assert!(
        unknown.to_string().contains("unknown function"),
        "{unknown}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_ends_the_call_and_the_handler() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let deadline = Instant::now() + Duration::from_millis(50);
    let opts = CallOptions {
        deadline: Some(deadline),
        ..Default::default()
    };
    let started = Instant::now();
    let err = within(
        SOON,
        conn.call(key("Sleep"), Bytes::from_static(b"10000"), opts),
    )
    .await
    .unwrap_err();
    assert!(
        err.is_deadline_exceeded() || err.is_communication(),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));
    // The server's own deadline stops the handler (no cancel frame is sent).
    within(SOON, server.counters.wait_cancelled(1)).await;
    // The deadline reaches the handler as time left.
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(10)),
        ..Default::default()
    };
    let left: u64 =
        std::str::from_utf8(&conn.call(key("Deadline"), Bytes::new(), opts).await?)?.parse()?;
    assert!(left > 9_000_000 && left <= 10_000_000, "{left} µs");
    let none = conn
        .call(key("Deadline"), Bytes::new(), CallOptions::default())
        .await?;
    assert_eq!(&none[..], b"none");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_call_cancels_the_handler_promptly() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let call = conn.call(key("CancelWait"), Bytes::new(), CallOptions::default());
    // Give the request time to reach the handler, then abandon it.
    assert!(
        tokio::time::timeout(Duration::from_millis(50), call)
            .await
            .is_err()
    );
    let t = Instant::now();
    within(SOON, server.counters.wait_cancelled(1)).await;
    assert!(
        t.elapsed() < Duration::from_millis(50),
        "handler saw the cancel after {:?}",
        t.elapsed()
    );
    assert_eq!(server.counters.cancelled(), 1, "moved by exactly one");
    // The connection is fine afterwards.
    assert_eq!(&echo(&conn, b"still").await?[..], b"still");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_ends_pending_calls_and_later_calls_say_closed() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let mut pending = Box::pin(conn.call(
        key("Sleep"),
        Bytes::from_static(b"10000"),
        CallOptions::default(),
    ));
    // One poll sends the request; an echo on the same connection coming
    // back proves the server has it.
    assert!(
        tokio::time::timeout(Duration::from_millis(1), &mut pending)
            .await
            .is_err()
    );
    echo(&conn, b"x").await?;
    conn.close();
    conn.close();
    let err = within(SOON, pending).await.unwrap_err();
    assert!(
        err.is_communication() && err.to_string().contains("closed"),
        "{err}"
    );
    let later = echo(&conn, b"x").await.unwrap_err();
    assert!(later.to_string().contains("closed"), "{later}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_and_metadata_reach_the_handler() -> Rt {
    let server = tcp_server("s").await;
    let conn = client(vec![server.endpoint.clone()]).await;
    let trace = TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
        flags: 1,
    };
    let opts = CallOptions {
        trace: Some(trace),
        metadata: Some(Metadata::from_iter([("b", "2"), ("a", "1")])),
        ..Default::default()
    };
    let md = conn
        .call(key("Metadata"), Bytes::new(), opts.clone())
        .await?;
    assert_eq!(&md[..], b"a=1\nb=2");
    let t = conn.call(key("Trace"), Bytes::new(), opts).await?;
    assert_eq!(&t[..16], &[1; 16]);
    assert_eq!(&t[16..24], &[2; 8]);
    assert_eq!(t[24], 1);
    Ok(())
}

async fn who(conn: &Connection) -> String {
    let b = within(
        SOON,
        conn.call(key("Who"), Bytes::new(), CallOptions::default()),
    )
    .await
    .unwrap();
    String::from_utf8(b.to_vec()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multiple_and_changing_endpoints() -> Rt {
    let a = tcp_server("a").await;
    let b = tcp_server("b").await;
    let c = tcp_server("c").await;
    let resolver = DynamicResolver::new();
    resolver.set([a.endpoint.clone(), b.endpoint.clone()]);
    let conn = weft_tokio::connect(resolver.clone(), ClientOptions::default()).await?;
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..40 {
        *seen.entry(who(&conn).await).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    resolver.set([c.endpoint.clone()]);
    // The client follows the resolver: soon every call lands on c.
    within(SOON, async { while who(&conn).await != "c" {} }).await;
    for _ in 0..10 {
        assert_eq!(who(&conn).await, "c");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn draining_finishes_in_flight_calls_over_real_connections() -> Rt {
    let a = tcp_server("a").await;
    let b = tcp_server("b").await;
    let resolver = DynamicResolver::new();
    resolver.set([a.endpoint.clone()]);
    let conn = weft_tokio::connect(resolver.clone(), ClientOptions::default()).await?;
    assert_eq!(who(&conn).await, "a");
    let slow = {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.call(
                key("Sleep"),
                Bytes::from_static(b"200"),
                CallOptions::default(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    resolver.set([b.endpoint.clone()]);
    within(SOON, async { while who(&conn).await != "b" {} }).await;
    // The call on the draining replica still finishes normally.
    within(SOON, slow).await?.unwrap();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_until_past_its_grace_cancels_the_call() -> Rt {
    let opts = ServerOptions {
        shutdown_grace: Duration::from_millis(50),
        ..ServerOptions::default()
    };
    let server = start_with(weft_tokio::tcp("127.0.0.1:0"), "s", opts).await;
    let conn = client(vec![server.endpoint.clone()]).await;
    echo(&conn, b"warm").await?;
    let pending = {
        let conn = conn.clone();
        tokio::spawn(async move {
            conn.call(
                key("Sleep"),
                Bytes::from_static(b"10000"),
                CallOptions::default(),
            )
            .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let counters = server.counters.clone();
    server.stop().await?;
    let err = within(SOON, pending).await?.unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    // Shutdown cancelled the handler.
    within(SOON, counters.wait_cancelled(1)).await;
    Ok(())
}

async fn faulty_client(
    server: NetEndpoint,
    read: usize,
    write: usize,
) -> (Connection, Arc<AtomicUsize>) {
    let dials = Arc::new(AtomicUsize::new(0));
    let ep = FaultyEndpoint {
        inner: server,
        read_budget: read,
        write_budget: write,
        dials: dials.clone(),
    };
    (
        weft_tokio::connect(ConstantResolver::new([ep]), ClientOptions::default())
            .await
            .unwrap(),
        dials,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injected_io_errors_on_each_side_fail_calls_as_communication_errors() -> Rt {
    let big = Bytes::from(vec![1u8; 10_000]);
    let server = tcp_server("s").await;
    // WriteRequest: the client cannot write the request.
    let (conn, _) = faulty_client(server.endpoint.clone(), usize::MAX, 100).await;
    let err = within(
        SOON,
        conn.call(key("Echo"), big.clone(), CallOptions::default()),
    )
    .await
    .map(|b| b.len())
    .unwrap_err();
    assert!(err.is_communication(), "WriteRequest: {err}");
    // ReadResponse: the client cannot read the response.
    let (conn, _) = faulty_client(server.endpoint.clone(), 100, usize::MAX).await;
    let err = within(
        SOON,
        conn.call(key("Echo"), big.clone(), CallOptions::default()),
    )
    .await
    .map(|b| b.len())
    .unwrap_err();
    assert!(err.is_communication(), "ReadResponse: {err}");
    // ReadRequest: the server cannot read the request.
    let (ep, _) = faulty_tcp_server(100, usize::MAX).await;
    let conn = client(vec![ep]).await;
    let err = within(
        SOON,
        conn.call(key("Echo"), big.clone(), CallOptions::default()),
    )
    .await
    .map(|b| b.len())
    .unwrap_err();
    assert!(err.is_communication(), "ReadRequest: {err}");
    // WriteResponse: the server cannot write the response.
    let (ep, _) = faulty_tcp_server(usize::MAX, 100).await;
    let conn = client(vec![ep]).await;
    let err = within(SOON, conn.call(key("Echo"), big, CallOptions::default()))
        .await
        .map(|b| b.len())
        .unwrap_err();
    assert!(err.is_communication(), "WriteResponse: {err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnects_through_100_connections_that_each_fail_after_1000_bytes() -> Rt {
    let server = tcp_server("s").await;
    let (conn, dials) = faulty_client(server.endpoint.clone(), usize::MAX, 1000).await;
    let opts = CallOptions {
        retry: true,
        ..Default::default()
    };
    let args = Bytes::from(vec![3u8; 100]);
    within(Duration::from_secs(60), async {
        while dials.load(Ordering::SeqCst) < 100 {
            let out = conn
                .call(key("Echo"), args.clone(), opts.clone())
                .await
                .unwrap();
            assert_eq!(out, args);
        }
    })
    .await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partial_failure_dead_and_live_endpoint() -> Rt {
    let live = tcp_server("live").await;
    // A port nothing listens on: bind, note it, close.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0")?;
        weft_tokio::tcp(l.local_addr()?.to_string())
    };
    let conn = client(vec![dead, live.endpoint.clone()]).await;
    for _ in 0..20 {
        assert_eq!(who(&conn).await, "live");
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_versus_no_retry() -> Rt {
    let server = tcp_server("s").await;
    // Every connection dies once it has carried 120 bytes: the version
    // (20) plus one small request (~47) fit, a second request does not.
    for retry in [false, true] {
        let (conn, _) = faulty_client(server.endpoint.clone(), usize::MAX, 120).await;
        let opts = CallOptions {
            retry,
            ..Default::default()
        };
        let mut failures = 0;
        for _ in 0..10 {
            if within(
                SOON,
                conn.call(key("Echo"), Bytes::from_static(b"x"), opts.clone()),
            )
            .await
            .is_err()
            {
                failures += 1;
            }
        }
        if retry {
            assert_eq!(failures, 0, "retry rides out the broken connections");
        } else {
            assert!(
                failures > 0,
                "without retry, calls on a dying connection fail"
            );
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_until_shutdown_stops_accepting_and_returns() -> Rt {
    let server = tcp_server("s").await;
    let endpoint = server.endpoint.clone();
    let conn = client(vec![endpoint.clone()]).await;
    echo(&conn, b"x").await?;
    within(SOON, server.stop()).await?;
    // Nothing listens any more.
    assert!(
        tokio::net::TcpStream::connect(endpoint.to_string().trim_start_matches("tcp://"))
            .await
            .is_err()
    );
    // The connection was closed and no replica is reachable: a call fails
    // on the closing connection if the client has not noticed yet, else as
    // soon as the redial is refused, well before its deadline.
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(100)),
        ..Default::default()
    };
    let err = conn
        .call(key("Echo"), Bytes::new(), opts)
        .await
        .unwrap_err();
    assert!(
        (err.is_unreachable() && err.to_string().contains("refused")) || err.is_communication(),
        "{err}"
    );
    assert!(!err.is_deadline_exceeded(), "{err}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn constant_resolver_without_endpoints_is_unreachable() {
    let err = weft_tokio::connect(
        ConstantResolver::new(Vec::<NetEndpoint>::new()),
        ClientOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(err.is_unreachable(), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_handlers_do_not_hold_up_fast_ones_on_a_connection() -> Rt {
    for inline in [Some(Duration::from_micros(20)), None] {
        let opts = ServerOptions {
            inline_handler_duration: inline,
            ..Default::default()
        };
        let server = start_with(weft_tokio::tcp("127.0.0.1:0"), "s", opts).await;
        let conn = client(vec![server.endpoint.clone()]).await;
        let slow = {
            let conn = conn.clone();
            tokio::spawn(async move {
                conn.call(
                    key("Sleep"),
                    Bytes::from_static(b"1000"),
                    CallOptions::default(),
                )
                .await
            })
        };
        let t = Instant::now();
        for _ in 0..20 {
            echo(&conn, b"fast").await?;
        }
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "{inline:?}: {:?}",
            t.elapsed()
        );
        assert!(!slow.is_finished());
        within(SOON, slow).await??;
    }
    Ok(())
}

#[test]
fn net_endpoints_parse_and_display() {
    for ok in [
        "tcp://127.0.0.1:80",
        "tcp://[::1]:9",
        "unix:///tmp/s.sock",
        "unix://rel.sock",
    ] {
        assert_eq!(ok.parse::<NetEndpoint>().unwrap().to_string(), ok);
    }
    for bad in [
        "127.0.0.1:80",
        "tcp://nohost",
        "tcp://:80",
        "tcp://h:notaport",
        "unix://",
        "http://x",
    ] {
        let err = bad.parse::<NetEndpoint>().unwrap_err();
        assert!(err.to_string().contains(bad), "{err}");
    }
}

#[test]
fn connection_is_clone_send_sync() {
    fn assert_all<T: Clone + Send + Sync + 'static>() {}
    assert_all::<Connection>();
    assert_all::<weft_tokio::HandlerMap>();
}

/// A resolver whose waiting resolves report when they start and when they
/// are dropped.
struct Watched {
    inner: DynamicResolver,
    started: Arc<tokio::sync::Notify>,
    dropped: Arc<tokio::sync::Notify>,
}

struct OnDrop(Arc<tokio::sync::Notify>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.notify_one();
    }
}

impl weft_tokio::Resolver for Watched {
    fn is_constant(&self) -> bool {
        false
    }
    fn resolve(
        &self,
        version: Option<weft_tokio::EndpointsVersion>,
    ) -> BoxFuture<'_, weft_tokio::Resolved> {
        let guard = version.map(|_| OnDrop(self.dropped.clone()));
        let inner = self.inner.resolve(version);
        if version.is_some() {
            self.started.notify_one();
        }
        Box::pin(async move {
            let r = inner.await;
            drop(guard);
            r
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_a_resolve_waiting_for_news() {
    let started = Arc::new(tokio::sync::Notify::new());
    let dropped = Arc::new(tokio::sync::Notify::new());
    let inner = DynamicResolver::new();
    inner.set(Vec::<NetEndpoint>::new());
    let resolver = Watched {
        inner,
        started: started.clone(),
        dropped: dropped.clone(),
    };
    let conn = weft_tokio::connect(resolver, ClientOptions::default())
        .await
        .unwrap();
    // Close only once the client is waiting on the resolver for news.
    within(SOON, started.notified()).await;
    let notified = dropped.notified();
    conn.close();
    // The pending resolve (waiting for a new version that never comes) is
    // dropped, so nothing keeps the closed client alive.
    within(SOON, notified).await;
}
