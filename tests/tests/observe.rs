//! Spans and the caller's address, over real sockets, every client driver
//! x server driver: one `weft.call` span per call on the client and one
//! `weft.handle` span per request on the server, with their fields, and
//! handler code running inside the server's span.

use bytes::Bytes;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use weft_proto::{CallError, CallOptions, MethodKey, NetEndpoint};
use weft_tests::{Driver, TestClient, Transport};

/// What the capture layer saw of one span.
#[derive(Debug, Clone, Default)]
struct SpanRecord {
    name: String,
    fields: BTreeMap<String, String>,
    parent: Option<u64>,
}

#[derive(Default)]
struct Seen {
    spans: BTreeMap<u64, SpanRecord>,
    /// Each event's `message` and the span it was inside.
    events: Vec<(String, Option<u64>)>,
    /// Each event's level and fields, `message` included.
    event_fields: Vec<(tracing::Level, BTreeMap<String, String>)>,
}

struct Capture(Arc<Mutex<Seen>>);

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut rec = SpanRecord {
            name: attrs.metadata().name().to_string(),
            ..SpanRecord::default()
        };
        attrs.record(&mut Fields(&mut rec.fields));
        rec.parent = if attrs.is_root() {
            None
        } else if let Some(p) = attrs.parent() {
            Some(p.into_u64())
        } else {
            ctx.current_span().id().map(Id::into_u64)
        };
        self.0.lock().unwrap().spans.insert(id.into_u64(), rec);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(rec) = self.0.lock().unwrap().spans.get_mut(&id.into_u64()) {
            values.record(&mut Fields(&mut rec.fields));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let inside = ctx.event_span(event).map(|s| s.id().into_u64());
        let message = fields.get("message").cloned().unwrap_or_default();
        let mut seen = self.0.lock().unwrap();
        seen.events.push((message, inside));
        seen.event_fields.push((*event.metadata().level(), fields));
    }
}

/// The process-wide capture (drivers run on their own threads, so the
/// subscriber must be global).
fn seen() -> &'static Arc<Mutex<Seen>> {
    static SEEN: OnceLock<Arc<Mutex<Seen>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let subscriber = tracing_subscriber::registry().with(Capture(seen.clone()));
        tracing::subscriber::set_global_default(subscriber).unwrap();
        seen
    })
}

/// A server on `driver` whose component is `component`: `Peer` answers
/// the caller's address, `Log` logs `log <args>` and echoes, `Fail` fails.
struct Server {
    endpoint: NetEndpoint,
    stop: Box<dyn FnOnce()>,
}

