//! Limits and timeouts: no endpoints, dead and silent endpoints, requests over the client limit, handshake and frame-body timeouts, a client that does not read.

use super::*;

pub(crate) fn unreachable_without_endpoints(c: Driver, _s: Driver, _t: Transport) {
    let err = TestClient::connect(c, Vec::<NetEndpoint>::new())
        .err()
        .unwrap();
    assert!(err.is_unreachable(), "{err}");
}

/// An endpoint nothing listens on, and the error the OS gives a dial of it.
pub(crate) fn dead_endpoint(t: Transport) -> (NetEndpoint, String) {
    match t {
        Transport::Tcp => {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            let err = std::net::TcpStream::connect(addr).unwrap_err();
            (NetEndpoint::Tcp(addr.to_string()), err.to_string())
        }
        Transport::Unix => {
            let path = std::env::temp_dir()
                .join(format!("weft-conf-nobody-{}", std::process::id()))
                .join("none.sock");
            let err = std::os::unix::net::UnixStream::connect(&path).unwrap_err();
            (NetEndpoint::Unix(path), err.to_string())
        }
    }
}

pub(crate) fn unreachable_fails_fast_with_the_cause(c: Driver, t: Transport) {
    let (dead, os_error) = dead_endpoint(t);
    let client = TestClient::connect(c, vec![dead.clone()]).unwrap();
    // The first call waits for the first dial, the second finds the replica
    // failing: both fail at once. (The deadline is only a hang guard: one
    // that passed would be a different error.)
    for _ in 0..2 {
        let err = client.call("Echo", "x", within(HANG)).unwrap_err();
        assert!(matches!(err, CallError::Unreachable(_)), "{err}");
        assert!(err.is_unreachable() && !err.is_deadline_exceeded(), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&format!("{dead}: ")) && text.contains(&os_error),
            "{text} should name {dead} and {os_error:?}"
        );
    }
    // Waiting for a ready replica instead: the deadline ends it, and its
    // error still names the failure.
    let opts = CallOptions {
        wait_for_ready: true,
        ..within(Duration::from_millis(300))
    };
    let err = client.call("Echo", "x", opts).unwrap_err();
    assert!(
        matches!(err, CallError::DeadlineWaitingForReplica(_)),
        "{err}"
    );
    assert!(err.is_deadline_exceeded(), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{dead}: ")) && text.contains(&os_error),
        "{text} should name {dead} and {os_error:?}"
    );
    client.close();
}

/// A listener that accepts connections and never says a word on them.
pub(crate) struct SilentServer {
    endpoint: NetEndpoint,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<usize>,
    dir: Option<std::path::PathBuf>,
}

impl SilentServer {
    fn start(t: Transport) -> SilentServer {
        use std::sync::atomic::AtomicBool;
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let quit = stop.clone();
        // Holds every connection it accepts, until stopped; returns how many.
        fn hold<S>(incoming: impl Iterator<Item = std::io::Result<S>>, quit: &AtomicBool) -> usize {
            let mut held = Vec::new();
            for s in incoming {
                if quit.load(Ordering::SeqCst) {
                    break;
                }
                held.push(s.unwrap());
            }
            held.len()
        }
        match t {
            Transport::Tcp => {
                let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
                let endpoint = NetEndpoint::Tcp(l.local_addr().unwrap().to_string());
                let thread = thread::spawn(move || hold(l.incoming(), &quit));
                SilentServer {
                    endpoint,
                    stop,
                    thread,
                    dir: None,
                }
            }
            Transport::Unix => {
                let dir = std::env::temp_dir().join(format!(
                    "weft-conf-silent-{}-{:?}",
                    std::process::id(),
                    thread::current().id()
                ));
                std::fs::create_dir_all(&dir).unwrap();
                let path = dir.join("s.sock");
                let _ = std::fs::remove_file(&path);
                let l = std::os::unix::net::UnixListener::bind(&path).unwrap();
                let thread = thread::spawn(move || hold(l.incoming(), &quit));
                SilentServer {
                    endpoint: NetEndpoint::Unix(path),
                    stop,
                    thread,
                    dir: Some(dir),
                }
            }
        }
    }

