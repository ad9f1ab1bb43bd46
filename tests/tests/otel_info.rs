//! OpenTelemetry with a subscriber that records INFO and above only, so
//! weft's own spans (DEBUG) are off: the caller's trace still crosses the
//! wire, from the caller's own span, and a handler can continue it
//! (`Request::otel_context`). Both client drivers, both server drivers.
//! A test binary of its own: the subscriber is process-wide.

use bytes::Bytes;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use std::sync::OnceLock;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use weft_proto::{CallOptions, MethodKey, NetEndpoint};
use weft_tests::{Driver, TestClient};

const COMPONENT: &str = "github.com/acme/Info/Trace";

fn install() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let provider = SdkTracerProvider::builder().build();
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("weft-tests"))
            .with_filter(LevelFilter::INFO);
        let subscriber = tracing_subscriber::registry().with(layer);
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// What the handler saw: the trace id of `req.otel_context()`, or empty.
fn seen(trace_id: Option<opentelemetry::trace::TraceId>) -> Bytes {
    trace_id.map_or_else(Bytes::new, |t| Bytes::copy_from_slice(&t.to_bytes()))
}

fn trace_of(cx: &opentelemetry::Context) -> Option<opentelemetry::trace::TraceId> {
    cx.has_active_span()
        .then(|| cx.span().span_context().trace_id())
}

/// A server whose `Seen` answers the trace id its request continues.
fn serve(driver: Driver) -> (NetEndpoint, Box<dyn FnOnce()>) {
    let bind: NetEndpoint = "tcp://127.0.0.1:0".parse().unwrap();
    match driver {
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut h = weft_tokio::HandlerMap::new();
            h.set(COMPONENT, "Seen", |req: weft_tokio::Request| async move {
                Ok(seen(trace_of(&req.otel_context())))
            });
            let listener = rt.block_on(weft_tokio::Listener::bind(&bind)).unwrap();
            let endpoint = listener.local_endpoint().unwrap();
            let task = rt.spawn(weft_tokio::serve(listener, h, Default::default()));
            (
                endpoint,
                Box::new(move || {
                    task.abort();
                    drop(rt);
                }),
            )
        }
        Driver::Mio => {
            let mut h = weft_mio::HandlerMap::new();
            h.set(COMPONENT, "Seen", |req: weft_mio::Request| {
                Ok(seen(trace_of(&req.otel_context())))
            });
            let s = weft_mio::Server::bind(&bind, h, Default::default()).unwrap();
            let endpoint = s.local_endpoint().clone();
            (endpoint, Box::new(move || s.shutdown()))
        }
    }
}

fn the_callers_trace_crosses_with_weft_spans_filtered_out(client: Driver, server: Driver) {
    install();
    let (endpoint, stop) = serve(server);
    let c = TestClient::connect(client, vec![endpoint]).unwrap();
    let span = tracing::info_span!("checkout");
    let want = trace_of(&span.context()).expect("the layer records INFO spans");
    let got = span.in_scope(|| {
        c.call_key(
            MethodKey::new(COMPONENT, "Seen"),
            Bytes::new(),
            CallOptions::default(),
        )
        .unwrap()
    });
    assert_eq!(&got[..], &want.to_bytes()[..], "{client:?} -> {server:?}");
    // Outside any span: nothing to continue.
    let none = c
        .call_key(
            MethodKey::new(COMPONENT, "Seen"),
            Bytes::new(),
            CallOptions::default(),
        )
        .unwrap();
    assert!(none.is_empty());
    c.close();
    stop();
}

#[test]
fn tokio_to_tokio() {
    the_callers_trace_crosses_with_weft_spans_filtered_out(Driver::Tokio, Driver::Tokio);
}

#[test]
fn tokio_to_mio() {
    the_callers_trace_crosses_with_weft_spans_filtered_out(Driver::Tokio, Driver::Mio);
}

#[test]
fn mio_to_tokio() {
    the_callers_trace_crosses_with_weft_spans_filtered_out(Driver::Mio, Driver::Tokio);
}

#[test]
fn mio_to_mio() {
    the_callers_trace_crosses_with_weft_spans_filtered_out(Driver::Mio, Driver::Mio);
}