fn server(driver: Driver, transport: Transport, component: &str) -> Server {
    let bind: NetEndpoint = match transport {
        Transport::Tcp => "tcp://127.0.0.1:0".parse().unwrap(),
        Transport::Unix => {
            let dir = std::env::temp_dir()
                .join(format!("weft-observe-{}-{component}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join("s.sock");
            let _ = std::fs::remove_file(&path);
            NetEndpoint::Unix(path)
        }
    };
    let peer_text = |peer: Option<&weft_tokio::PeerAddr>| match peer {
        Some(p) => Bytes::from(p.to_string()),
        None => Bytes::from_static(b"none"),
    };
    match driver {
        Driver::Tokio => {
            let rt = tokio::runtime::Runtime::new().unwrap();
            let mut h = weft_tokio::HandlerMap::new();
            h.set(
                component,
                "Peer",
                move |req: weft_tokio::Request| async move { Ok(peer_text(req.peer_addr())) },
            );
            h.set(component, "Log", |req: weft_tokio::Request| async move {
                tracing::info!("log {}", String::from_utf8_lossy(&req.args));
                Ok(req.args)
            });
            h.set(component, "Fail", |_req: weft_tokio::Request| async move {
                Err::<Bytes, _>(weft_tokio::HandlerError::new("no such item"))
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
            h.set(component, "Peer", move |req: weft_mio::Request| {
                Ok(peer_text(req.peer_addr()))
            });
            h.set(component, "Log", |req: weft_mio::Request| {
                tracing::info!("log {}", String::from_utf8_lossy(&req.args));
                Ok(req.args)
            });
            h.set(component, "Fail", |_req: weft_mio::Request| {
                Err(weft_mio::HandlerError::new("no such item"))
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

fn call(
    client: &TestClient,
    component: &str,
    method: &str,
    args: &'static [u8],
) -> Result<Bytes, CallError> {
    let opts = CallOptions {
        method_name: Some(Box::leak(format!("{component}.{method}").into_boxed_str())),
        ..CallOptions::default()
    };
    client.call_key(
        MethodKey::new(component, method),
        Bytes::from_static(args),
        opts,
    )
}

const DRIVERS: [Driver; 2] = [Driver::Tokio, Driver::Mio];

fn component(client: Driver, server: Driver, what: &str) -> String {
    format!("test.{what}.{client:?}{server:?}")
}

#[test]
fn handlers_see_the_callers_address() {
    for c in DRIVERS {
        for s in DRIVERS {
            let comp = component(c, s, "Peer");
            let tcp = server(s, Transport::Tcp, &comp);
            let client = TestClient::connect(c, vec![tcp.endpoint.clone()]).unwrap();
            let peer = call(&client, &comp, "Peer", b"").unwrap();
            let peer = String::from_utf8(peer.to_vec()).unwrap();
            let port: u16 = peer
                .strip_prefix("tcp://127.0.0.1:")
                .unwrap_or_else(|| panic!("{c:?}->{s:?}: {peer}"))
                .parse()
                .unwrap();
            assert_ne!(
                tcp.endpoint.to_string(),
                peer,
                "the client's, not the server's"
            );
            assert_ne!(port, 0);
            client.close();
            (tcp.stop)();

            let comp = format!("{comp}.unix");
            let unix = server(s, Transport::Unix, &comp);
            let client = TestClient::connect(c, vec![unix.endpoint.clone()]).unwrap();
            let peer = call(&client, &comp, "Peer", b"").unwrap();
            assert_eq!(
                &peer[..],
                b"unix:",
                "{c:?}->{s:?}: an unnamed client socket"
            );
            client.close();
            (unix.stop)();
        }
    }
}

/// The spans named `name` whose `method` field is `method`.
fn spans(name: &str, method: &str) -> Vec<(u64, SpanRecord)> {
    let seen = seen().lock().unwrap();
    seen.spans
        .iter()
        .filter(|(_, r)| {
            r.name == name && r.fields.get("method").map(String::as_str) == Some(method)
        })
        .map(|(id, r)| (*id, r.clone()))
        .collect()
}

#[test]
fn each_call_has_a_client_span_and_a_server_span_with_the_handler_inside() {
    seen();
    for c in DRIVERS {
        for s in DRIVERS {
            let comp = component(c, s, "Spans");
            let srv = server(s, Transport::Tcp, &comp);
            let client = TestClient::connect(c, vec![srv.endpoint.clone()]).unwrap();
            let outer = tracing::info_span!("test.outer", case = %comp);
            let outer_id = outer.id().unwrap().into_u64();
            {
                let _in = outer.enter();
                call(&client, &comp, "Log", b"hello").unwrap();
                let err = call(&client, &comp, "Fail", b"").unwrap_err();
                assert!(matches!(err, CallError::Remote(_)), "{err}");
            }
            client.close();
            (srv.stop)();

            let ctx = format!("{c:?} client, {s:?} server");
            let log = format!("{comp}.Log");
            let calls = spans("weft.call", &log);
            assert_eq!(calls.len(), 1, "{ctx}: {calls:?}");
            let f = &calls[0].1.fields;
            assert_eq!(
                calls[0].1.parent,
                Some(outer_id),
                "{ctx}: the caller's span is the parent"
            );
            assert_eq!(f["outcome"], "ok", "{ctx}");
            assert_eq!(f["attempts"], "1", "{ctx}");
            assert_eq!(f["replica"], srv.endpoint.to_string(), "{ctx}");

            let handles = spans("weft.handle", &log);
            assert_eq!(handles.len(), 1, "{ctx}: {handles:?}");
            let (handle_id, h) = &handles[0];
            assert_eq!(h.parent, None, "{ctx}: no local parent");
            assert_eq!(h.fields["outcome"], "ok", "{ctx}");
            assert!(
                h.fields["peer"].starts_with("tcp://127.0.0.1:"),
                "{ctx}: {:?}",
                h.fields
            );
            let events = seen().lock().unwrap().events.clone();
            let inside = events
                .iter()
                .find(|(m, _)| m == "log hello")
                .and_then(|(_, span)| *span);
            // Events of other cases carry the same message: match on this
            // case's span.
            assert!(
                events
                    .iter()
                    .any(|(m, span)| m == "log hello" && *span == Some(*handle_id)),
                "{ctx}: the handler's event is inside its span ({inside:?} vs {handle_id})"
            );

            let fail = format!("{comp}.Fail");
            let calls = spans("weft.call", &fail);
            assert_eq!(calls.len(), 1, "{ctx}");
            assert_eq!(calls[0].1.fields["outcome"], "error", "{ctx}");
            assert_eq!(calls[0].1.fields["error.kind"], "remote", "{ctx}");
            assert!(calls[0].1.fields["error"].contains("no such item"), "{ctx}");
            let handles = spans("weft.handle", &fail);
            assert_eq!(handles[0].1.fields["error.kind"], "error", "{ctx}");
        }
    }
}

#[test]
fn a_call_without_a_name_is_named_by_its_key() {
    seen();
    let comp = "test.Unnamed";
    let srv = server(Driver::Mio, Transport::Tcp, comp);
    let client = TestClient::connect(Driver::Mio, vec![srv.endpoint.clone()]).unwrap();
    let key = MethodKey::new(comp, "Log");
    client
        .call_key(key, Bytes::from_static(b"x"), CallOptions::default())
        .unwrap();
    client.close();
    (srv.stop)();
    let hex: String = key.0.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(spans("weft.call", &hex).len(), 1);
    // The server knows the name from its handler table.
    assert_eq!(spans("weft.handle", &format!("{comp}.Log")).len(), 1);
}

#[test]
fn connection_events_name_the_replica_and_the_cause() {
    seen();
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("tcp://{}", dead.local_addr().unwrap());
    drop(dead);
    let client = TestClient::connect(Driver::Mio, vec![addr.parse().unwrap()]).unwrap();
    let err = client.call_key(
        MethodKey::new("test.Dead", "X"),
        Bytes::new(),
        CallOptions::default(),
    );
    assert!(err.unwrap_err().is_unreachable());
    client.close();
    let live = server(Driver::Tokio, Transport::Tcp, "test.Ready");
    let client = TestClient::connect(Driver::Tokio, vec![live.endpoint.clone()]).unwrap();
    call(&client, "test.Ready", "Log", b"x").unwrap();
    client.close();
    (live.stop)();

    let events = seen().lock().unwrap().event_fields.clone();
    let find = |message: &str, addr: &str| {
        events
            .iter()
            .find(|(_, f)| {
                f.get("message").is_some_and(|m| m == message)
                    && f.get("addr").is_some_and(|a| a == addr)
            })
            .cloned()
    };
    let (level, fields) = find("dial failed", &addr).expect("a dial-failed event for the address");
    assert_eq!(level, tracing::Level::INFO);
    assert!(fields["reason"].contains("refused"), "{fields:?}");
    find("replica ready: handshake done", &live.endpoint.to_string()).expect("a handshake event");
}