    /// Stops accepting; how many connections it accepted.
    fn stop(self) -> usize {
        self.stop.store(true, Ordering::SeqCst);
        // Wakes the accept.
        drop(raw_peer(&self.endpoint));
        let accepted = self.thread.join().unwrap();
        if let Some(d) = self.dir {
            let _ = std::fs::remove_dir_all(d);
        }
        accepted
    }
}

pub(crate) fn silent_server_fails_the_handshake(c: Driver, t: Transport) {
    let silent = SilentServer::start(t);
    let opts = ClientOptions {
        connect_timeout: Duration::from_millis(300),
        ..ClientOptions::default()
    };
    let client = TestClient::connect_with(c, vec![silent.endpoint.clone()], opts).unwrap();
    let err = client.call("Echo", "x", within(HANG)).unwrap_err();
    assert!(matches!(err, CallError::Unreachable(_)), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&format!("{}: ", silent.endpoint))
            && text.contains("no version handshake within 300ms"),
        "{text}"
    );
    client.close();
    // The dial itself succeeded: it was the handshake that never came.
    assert!(silent.stop() >= 1);
}

pub(crate) fn request_over_the_client_limit(c: Driver, s: Driver, t: Transport) {
    const LIMIT: u64 = 1024;
    let server = TestServer::start(s, t, "s");
    let opts = ClientOptions {
        max_message_size: LIMIT,
        ..ClientOptions::default()
    };
    let client = TestClient::connect_with(c, vec![server.endpoint.clone()], opts).unwrap();
    assert_eq!(
        &client.call("Echo", "warm", within(HANG)).unwrap()[..],
        b"warm"
    );
    // Sleep 0 ms, spelled in 2000 digits: too large to send.
    let args = Bytes::from(vec![b'0'; 2000]);
    let expected = 4
        + RequestHeader::new(MethodKey::new(COMPONENT, "Sleep")).encoded_len() as u64
        + args.len() as u64;
    let err = client.call("Sleep", args, within(HANG)).unwrap_err();
    assert_eq!(
        err,
        CallError::RequestTooLarge {
            size: expected,
            limit: LIMIT
        }
    );
    assert_eq!(
        err.to_string(),
        format!("request of {expected} bytes exceeds the limit of {LIMIT} bytes")
    );
    // It never reached the server, and the next call goes through.
    assert_eq!(&client.call("Sleep", "0", within(HANG)).unwrap()[..], b"");
    assert_eq!(server.service.started(), 1);
    assert_eq!(
        &client.call("Echo", "after", within(HANG)).unwrap()[..],
        b"after"
    );
    client.close();
    server.stop();
}

pub(crate) fn silent_peer_is_closed_at_the_handshake_timeout(c: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        handshake_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let client = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    let mut peer = raw_peer(&server.endpoint);
    // Sends nothing: the server hangs up (the read's timeout is SOON).
    let mut rest = Vec::new();
    peer.read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert!(rest.is_empty(), "{rest:?}");
    // A client that does say its version is served.
    assert_eq!(&client.call("Echo", "ok", within(HANG)).unwrap()[..], b"ok");
    client.close();
    server.stop();
}

