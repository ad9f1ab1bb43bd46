//! TLS and mutual TLS over real sockets, every client driver x server
//! driver, with certificates made at test time. The failures a deployment
//! meets first - a certificate from the wrong CA, TLS on one side only, a
//! peer that never finishes the handshake - end fast, with errors that
//! say TLS.

use bytes::Bytes;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use std::io::{Read, Write};
use std::time::Duration;
use weft_cli::service::COMPONENT;
use weft_proto::{CallError, CallOptions, FrameDecoder, Message, MethodKey, NetEndpoint};
use weft_proto::{RequestHeader, Transmit, Version};
use weft_tests::{ClientOptions, Driver, TestClient, TestServer, Transport};
use weft_tokio::tls::{ClientTls, Identity, RootCerts, ServerTls, TlsEndpoint, rustls};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        Ca { cert, key }
    }

    fn roots(&self) -> RootCerts {
        RootCerts::from_pem(self.cert.pem()).unwrap()
    }

    /// A leaf for `names` (DNS names or IPs), good for servers and clients.
    fn issue(&self, names: &[&str]) -> Identity {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut p = CertificateParams::new(names).unwrap();
        p.distinguished_name.push(DnType::CommonName, "weft test");
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.signed_by(&key, &self.cert, &self.key).unwrap();
        Identity::from_pem(cert.pem(), key.serialize_pem()).unwrap()
    }
}

/// A server CA, a client CA, and settings for both sides of mutual TLS.
struct Pki {
    server_ca: Ca,
    client_ca: Ca,
}

impl Pki {
    fn new() -> Pki {
        Pki {
            server_ca: Ca::new("weft server CA"),
            client_ca: Ca::new("weft client CA"),
        }
    }

    fn server(&self) -> ServerTls {
        let id = self.server_ca.issue(&["localhost", "127.0.0.1"]);
        ServerTls::new(&id, Some(&self.client_ca.roots())).unwrap()
    }

    fn client_signed_by(&self, ca: &Ca) -> ClientTls {
        let id = ca.issue(&["client.weft.test"]);
        ClientTls::new(&self.server_ca.roots(), Some(&id)).unwrap()
    }

    fn client(&self) -> ClientTls {
        self.client_signed_by(&self.client_ca)
    }
}

fn tls_endpoint(server: &TestServer, tls: ClientTls) -> TlsEndpoint {
    // A Unix socket has no host name to check: the certificate's is given.
    let tls = match server.endpoint {
        weft_proto::NetEndpoint::Unix(_) => tls.with_domain_name("localhost"),
        _ => tls,
    };
    TlsEndpoint::new(server.endpoint.clone(), tls)
}

/// Large calls per client in `large_requests_leave_whole`. Before the fix
/// some stalled on a Tokio client in every run tried (two in five, in
/// release builds); `driver-tokio/tests/held_output.rs` checks the same
/// thing deterministically.
const CALLS: usize = 8;

/// A guard against a hang; what the tests assert is never about time.
fn guarded() -> CallOptions {
    CallOptions {
        deadline: Some(std::time::Instant::now() + Duration::from_secs(60)),
        ..CallOptions::default()
    }
}

fn assert_says_tls(err: &CallError, also: &str) {
    let text = err.to_string();
    assert!(!err.is_deadline_exceeded(), "{text}");
    assert!(text.contains("TLS"), "{text}");
    assert!(text.contains(also), "{text}");
}

fn mutual_tls_calls_work(client: Driver, server: Driver, transport: Transport) {
    let pki = Pki::new();
    let s = TestServer::start_tls(server, transport, "s", pki.server());
    let ep = tls_endpoint(&s, pki.client());
    assert!(ep.address().starts_with("tls"), "{}", ep.address());
    let c = TestClient::connect_tls(client, vec![ep], ClientOptions::default()).unwrap();
    assert_eq!(&c.call("Echo", "hi", guarded()).unwrap()[..], b"hi");
    // Large payloads take many records and partial writes each way.
    let big = vec![0x5a; 3 << 20];
    let out = c.call("Echo", big.clone(), guarded()).unwrap();
    assert!(out[..] == big[..]);
    // Many calls at once share the connection.
    let calls = c.start_calls("Echo", vec![7u8; 1000], 64, guarded());
    for r in calls.wait() {
        assert_eq!(r.unwrap().len(), 1000);
    }
    c.close();
    s.stop();
}

