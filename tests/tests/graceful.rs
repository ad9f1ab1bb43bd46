//! Graceful shutdown over real sockets, for every client driver x server
//! driver x transport: in-flight calls finish, the grace deadline cancels
//! what is left, a second trigger stops at once, a client moves to another
//! replica on goaway, and a version-0 (Go) client sees Service Weaver's
//! bytes only.

use bytes::Bytes;
use std::io::{Read, Write};
use std::thread;
use std::time::Duration;
use weft_cli::service::COMPONENT;
use weft_proto::{CallOptions, FrameDecoder, Message, MessageType, MethodKey, NetEndpoint};
use weft_proto::{RequestHeader, Transmit, Version};
use weft_tests::{Driver, TestClient, TestServer, Transport};

const SOON: Duration = Duration::from_secs(5);
/// Long enough that a test passing only because of it would be seen.
const LONG_GRACE: Duration = Duration::from_secs(60);

fn pair(c: Driver, s: Driver, t: Transport) -> (TestClient, TestServer) {
    let server = TestServer::start(s, t, "s");
    let client = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    (client, server)
}

fn in_flight_calls_finish_before_the_server_stops(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    client.call("Echo", "warm", CallOptions::default()).unwrap();
    let service = server.service.clone();
    let calls = client.start_calls("Sleep", "300", 4, CallOptions::default());
    assert!(service.wait_started(4, SOON), "the calls are in flight");
    // Returns only once the server has stopped, so after the calls ended.
    let _stopped = server.shutdown(LONG_GRACE);
    for r in calls.wait() {
        assert_eq!(r.unwrap(), Bytes::new());
    }
    assert_eq!(service.cancel_count(), 0);
    client.close();
}

fn the_grace_deadline_cancels_handlers_and_answers_callers(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let service = server.service.clone();
    let calls = client.start_calls("CancelWait", "", 2, CallOptions::default());
    assert!(service.wait_started(2, SOON), "the calls are in flight");
    let _stopped = server.shutdown(Duration::from_millis(100));
    for r in calls.wait() {
        let err = r.unwrap_err();
        assert!(err.is_cancelled(), "{err}");
    }
    assert!(service.wait_cancel_count(2, SOON), "the handlers saw it");
    client.close();
}

fn a_second_trigger_stops_at_once(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let service = server.service.clone();
    let calls = client.start_calls("CancelWait", "", 1, CallOptions::default());
    assert!(service.wait_started(1, SOON), "the call is in flight");
    let handle = server.handle();
    let stopper = thread::spawn(move || server.shutdown(LONG_GRACE));
    // The first trigger is in; the second hurries it.
    while handle.deadline().is_none() {
        thread::yield_now();
    }
    handle.immediate();
    let _stopped = stopper.join().unwrap();
    let err = calls.wait().pop().unwrap().unwrap_err();
    assert!(err.is_cancelled(), "{err}");
    client.close();
}

fn goaway_moves_new_calls_to_the_other_replica(c: Driver, s: Driver, t: Transport) {
    let a = TestServer::start(s, t, "a");
    let b = TestServer::start(s, t, "b");
    let client = TestClient::connect(c, vec![a.endpoint.clone(), b.endpoint.clone()]).unwrap();
    let who = |client: &TestClient| client.call("Who", "", CallOptions::default()).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 2 {
        seen.insert(who(&client));
    }
    let service = a.service.clone();
    // Calls in flight on both; a shuts down under them.
    let calls = client.start_calls("Sleep", "200", 8, CallOptions::default());
    assert!(service.wait_started(1, SOON));
    let stopping = thread::spawn(move || a.shutdown(LONG_GRACE));
    // Calls made meanwhile, without retry, all succeed: on a before its
    // goaway, on b after.
    while !stopping.is_finished() {
        assert_eq!(
            client.call("Echo", "x", CallOptions::default()).unwrap(),
            "x"
        );
    }
    let _stopped = stopping.join().unwrap();
    for r in calls.wait() {
        r.unwrap();
    }
    for _ in 0..10 {
        assert_eq!(who(&client), "b");
    }
    client.close();
    b.stop();
}

