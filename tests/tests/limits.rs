//! Connection-level limits of `ServerOptions` over real sockets, on each
//! server driver: `max_connections` pauses accepting, `idle_timeout` ends
//! idle connections (a goaway first for a version-1 client), and
//! `body_timeout` does not blame a client while a handler holds the
//! connection's only slot.

use bytes::Bytes;
use std::io::{Read, Write};
use std::time::Duration;
use weft_cli::service::COMPONENT;
use weft_proto::{FrameDecoder, GoAway, IDLE_REASON, Message, NetEndpoint, Transmit, Version};
use weft_proto::{MethodKey, RequestHeader};
use weft_tests::{Driver, ServerOptions, TestServer, Transport};

const SOON: Duration = Duration::from_secs(10);

/// A blocking socket of either transport.
enum Raw {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl Raw {
    fn connect(endpoint: &NetEndpoint) -> Raw {
        match endpoint {
            NetEndpoint::Tcp(a) => Raw::Tcp(std::net::TcpStream::connect(a).unwrap()),
            NetEndpoint::Unix(p) => Raw::Unix(std::os::unix::net::UnixStream::connect(p).unwrap()),
        }
    }

    fn stream(&mut self) -> &mut dyn ReadWrite {
        match self {
            Raw::Tcp(t) => t,
            Raw::Unix(u) => u,
        }
    }

    fn set_read_timeout(&self, d: Duration) {
        match self {
            Raw::Tcp(t) => t.set_read_timeout(Some(d)).unwrap(),
            Raw::Unix(u) => u.set_read_timeout(Some(d)).unwrap(),
        }
    }

    fn hello(&mut self, version: Version) {
        let mut tx = Transmit::new(0);
        tx.push_version(version);
        let mut bytes = Vec::new();
        tx.drain_into(&mut bytes);
        self.stream().write_all(&bytes).unwrap();
    }

    /// Frames until the server closes the connection.
    fn read_all(&mut self) -> Vec<Message> {
        self.set_read_timeout(SOON);
        let mut bytes = Vec::new();
        self.stream().read_to_end(&mut bytes).unwrap();
        let mut dec = FrameDecoder::new(1 << 20);
        dec.extend_from_slice(&bytes);
        std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect()
    }

    /// The frames the server sends until there are at least `n` (within
    /// [`SOON`]); failing if it closes first.
    fn read_messages(&mut self, n: usize) -> Vec<Message> {
        self.set_read_timeout(SOON);
        let mut dec = FrameDecoder::new(1 << 20);
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while got.len() < n {
            let k = self.stream().read(&mut buf).unwrap();
            assert!(k > 0, "closed by the server after {got:?}");
            dec.extend_from_slice(&buf[..k]);
            got.extend(std::iter::from_fn(|| {
                dec.next_message().map(Result::unwrap)
            }));
        }
        got
    }