/// Requests of many records, one at a time: a caller writes its own, and
/// the last of its plaintext is often taken while the socket is full.
/// The records left over must still go out (they once waited for the
/// call's deadline on a Tokio client).
fn large_requests_leave_whole(client: Driver, server: Driver, transport: Transport) {
    let pki = Pki::new();
    let s = TestServer::start_tls(server, transport, "s", pki.server());
    let c = TestClient::connect_tls(
        client,
        vec![tls_endpoint(&s, pki.client())],
        ClientOptions::default(),
    )
    .unwrap();
    let big = vec![0xa5; 8 << 20];
    for _ in 0..CALLS {
        let out = c.call("Echo", big.clone(), guarded()).unwrap();
        assert!(out[..] == big[..]);
    }
    c.close();
    s.stop();
}

fn a_client_certificate_from_another_ca_is_refused(
    client: Driver,
    server: Driver,
    transport: Transport,
) {
    let pki = Pki::new();
    let s = TestServer::start_tls(server, transport, "s", pki.server());
    let stranger = Ca::new("someone else's CA");
    let ep = tls_endpoint(&s, pki.client_signed_by(&stranger));
    let c = TestClient::connect_tls(client, vec![ep], ClientOptions::default()).unwrap();
    let err = c.call("Echo", "hi", guarded()).unwrap_err();
    assert_says_tls(&err, "certificate");
    c.close();
    s.stop();
}

fn a_plaintext_client_of_a_tls_server_is_told_tls(
    client: Driver,
    server: Driver,
    transport: Transport,
) {
    let pki = Pki::new();
    let s = TestServer::start_tls(server, transport, "s", pki.server());
    let c = TestClient::connect(client, vec![s.endpoint.clone()]).unwrap();
    let err = c.call("Echo", "hi", guarded()).unwrap_err();
    assert_says_tls(&err, "plaintext");
    c.close();
    s.stop();
}

fn a_tls_client_of_a_plaintext_server_is_told_tls(
    client: Driver,
    server: Driver,
    transport: Transport,
) {
    let pki = Pki::new();
    let s = TestServer::start(server, transport, "s");
    let ep = tls_endpoint(&s, pki.client());
    let c = TestClient::connect_tls(client, vec![ep], ClientOptions::default()).unwrap();
    let err = c.call("Echo", "hi", guarded()).unwrap_err();
    assert_says_tls(&err, "handshake");
    c.close();
    s.stop();
}

/// A peer that accepts and then says nothing: the TLS handshake never
/// completes, and the connect timeout ends the attempt.
fn a_handshake_that_never_completes_is_bounded_by_the_connect_timeout(client: Driver) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let held = std::thread::spawn(move || listener.accept().map(|(s, _)| s));
    let pki = Pki::new();
    let ep = TlsEndpoint::new(weft_proto::tcp(addr), pki.client());
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let c = TestClient::connect_tls(client, vec![ep], opts).unwrap();
    let err = c.call("Echo", "hi", guarded()).unwrap_err();
    let text = err.to_string();
    assert!(err.is_unreachable(), "{text}");
    assert!(text.contains("300ms"), "{text}");
    c.close();
    drop(held.join().unwrap());
}

/// What a Service Weaver client sends: its version (0), then an Echo of
/// `args`.
fn go_client_echo(args: Bytes) -> Vec<u8> {
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let header = RequestHeader::new(MethodKey::new(COMPONENT, "Echo"));
    tx.push_request(1, header.fields(), &args);
    let mut out = Vec::new();
    tx.drain_into(&mut out);
    out
}

/// An answer larger than what the sockets between the two sides hold, so
/// that the server's queue drains into a full socket.
const DRAINED: usize = 4 << 20;
/// Long enough that a test passing only because of it would be seen.
const LONG_GRACE: Duration = Duration::from_secs(60);