/// What a Service Weaver client sends: its version (0), then a Sleep.
fn go_client_hello(ms: &str) -> Vec<u8> {
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let header = RequestHeader::new(MethodKey::new(COMPONENT, "Sleep"));
    tx.push_request(1, header.fields(), &Bytes::from(ms.to_owned()));
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

fn a_go_client_is_answered_then_closed_and_never_sees_a_goaway(_: Driver, s: Driver, t: Transport) {
    let server = TestServer::start(s, t, "s");
    let service = server.service.clone();
    let mut peer = RawStream::connect(&server.endpoint);
    peer.write_all(&go_client_hello("300"));
    assert!(service.wait_started(1, SOON));
    let _stopped = server.shutdown(LONG_GRACE);
    // Everything the server sent, up to its close.
    let bytes = peer.read_to_end();
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(&bytes);
    let frames: Vec<Message> =
        std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect();
    assert_eq!(
        frames,
        [
            Message::Version(Version::CURRENT),
            Message::Response {
                id: 1,
                payload: Bytes::new()
            },
        ]
    );
    assert!(
        frames
            .iter()
            .all(|m| m.message_type() != MessageType::GoAway)
    );
}

/// A Go client does not know the server is draining and goes on sending.
/// The server must not close with those requests unread: that resets the
/// connection (TCP RST, or ECONNRESET on a Unix socket), and the client
/// may lose answers it had not read yet. It half-closes once its answers
/// are out and reads (and drops) what comes until the client closes.
fn a_go_client_sending_during_the_drain_gets_its_answers_and_a_clean_close(
    _: Driver,
    s: Driver,
    t: Transport,
) {
    let server = TestServer::start(s, t, "s");
    let service = server.service.clone();
    // A weft client, to see when the server has begun draining (its goaway).
    let mut watcher = RawStream::connect(&server.endpoint);
    let mut tx = Transmit::new(0);
    tx.push_version(Version::LATEST);
    let mut hello = Vec::new();
    tx.drain_into(&mut hello);
    watcher.write_all(&hello);
    let mut dec = FrameDecoder::new(1 << 20);
    let mut read_until = |watcher: &mut RawStream, ty: MessageType| {
        while !std::iter::from_fn(|| dec.next_message().map(Result::unwrap))
            .any(|m| m.message_type() == ty)
        {
            let mut buf = [0u8; 256];
            let n = watcher.read(&mut buf);
            assert!(n > 0, "the weft client saw no {ty:?}");
            dec.extend_from_slice(&buf[..n]);
        }
    };
    // Past its handshake before the shutdown, so it gets a goaway.
    read_until(&mut watcher, MessageType::Version);
    let mut peer = RawStream::connect(&server.endpoint);
    peer.write_all(&go_client_hello("300"));
    assert!(service.wait_started(1, SOON));
    let stopper = thread::spawn(move || server.shutdown(LONG_GRACE));
    read_until(&mut watcher, MessageType::GoAway);
    drop(watcher);
    // Draining now; the Go client sends on.
    let mut more = Transmit::new(0);
    for id in 2..10 {
        let header = RequestHeader::new(MethodKey::new(COMPONENT, "Echo"));
        more.push_request(id, header.fields(), &Bytes::from_static(b"late"));
    }
    let mut bytes = Vec::new();
    more.drain_into(&mut bytes);
    peer.write_all(&bytes);
    // Its answer, then end of stream rather than a reset.
    let bytes = peer.read_to_end();
    let mut dec = FrameDecoder::new(1 << 20);
    dec.extend_from_slice(&bytes);
    let frames: Vec<Message> =
        std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect();
    // The goaway the watcher read says the server is draining, not that
    // this connection's task has seen it yet: a late request read before
    // it did is served like any other, and must be answered in full. What
    // must never happen is a lost answer or a missing end of stream.
    let answered = |id: u64, payload: &[u8]| {
        frames.contains(&Message::Response {
            id,
            payload: Bytes::copy_from_slice(payload),
        })
    };
    assert_eq!(frames.first(), Some(&Message::Version(Version::CURRENT)));
    assert!(
        answered(1, b""),
        "the call in flight was answered: {frames:?}"
    );
    let late_answers = frames.len() - 2;
    assert!(
        (2..2 + late_answers as u64).all(|id| answered(id, b"late")),
        "only whole answers, to the first late requests, in order: {frames:?}"
    );
    drop(peer);
    let _stopped = stopper.join().unwrap();
}

/// A blocking socket of either transport.
enum RawStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl RawStream {
    fn connect(endpoint: &NetEndpoint) -> RawStream {
        let s = match endpoint {
            NetEndpoint::Tcp(a) => RawStream::Tcp(std::net::TcpStream::connect(a).unwrap()),
            NetEndpoint::Unix(p) => {
                RawStream::Unix(std::os::unix::net::UnixStream::connect(p).unwrap())
            }
        };
        match &s {
            RawStream::Tcp(t) => t.set_read_timeout(Some(SOON * 6)).unwrap(),
            RawStream::Unix(u) => u.set_read_timeout(Some(SOON * 6)).unwrap(),
        }
        s
    }

    fn write_all(&mut self, b: &[u8]) {
        match self {
            RawStream::Tcp(t) => t.write_all(b).unwrap(),
            RawStream::Unix(u) => u.write_all(b).unwrap(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> usize {
        match self {
            RawStream::Tcp(t) => t.read(buf).unwrap(),
            RawStream::Unix(u) => u.read(buf).unwrap(),
        }
    }

    fn read_to_end(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            RawStream::Tcp(t) => t.read_to_end(&mut out).unwrap(),
            RawStream::Unix(u) => u.read_to_end(&mut out).unwrap(),
        };
        out
    }
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tokio_tcp() { super::$scenario(Driver::Tokio, Driver::Tokio, Transport::Tcp) }
                #[test] fn tokio_mio_tcp() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Tcp) }
                #[test] fn mio_tokio_tcp() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_mio_tcp() { super::$scenario(Driver::Mio, Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_tokio_unix() { super::$scenario(Driver::Tokio, Driver::Tokio, Transport::Unix) }
                #[test] fn tokio_mio_unix() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Unix) }
                #[test] fn mio_tokio_unix() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Unix) }
                #[test] fn mio_mio_unix() { super::$scenario(Driver::Mio, Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

/// Scenarios about the server alone: each server driver x transport.
macro_rules! server_suite {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tcp() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_tcp() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_unix() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Unix) }
                #[test] fn mio_unix() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

suite!(
    in_flight_calls_finish_before_the_server_stops,
    the_grace_deadline_cancels_handlers_and_answers_callers,
    a_second_trigger_stops_at_once,
    goaway_moves_new_calls_to_the_other_replica,
);

server_suite!(
    a_go_client_is_answered_then_closed_and_never_sees_a_goaway,
    a_go_client_sending_during_the_drain_gets_its_answers_and_a_clean_close,
);