    /// Whether the server's version reply arrives within `wait`.
    fn answered_within(&mut self, wait: Duration) -> bool {
        self.set_read_timeout(wait);
        let mut reply = [0u8; 20];
        match self.stream().read_exact(&mut reply) {
            Ok(()) => true,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                false
            }
            Err(e) => panic!("{e}"),
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

fn accepting_pauses_at_max_connections(_: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        max_connections: 2,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let mut first = Raw::connect(&server.endpoint);
    let mut second = Raw::connect(&server.endpoint);
    for c in [&mut first, &mut second] {
        c.hello(Version::CURRENT);
        assert!(c.answered_within(SOON), "under the limit: served");
    }
    // The third waits in the backlog: connected, not served.
    let mut third = Raw::connect(&server.endpoint);
    third.hello(Version::CURRENT);
    assert!(
        !third.answered_within(Duration::from_millis(300)),
        "served past max_connections"
    );
    // One closes: the third is accepted and answered.
    drop(first);
    assert!(third.answered_within(SOON), "accepting resumed");
    drop((second, third));
    server.stop();
}

fn idle_connections_are_ended(_: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        idle_timeout: Some(Duration::from_millis(100)),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    // A weft (version 1) client: a goaway, then (as this one does not
    // close) the server closes after its linger.
    let mut weft = Raw::connect(&server.endpoint);
    weft.hello(Version::LATEST);
    assert_eq!(
        weft.read_all(),
        [
            Message::Version(Version::LATEST),
            Message::GoAway(GoAway {
                last_id: 0,
                reason: IDLE_REASON.into()
            }),
        ]
    );
    // A Go (version 0) client: closed, nothing but its version reply.
    let mut go = Raw::connect(&server.endpoint);
    go.hello(Version::CURRENT);
    assert_eq!(go.read_all(), [Message::Version(Version::CURRENT)]);
    server.stop();
}

fn request(id: u64, method: &str, args: &str) -> Vec<u8> {
    let mut tx = Transmit::new(0);
    let header = RequestHeader::new(MethodKey::new(COMPONENT, method));
    tx.push_request(id, header.fields(), &Bytes::from(args.to_owned()));
    let mut bytes = Vec::new();
    tx.drain_into(&mut bytes);
    bytes
}

/// At its handler limit (one here) the server goes on reading, and the
/// requests it decodes wait; a frame that arrives in two parts while a
/// handler runs past the body timeout is not counted slow.
fn a_frame_held_at_the_handler_limit_is_not_timed_out(_: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        body_timeout: Duration::from_millis(200),
        max_concurrent_handlers_per_connection: 1,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let mut go = Raw::connect(&server.endpoint);
    // The version, a Sleep longer than the body timeout (the handler
    // limit is reached), and half an Echo, in one write.
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let mut first = Vec::new();
    tx.drain_into(&mut first);
    first.extend_from_slice(&request(1, "Sleep", "600"));
    let echo = request(2, "Echo", "held");
    first.extend_from_slice(&echo[..echo.len() / 2]);
    go.stream().write_all(&first).unwrap();
    // The version reply: the server has read (and begun to decode) all
    // that; the rest of the Echo arrives while it is at its limit.
    assert!(go.answered_within(SOON));
    go.stream().write_all(&echo[echo.len() / 2..]).unwrap();
    assert_eq!(
        go.read_messages(2),
        [
            Message::Response {
                id: 1,
                payload: Bytes::new()
            },
            Message::Response {
                id: 2,
                payload: Bytes::from_static(b"held")
            },
        ]
    );
    server.stop();
}

/// Every timeout may be `Duration::MAX` ("never"): the server serves a
/// frame that arrives in two parts, and stops when told, rather than
/// overflowing the clock (a panic under the mio server's lock wedged it)
/// or sleeping its watchdog for ever.
fn timeouts_past_the_clocks_range_never_fire(_: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        handshake_timeout: Duration::MAX,
        body_timeout: Duration::MAX,
        idle_timeout: Some(Duration::MAX),
        inline_handler_duration: Some(Duration::MAX),
        shutdown_grace: Duration::MAX,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let mut go = Raw::connect(&server.endpoint);
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let mut first = Vec::new();
    tx.drain_into(&mut first);
    let echo = request(1, "Echo", "far");
    first.extend_from_slice(&echo[..echo.len() / 2]);
    go.stream().write_all(&first).unwrap();
    assert!(go.answered_within(SOON), "no version reply");
    go.stream().write_all(&echo[echo.len() / 2..]).unwrap();
    assert_eq!(
        go.read_messages(1),
        [Message::Response {
            id: 1,
            payload: Bytes::from_static(b"far")
        }]
    );
    let (done, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        server.stop();
        let _ = done.send(());
    });
    assert!(
        stopped.recv_timeout(SOON).is_ok(),
        "the server did not stop"
    );
}

/// At its handler limit (one here) the server still reads a cancel that
/// arrives behind a waiting request: the running handler, which waits for
/// its cancellation, ends, and the waiting request runs. (Holding the
/// bytes undecoded at the limit left both waiting until a deadline.)
fn a_cancel_behind_a_waiting_request_reaches_its_handler(_: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        max_concurrent_handlers_per_connection: 1,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let service = server.service.clone();
    let mut go = Raw::connect(&server.endpoint);
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let mut first = Vec::new();
    tx.drain_into(&mut first);
    first.extend_from_slice(&request(1, "CancelWait", ""));
    go.stream().write_all(&first).unwrap();
    assert!(service.wait_started(1, SOON), "the first call runs");
    let mut then = request(2, "Echo", "after");
    let mut cancel = Transmit::new(0);
    cancel.push_cancel(1);
    cancel.drain_into(&mut then);
    go.stream().write_all(&then).unwrap();
    let got = go.read_messages(3);
    assert!(
        matches!(&got[1], Message::ErrorResponse { id: 1, .. }),
        "{got:?}"
    );
    assert_eq!(
        got[2],
        Message::Response {
            id: 2,
            payload: Bytes::from_static(b"after")
        }
    );
    server.stop();
}

/// A request whose header does not decode is answered with an error
/// naming the problem; the connection, and the next request, go on.
fn a_request_with_a_bad_header_is_refused_alone(_: Driver, s: Driver, t: Transport) {
    let server = TestServer::start(s, t, "s");
    let mut go = Raw::connect(&server.endpoint);
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let mut bytes = Vec::new();
    tx.drain_into(&mut bytes);
    let mut bad = request(1, "Echo", "x");
    // Frame header (16), header length (4), then the header's trace flag.
    bad[16 + 4 + 24] = 2;
    bytes.extend_from_slice(&bad);
    bytes.extend_from_slice(&request(2, "Echo", "next"));
    go.stream().write_all(&bytes).unwrap();
    let got = go.read_messages(3);
    let [
        Message::Version(_),
        Message::ErrorResponse { id: 1, payload },
        Message::Response {
            id: 2,
            payload: next,
        },
    ] = &got[..]
    else {
        panic!("{got:?}")
    };
    let err = weft_proto::RemoteError::decode(payload)
        .unwrap()
        .to_string();
    assert!(err.contains("request 1: bad bool byte 2"), "{err}");
    assert_eq!(&next[..], b"next");
    server.stop();
}

/// A server that answers its first request with `big` bytes and echoes
/// the others: the client under test accepts less than `big`.
fn server_with_one_big_answer(big: usize) -> (NetEndpoint, std::thread::JoinHandle<()>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = NetEndpoint::Tcp(listener.local_addr().unwrap().to_string());
    let serving = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut dec = FrameDecoder::new(1 << 20);
        let mut first = true;
        let mut buf = vec![0u8; 64 << 10];
        loop {
            let n = s.read(&mut buf).unwrap_or(0);
            if n == 0 {
                return;
            }
            dec.extend_from_slice(&buf[..n]);
            let mut tx = Transmit::new(0);
            while let Some(m) = dec.next_message() {
                match m.unwrap() {
                    Message::Version(v) => tx.push_version(v),
                    Message::Request { id, args, .. } => {
                        let answer = if std::mem::take(&mut first) {
                            Bytes::from(vec![7u8; big])
                        } else {
                            args
                        };
                        tx.push_response(id, &answer);
                    }
                    _ => {}
                }
            }
            let mut out = Vec::new();
            tx.drain_into(&mut out);
            if s.write_all(&out).is_err() {
                return;
            }
        }
    });
    (endpoint, serving)
}