/// A server draining a TLS connection whose socket is full: its queue
/// empties while rustls still holds the last records, and the connection
/// must stay until they leave. A Go (version 0) client is answered and
/// then closed, so every byte it reads is the answer or the close.
fn a_drain_sends_the_records_tls_still_holds(server: Driver, transport: Transport) {
    let pki = Pki::new();
    let s = TestServer::start_tls(server, transport, "s", pki.server());
    let ep = tls_endpoint(&s, pki.client());
    let args = Bytes::from(vec![0x5a; DRAINED]);
    let started = std::sync::Barrier::new(READERS + 1);
    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| scope.spawn(|| read_while_draining(&ep, &s.endpoint, &args, &started)))
            .collect();
        // Every answer has started, so every request was read whole
        // before the drain stops reading.
        started.wait();
        s.handle().graceful(LONG_GRACE);
        for r in readers {
            let got = r.join().unwrap();
            assert_answered(&got, &args);
        }
    });
    let _stopped = s.shutdown(LONG_GRACE);
}

/// Connections in [`a_drain_sends_the_records_tls_still_holds`]: whether
/// rustls holds records when a connection's queue empties depends on how
/// full its socket is at that moment, which each has its own chance of.
/// With the held records ignored (the core's `is_finished` not waiting
/// for them), the Tokio server lost an answer's tail in each of 3 runs on
/// TCP and on Unix sockets. The mio server's TLS stream takes plaintext
/// only once earlier records are out, so its last write seldom leaves
/// records held, and here it passed either way: its wiring is read, not
/// caught, by this test. The Tokio server's is checked deterministically
/// in `driver-tokio/tests/held_output.rs`, the decision itself in
/// `proto/tests/server_limits.rs`.
const READERS: usize = 8;

/// Asks for an Echo of `args` as a Go client and reads everything until
/// the server closes, meeting `started` once the answer has begun.
fn read_while_draining(
    ep: &TlsEndpoint,
    at: &NetEndpoint,
    args: &Bytes,
    started: &std::sync::Barrier,
) -> Vec<u8> {
    let mut tls = rustls::StreamOwned::new(ep.connection().unwrap(), RawStream::connect(at));
    tls.write_all(&go_client_echo(args.clone())).unwrap();
    tls.flush().unwrap();
    let mut got = Vec::new();
    let mut chunk = vec![0; 64 << 10];
    let mut waiting = true;
    loop {
        match tls.read(&mut chunk) {
            Ok(0) => break,
            Ok(k) => got.extend_from_slice(&chunk[..k]),
            // Closed without TLS's close_notify: the bytes are what count.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the answer: {e} (after {} bytes)", got.len()),
        }
        // The version frame is a few bytes: past them, the answer began.
        if waiting && got.len() >= 4096 {
            started.wait();
            waiting = false;
        }
        // A slow reader keeps the server's socket full to the end, so
        // rustls holds records when the last of the queue reaches it. The
        // pause paces the reader; nothing waits on it.
        std::thread::sleep(Duration::from_micros(100));
    }
    got
}

/// `got` is the version frame and the whole answer, nothing else.
fn assert_answered(got: &[u8], args: &Bytes) {
    let mut dec = FrameDecoder::new(2 * DRAINED as u64);
    dec.extend_from_slice(got);
    let frames: Vec<Message> =
        std::iter::from_fn(|| dec.next_message().map(Result::unwrap)).collect();
    // Said by size: a failure printing 8 MiB would hide itself.
    let seen: Vec<String> = frames
        .iter()
        .map(|m| match m {
            Message::Response { id, payload } => format!("response {id}: {} bytes", payload.len()),
            other => format!("{:?}", other.message_type()),
        })
        .collect();
    let whole = matches!(
        frames.as_slice(),
        [Message::Version(Version::CURRENT), Message::Response { id: 1, payload }] if payload == args
    );
    assert!(whole, "{} bytes read: {seen:?}", got.len());
}

/// A blocking socket of either transport.
enum RawStream {
    Tcp(std::net::TcpStream),
    Unix(std::os::unix::net::UnixStream),
}

