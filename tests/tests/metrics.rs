//! Per-method metrics over real sockets, every client driver x server
//! driver: the counters move by exactly the calls made.
//!
//! The debugging recorder's snapshot takes each counter's and gauge's
//! value and resets it: a snapshot shows what changed since the last one.
//! The tests take turns so that each sees only its own calls.

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use std::sync::OnceLock;
use weft_proto::{CallOptions, MethodKey, NetEndpoint};
use weft_tests::{Driver, TestClient};

fn snapshotter() -> &'static Snapshotter {
    static S: OnceLock<Snapshotter> = OnceLock::new();
    S.get_or_init(|| {
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        recorder.install().unwrap();
        snapshotter
    })
}

/// What changed since the last snapshot.
struct Changes(Vec<(metrics_util::CompositeKey, DebugValue)>);

fn changes() -> Changes {
    let all = snapshotter().snapshot().into_vec();
    Changes(all.into_iter().map(|(k, _, _, v)| (k, v)).collect())
}

/// One test at a time: a snapshot resets what it reads.
fn turn() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

impl Changes {
    /// Takes the value of metric `name` whose labels include `labels`.
    fn value(&mut self, name: &str, labels: &[(&str, &str)]) -> Option<DebugValue> {
        let i = self.0.iter().position(|(k, _)| {
            let key = k.key();
            key.name() == name
                && labels
                    .iter()
                    .all(|(n, v)| key.labels().any(|l| l.key() == *n && l.value() == *v))
        })?;
        Some(self.0.swap_remove(i).1)
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.value(name, labels) {
            Some(DebugValue::Counter(n)) => n,
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.value(name, labels) {
            Some(DebugValue::Gauge(g)) => g.into_inner(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }

    fn histogram_len(&mut self, name: &str, labels: &[(&str, &str)]) -> usize {
        match self.value(name, labels) {
            Some(DebugValue::Histogram(h)) => h.len(),
            other => panic!("{name} {labels:?}: {other:?}"),
        }
    }
}

struct Server {
    endpoint: NetEndpoint,
    stop: Box<dyn FnOnce()>,
}

/// `Echo` echoes, `Fail` fails with an error.
fn server(driver: Driver, component: &str) -> Server {
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    match driver {
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut h = weft_tokio::HandlerMap::new();
            h.set(component, "Echo", |req: weft_tokio::Request| async move {
                Ok(req.args)
            });
            h.set(component, "Fail", |_req: weft_tokio::Request| async move {
                Err::<Bytes, _>(weft_tokio::HandlerError::new("out of stock"))
            });
            let listener = rt.block_on(weft_tokio::Listener::bind(&bind)).unwrap();
            let endpoint = listener.local_endpoint().unwrap();
            let task = rt.spawn(weft_tokio::serve(listener, h, Default::default()));
            Server {
                endpoint,
                stop: Box::new(move || {
                    task.abort();
                    drop(rt);
                }),
            }
        }
        Driver::Mio => {
            let mut h = weft_mio::HandlerMap::new();
            h.set(component, "Echo", |req: weft_mio::Request| Ok(req.args));
            h.set(component, "Fail", |_req: weft_mio::Request| {
                Err(weft_mio::HandlerError::new("out of stock"))
            });
            let s = weft_mio::Server::bind(&bind, h, Default::default()).unwrap();
            let endpoint = s.local_endpoint().clone();
            Server {
                endpoint,
                stop: Box::new(move || s.shutdown()),
            }
        }
    }
}

#[test]
fn counters_move_by_exactly_the_calls_made() {
    let _turn = turn();
    changes();
    for c in [Driver::Tokio, Driver::Mio] {
        for s in [Driver::Tokio, Driver::Mio] {
            let comp = format!("github.com/acme/{c:?}{s:?}/Cart");
            let srv = server(s, &comp);
            let client = TestClient::connect(c, vec![srv.endpoint.clone()]).unwrap();
            let opts = |method: &str| CallOptions {
                method_name: Some(Box::leak(format!("{comp}.{method}").into_boxed_str())),
                ..CallOptions::default()
            };
            for i in 0..5u8 {
                let args = vec![i; 10];
                let key = MethodKey::new(&comp, "Echo");
                client.call_key(key, args, opts("Echo")).unwrap();
            }
            for _ in 0..2 {
                let key = MethodKey::new(&comp, "Fail");
                let err = client.call_key(key, vec![0; 3], opts("Fail")).unwrap_err();
                assert_eq!(err.kind(), "remote");
            }
            let mut m = changes();
            let ctx = format!("{c:?} client, {s:?} server");
            let echo = [("component", comp.as_str()), ("method", "Echo")];
            let fail = [("component", comp.as_str()), ("method", "Fail")];

            assert_eq!(m.counter("weft_client_calls_total", &echo), 5, "{ctx}");
            assert_eq!(
                m.counter("weft_client_request_bytes_total", &echo),
                50,
                "{ctx}"
            );
            assert_eq!(
                m.counter("weft_client_response_bytes_total", &echo),
                50,
                "{ctx}"
            );
            assert_eq!(
                m.histogram_len("weft_client_latency_seconds", &echo),
                5,
                "{ctx}"
            );
            assert_eq!(m.gauge("weft_client_in_flight", &echo), 0.0, "{ctx}");
            assert_eq!(m.counter("weft_client_calls_total", &fail), 2, "{ctx}");
            let remote = [fail[0], fail[1], ("kind", "remote")];
            assert_eq!(m.counter("weft_client_errors_total", &remote), 2, "{ctx}");
            assert_eq!(
                m.counter("weft_client_request_bytes_total", &fail),
                6,
                "{ctx}"
            );

            assert_eq!(m.counter("weft_server_requests_total", &echo), 5, "{ctx}");
            assert_eq!(
                m.counter("weft_server_request_bytes_total", &echo),
                50,
                "{ctx}"
            );
            assert_eq!(
                m.counter("weft_server_response_bytes_total", &echo),
                50,
                "{ctx}"
            );
            assert_eq!(
                m.histogram_len("weft_server_latency_seconds", &echo),
                5,
                "{ctx}"
            );
            assert_eq!(m.gauge("weft_server_in_flight", &echo), 0.0, "{ctx}");
            let error = [fail[0], fail[1], ("kind", "error")];
            assert_eq!(m.counter("weft_server_errors_total", &error), 2, "{ctx}");
            client.close();
            (srv.stop)();
        }
    }
}

#[test]
fn replica_states_are_counted() {
    let _turn = turn();
    let srv = server(Driver::Mio, "test.Replicas");
    changes();
    let client = TestClient::connect(Driver::Tokio, vec![srv.endpoint.clone()]).unwrap();
    let key = MethodKey::new("test.Replicas", "Echo");
    client
        .call_key(key, Bytes::new(), CallOptions::default())
        .unwrap();
    let ready = [("state", "ready")];
    assert_eq!(changes().gauge("weft_client_replicas", &ready), 1.0);
    client.close();
    assert_eq!(
        changes().gauge("weft_client_replicas", &ready),
        -1.0,
        "after close"
    );
    (srv.stop)();
}

/// A call its caller lets go of while it runs (a dropped tokio future, a
/// dropped mio `PendingCall`) ends as cancelled in the metrics: counted
/// once, and no longer in flight.
#[test]
fn an_abandoned_call_counts_as_cancelled() {
    use std::sync::{Arc, Mutex, mpsc};
    let _turn = turn();
    let comp = "github.com/acme/Abandon/Cart";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (started_tx, started_rx) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let started = Arc::new(Mutex::new(started_rx));
    let mut h = weft_tokio::HandlerMap::new();
    h.set(comp, "Hang", move |_req: weft_tokio::Request| {
        let _ = started_tx.lock().unwrap().send(());
        std::future::pending::<weft_tokio::HandlerResult>()
    });
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    let listener = rt.block_on(weft_tokio::Listener::bind(&bind)).unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let server = rt.spawn(weft_tokio::serve(listener, h, Default::default()));
    let key = MethodKey::new(comp, "Hang");
    let opts = CallOptions {
        method_name: Some("github.com/acme/Abandon/Cart.Hang"),
        ..CallOptions::default()
    };
    let labels = [("component", comp), ("method", "Hang")];
    let cancelled = [labels[0], labels[1], ("kind", "cancelled")];
    let check = |driver: &str| {
        let mut m = changes();
        assert_eq!(m.counter("weft_client_calls_total", &labels), 1, "{driver}");
        assert_eq!(
            m.counter("weft_client_errors_total", &cancelled),
            1,
            "{driver}"
        );
        assert_eq!(m.gauge("weft_client_in_flight", &labels), 0.0, "{driver}");
    };
    changes();

    // tokio: the call's future is dropped once its handler runs.
    let resolver = weft_tokio::ConstantResolver::new([endpoint.clone()]);
    let conn = rt
        .block_on(weft_tokio::connect(resolver, Default::default()))
        .unwrap();
    let rx = started.clone();
    rt.block_on(async {
        let call = conn.call(key, Bytes::new(), opts.clone());
        let handler_runs = tokio::task::spawn_blocking(move || rx.lock().unwrap().recv());
        tokio::select! {
            r = call => panic!("the call ended: {r:?}"),
            r = handler_runs => r.unwrap().unwrap(),
        }
    });
    check("tokio");
    conn.close();

    // mio: the pending call is dropped once its handler runs.
    let resolver = weft_mio::ConstantResolver::new([endpoint]);
    let client = weft_mio::Client::connect(resolver, Default::default()).unwrap();
    let pending = client.start(key, Bytes::new(), opts);
    started.lock().unwrap().recv().unwrap();
    drop(pending);
    check("mio");
    client.close();
    server.abort();
}

/// A server whose future is dropped (as `select!` with a shutdown signal
/// does) ends the requests its connections had in flight: the gauge comes
/// back to zero and they count as cancelled.
#[test]
fn dropping_a_tokio_server_ends_its_requests() {
    use std::sync::{Mutex, mpsc};
    let _turn = turn();
    let comp = "github.com/acme/Dropped/Cart";
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (started_tx, started) = mpsc::channel::<()>();
    let started_tx = Mutex::new(started_tx);
    let mut h = weft_tokio::HandlerMap::new();
    h.set(comp, "Hang", move |_req: weft_tokio::Request| {
        let _ = started_tx.lock().unwrap().send(());
        std::future::pending::<weft_tokio::HandlerResult>()
    });
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    let listener = rt.block_on(weft_tokio::Listener::bind(&bind)).unwrap();
    let endpoint = listener.local_endpoint().unwrap();
    let server = rt.spawn(weft_tokio::serve(listener, h, Default::default()));
    changes();
    let client = weft_mio::Client::connect(
        weft_mio::ConstantResolver::new([endpoint]),
        Default::default(),
    )
    .unwrap();
    let call = client.start(
        MethodKey::new(comp, "Hang"),
        Bytes::new(),
        CallOptions::default(),
    );
    started.recv().unwrap();
    server.abort();
    // The client sees the connection go once the server's connection task
    // (which owns the socket and the requests) is dropped.
    let err = call.wait().unwrap_err();
    assert!(err.is_communication(), "{err}");
    let labels = [("component", comp), ("method", "Hang")];
    let mut m = changes();
    assert_eq!(m.gauge("weft_server_in_flight", &labels), 0.0);
    assert_eq!(
        m.counter(
            "weft_server_errors_total",
            &[labels[0], labels[1], ("kind", "cancelled")]
        ),
        1
    );
    client.close();
}