/// A response over the client's `max_message_size` fails its own call;
/// the connection, and the calls after it, go on.
fn a_response_over_the_clients_limit_fails_that_call_alone(c: Driver) {
    let (endpoint, serving) = server_with_one_big_answer(256 << 10);
    let opts = weft_tests::ClientOptions {
        max_message_size: 64 << 10,
        ..weft_tests::ClientOptions::default()
    };
    let client = weft_tests::TestClient::connect_with(c, vec![endpoint], opts).unwrap();
    let err = client
        .call("Echo", "big", weft_proto::CallOptions::default())
        .unwrap_err();
    assert_eq!(
        err,
        weft_proto::CallError::ResponseTooLarge {
            size: 256 << 10,
            limit: 64 << 10
        }
    );
    for _ in 0..3 {
        let answer = client.call("Echo", "next", weft_proto::CallOptions::default());
        assert_eq!(answer.unwrap(), Bytes::from_static(b"next"));
    }
    client.close();
    serving.join().unwrap();
}

#[test]
fn tokio_client_survives_a_response_over_its_limit() {
    a_response_over_the_clients_limit_fails_that_call_alone(Driver::Tokio);
}

#[test]
fn mio_client_survives_a_response_over_its_limit() {
    a_response_over_the_clients_limit_fails_that_call_alone(Driver::Mio);
}

/// Each server driver x transport, with the other driver's client.
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

server_suite!(
    accepting_pauses_at_max_connections,
    idle_connections_are_ended,
    a_frame_held_at_the_handler_limit_is_not_timed_out,
    a_request_with_a_bad_header_is_refused_alone,
    timeouts_past_the_clocks_range_never_fire,
    a_cancel_behind_a_waiting_request_reaches_its_handler,
);