impl RawStream {
    fn connect(endpoint: &NetEndpoint) -> RawStream {
        match endpoint {
            NetEndpoint::Tcp(a) => RawStream::Tcp(std::net::TcpStream::connect(a).unwrap()),
            NetEndpoint::Unix(p) => {
                RawStream::Unix(std::os::unix::net::UnixStream::connect(p).unwrap())
            }
        }
    }
}

impl Read for RawStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Tcp(t) => t.read(buf),
            RawStream::Unix(u) => u.read(buf),
        }
    }
}

impl Write for RawStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            RawStream::Tcp(t) => t.write(buf),
            RawStream::Unix(u) => u.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A TLS server that answers the handshakes, reads the first request and
/// hangs up without a close_notify (as a crashed process does).
fn hang_up_mid_call(tls: ServerTls) -> weft_proto::NetEndpoint {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = weft_proto::NetEndpoint::Tcp(listener.local_addr().unwrap().to_string());
    std::thread::spawn(move || {
        let (mut tcp, _) = listener.accept().unwrap();
        let mut conn = tls.accept().unwrap();
        let mut plain = Vec::new();
        // The version frame, then the start of the request.
        while plain.len() <= 20 {
            if conn.complete_io(&mut tcp).is_err() {
                return;
            }
            let mut buf = [0u8; 4096];
            match conn.reader().read(&mut buf) {
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
            if plain.len() == 20 {
                conn.writer().write_all(&plain[..20]).unwrap();
                conn.complete_io(&mut tcp).unwrap();
            }
        }
        // Dropped without a close_notify.
    });
    endpoint
}

/// Over TLS a client says what it says over plaintext when its server goes
/// away mid-call: no close_notify arrives, and the framing, not TLS, tells
/// what was cut short (the call). Both client drivers.
fn a_hang_up_over_tls_reads_as_a_close(client: Driver) {
    let pki = Pki::new();
    let ep = TlsEndpoint::new(hang_up_mid_call(pki.server()), pki.client());
    let c = TestClient::connect_tls(client, vec![ep], ClientOptions::default()).unwrap();
    let err = c.call("Echo", "hi", guarded()).unwrap_err();
    let text = err.to_string();
    assert!(err.is_communication(), "{text}");
    assert!(text.contains("peer closed the connection"), "{text}");
    c.close();
}

mod a_hang_up_over_tls_reads_as_a_close {
    #[test]
    fn tokio() {
        super::a_hang_up_over_tls_reads_as_a_close(weft_tests::Driver::Tokio)
    }
    #[test]
    fn mio() {
        super::a_hang_up_over_tls_reads_as_a_close(weft_tests::Driver::Mio)
    }
}

macro_rules! pairs {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tokio_tcp() { super::$scenario(Driver::Tokio, Driver::Tokio, Transport::Tcp) }
                #[test] fn tokio_mio_tcp() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Tcp) }
                #[test] fn mio_tokio_tcp() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_mio_tcp() { super::$scenario(Driver::Mio, Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_mio_unix() { super::$scenario(Driver::Tokio, Driver::Mio, Transport::Unix) }
                #[test] fn mio_tokio_unix() { super::$scenario(Driver::Mio, Driver::Tokio, Transport::Unix) }
            }
        )*
    };
}

pairs!(
    mutual_tls_calls_work,
    large_requests_leave_whole,
    a_client_certificate_from_another_ca_is_refused,
    a_plaintext_client_of_a_tls_server_is_told_tls,
    a_tls_client_of_a_plaintext_server_is_told_tls,
);

macro_rules! servers {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tcp() { super::$scenario(Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_tcp() { super::$scenario(Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_unix() { super::$scenario(Driver::Tokio, Transport::Unix) }
                #[test] fn mio_unix() { super::$scenario(Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

servers!(a_drain_sends_the_records_tls_still_holds);

mod a_handshake_that_never_completes_is_bounded_by_the_connect_timeout {
    use super::*;
    #[test]
    fn tokio() {
        super::a_handshake_that_never_completes_is_bounded_by_the_connect_timeout(Driver::Tokio)
    }
    #[test]
    fn mio() {
        super::a_handshake_that_never_completes_is_bounded_by_the_connect_timeout(Driver::Mio)
    }
}