pub(crate) fn stalled_frame_is_closed_at_the_body_timeout(c: Driver, s: Driver, t: Transport) {
    let opts = ServerOptions {
        body_timeout: Duration::from_millis(200),
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let client = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    // A peer idle between frames is left alone ...
    let mut idle = raw_peer(&server.endpoint);
    let mut out = version_frame();
    out.extend(request_frame(1, "Echo", b"idle"));
    idle.write_all(&out).unwrap();
    let mut reply = [0u8; 20 + 16 + 4];
    idle.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[36..], b"idle");
    // ... one that stops half-way through a request is not.
    let mut stalled = raw_peer(&server.endpoint);
    let mut out = version_frame();
    let request = request_frame(1, "Echo", &[7; 100]);
    out.extend_from_slice(&request[..request.len() / 2]);
    stalled.write_all(&out).unwrap();
    let mut rest = Vec::new();
    stalled
        .read_to_end(&mut rest)
        .expect("the server closes the connection");
    assert_eq!(rest.len(), 20, "only the version reply: {rest:?}");
    assert_eq!(rest[8], 0, "a version frame");
    // The idle one, which saw the same time pass, is still served.
    idle.write_all(&request_frame(2, "Echo", b"still")).unwrap();
    let mut reply = [0u8; 16 + 5];
    idle.read_exact(&mut reply).unwrap();
    assert_eq!(&reply[16..], b"still");
    assert_eq!(&client.call("Echo", "ok", within(HANG)).unwrap()[..], b"ok");
    client.close();
    server.stop();
}

pub(crate) fn client_that_does_not_read_is_not_buffered(c: Driver, s: Driver, t: Transport) {
    const QUEUED: usize = 256 << 10;
    const ARGS: usize = 64 << 10;
    // Socket buffers on both sides, both ways, plus the limit: a few MiB.
    // A server that queued without bound would take all of it.
    const BOUND: usize = 64 << 20;
    let opts = ServerOptions {
        max_queued_output: QUEUED,
        ..ServerOptions::default()
    };
    let server = TestServer::start_with(s, t, "s", opts);
    let client = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    let mut peer = raw_peer(&server.endpoint);
    peer.write_all(&version_frame()).unwrap();
    let args = |id: u64| vec![id as u8; ARGS];
    // Echo requests, never reading the answers, until the server stops
    // taking them: a write that makes no progress for a second.
    peer.set_write_timeout(Some(Duration::from_secs(1)));
    let (mut accepted, mut sent) = (0usize, 0u64);
    let rest = 'writing: loop {
        sent += 1;
        let frame = request_frame(sent, "Echo", &args(sent));
        let mut at = 0;
        while at < frame.len() {
            match peer.write(&frame[at..]) {
                Ok(n) => at += n,
                Err(e) if timed_out(&e) => break 'writing frame[at..].to_vec(),
                Err(e) => panic!("write: {e}"),
            }
        }
        accepted += frame.len();
        assert!(
            accepted < BOUND,
            "the server took {accepted} bytes from a client that reads nothing"
        );
    };
    // Meanwhile the server serves others.
    for i in 0..10 {
        let arg = format!("other {i}");
        assert_eq!(client.call("Echo", arg.clone(), within(HANG)).unwrap(), arg);
    }
    // Once the client reads, the server goes on: every request is answered
    // (in any order: handlers may finish out of order).
    let mut reader = peer.try_clone();
    let answers = thread::spawn(move || {
        let mut version = [0u8; 20];
        reader.read_exact(&mut version).unwrap();
        let mut answered = std::collections::BTreeSet::new();
        while answered.len() < sent as usize {
            let mut header = [0u8; 16];
            reader
                .read_exact(&mut header)
                .unwrap_or_else(|e| panic!("{} of {sent} requests answered: {e}", answered.len()));
            let id = u64::from_le_bytes(header[..8].try_into().unwrap());
            let word = u64::from_le_bytes(header[8..].try_into().unwrap());
            assert_eq!((word & 0xff, word >> 8), (2, ARGS as u64), "a response");
            let mut payload = vec![0u8; ARGS];
            reader.read_exact(&mut payload).unwrap();
            assert!(payload == args(id), "the echo of request {id}");
            assert!((1..=sent).contains(&id) && answered.insert(id), "{id}");
        }
    });
    peer.set_write_timeout(Some(SOON));
    peer.write_all(&rest).unwrap();
    answers.join().unwrap();
    client.close();
    server.stop();
}
