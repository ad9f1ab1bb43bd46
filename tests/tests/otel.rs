//! OpenTelemetry across the wire, every client driver x server driver:
//! the handler's span continues the caller's trace (the trace context on
//! the wire is OpenTelemetry's, as Go Service Weaver's is), and a request
//! that carries none starts a new trace.

use bytes::Bytes;
use opentelemetry::trace::{SpanId, TracerProvider as _};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use std::sync::OnceLock;
use tracing_subscriber::layer::SubscriberExt;
use weft_proto::{CallOptions, MethodKey, NetEndpoint};
use weft_tests::{Driver, TestClient};

struct Otel {
    exporter: InMemorySpanExporter,
    provider: SdkTracerProvider,
}

fn otel() -> &'static Otel {
    static OTEL: OnceLock<Otel> = OnceLock::new();
    OTEL.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("weft-tests"));
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
        Otel { exporter, provider }
    })
}

/// Finished spans named `name` whose `method` attribute is `method`.
fn finished(name: &str, method: &str) -> Vec<SpanData> {
    let o = otel();
    o.provider.force_flush().unwrap();
    o.exporter
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .filter(|s| {
            s.name == name
                && s.attributes
                    .iter()
                    .any(|kv| kv.key.as_str() == "method" && kv.value.as_str() == method)
        })
        .collect()
}

struct Server {
    endpoint: NetEndpoint,
    stop: Box<dyn FnOnce()>,
}

fn server(driver: Driver, component: &str) -> Server {
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    match driver {
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut h = weft_tokio::HandlerMap::new();
            h.set(component, "Echo", |req: weft_tokio::Request| async move {
                Ok(req.args)
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
            let s = weft_mio::Server::bind(&bind, h, Default::default()).unwrap();
            let endpoint = s.local_endpoint().clone();
            Server {
                endpoint,
                stop: Box::new(move || s.shutdown()),
            }
        }
    }
}

const DRIVERS: [Driver; 2] = [Driver::Tokio, Driver::Mio];

#[test]
fn the_server_span_continues_the_callers_trace() {
    otel();
    for c in DRIVERS {
        for s in DRIVERS {
            let comp = format!("test.Otel{c:?}{s:?}");
            let name = format!("{comp}.Echo");
            let srv = server(s, &comp);
            let client = TestClient::connect(c, vec![srv.endpoint.clone()]).unwrap();
            let opts = CallOptions {
                method_name: Some(Box::leak(name.clone().into_boxed_str())),
                ..CallOptions::default()
            };
            {
                let root = tracing::info_span!("test.request");
                let _in = root.enter();
                client
                    .call_key(
                        MethodKey::new(&comp, "Echo"),
                        Bytes::from_static(b"x"),
                        opts,
                    )
                    .unwrap();
            }
            // Every span ends once its side has let go of the call.
            client.close();
            (srv.stop)();

            let ctx = format!("{c:?} client, {s:?} server");
            let calls = finished("weft.call", &name);
            let handles = finished("weft.handle", &name);
            assert_eq!((calls.len(), handles.len()), (1, 1), "{ctx}");
            let (call, handle) = (&calls[0], &handles[0]);
            assert_eq!(
                handle.span_context.trace_id(),
                call.span_context.trace_id(),
                "{ctx}: one trace"
            );
            assert_eq!(
                handle.parent_span_id,
                call.span_context.span_id(),
                "{ctx}: the handler's parent is the call"
            );
            assert!(handle.parent_span_is_remote, "{ctx}");
        }
    }
}

#[test]
fn a_request_without_trace_context_starts_a_new_trace() {
    otel();
    let comp = "test.OtelFresh";
    let name = format!("{comp}.Echo");
    let srv = server(Driver::Tokio, comp);
    let client = TestClient::connect(Driver::Mio, vec![srv.endpoint.clone()]).unwrap();
    // No subscriber on the calling thread: the call has no span, so no
    // trace context goes on the wire.
    let opts = CallOptions {
        method_name: Some(Box::leak(name.clone().into_boxed_str())),
        ..CallOptions::default()
    };
    tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
        client
            .call_key(MethodKey::new(comp, "Echo"), Bytes::new(), opts)
            .unwrap();
    });
    client.close();
    (srv.stop)();
    assert!(finished("weft.call", &name).is_empty());
    let handles = finished("weft.handle", &name);
    assert_eq!(handles.len(), 1);
    assert_eq!(handles[0].parent_span_id, SpanId::INVALID, "a root span");
    assert!(handles[0].span_context.is_valid());
}
