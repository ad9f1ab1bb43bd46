//! `weft serve` on SIGINT: requests already received finish, the server
//! exits cleanly; a second signal stops at once, answering what is still
//! running with a cancellation. The client here is a Service Weaver
//! (version 0) client speaking raw bytes, so it also checks that such a
//! client is answered and closed, never sent a goaway.

use bytes::Bytes;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{ChildStderr, Command, Stdio};
use std::time::Duration;
use weft_proto::{FrameDecoder, Message, MethodKey, RemoteError, RequestHeader, Transmit, Version};

mod common;
use common::{Serve, WEFT};

/// `weft serve` with its standard error read line by line.
struct Serving {
    serve: Serve,
    stderr: BufReader<ChildStderr>,
}

impl Serving {
    fn start(driver: &str, grace: &str) -> Serving {
        let mut cmd = Command::new(WEFT);
        cmd.args([
            "serve",
            "--addr",
            "tcp://127.0.0.1:0",
            "--driver",
            driver,
            "--grace",
            grace,
        ])
        .stderr(Stdio::piped());
        let mut serve = Serve::spawn(cmd);
        let stderr = BufReader::new(serve.child.stderr.take().expect("piped"));
        Serving { serve, stderr }
    }

    fn interrupt(&self) {
        self.serve.signal("-INT");
    }

    /// Waits for the server to say something on stderr containing `what`.
    fn wait_says(&mut self, what: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            assert!(self.stderr.read_line(&mut line).unwrap() > 0, "no {what:?}");
            if line.contains(what) {
                return;
            }
        }
    }
}

/// A Go client's bytes: its version, then `method(args)` as id 1 and an
/// Echo as id 2. The Echo's answer proves the server has taken request 1.
fn go_client(addr: &str, method: &str, args: &'static [u8]) -> TcpStream {
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    for (id, m, a) in [(1, method, args), (2, "Echo", &b"here"[..])] {
        let header = RequestHeader::new(MethodKey::new("weft.Test", m));
        tx.push_request(id, header.fields(), &Bytes::from_static(a));
    }
    let mut bytes = Vec::new();
    tx.drain_into(&mut bytes);
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    s.write_all(&bytes).unwrap();
    s
}

/// Frames from `s` until the server closes it.
struct Frames {
    stream: TcpStream,
    dec: FrameDecoder,
}

impl Frames {
    fn next(&mut self) -> Option<Message> {
        loop {
            if let Some(m) = self.dec.next_message() {
                return Some(m.unwrap());
            }
            let mut buf = [0u8; 4096];
            match self.stream.read(&mut buf).unwrap() {
                0 => return None,
                n => self.dec.extend_from_slice(&buf[..n]),
            }
        }
    }
}

fn frames(stream: TcpStream) -> Frames {
    Frames {
        stream,
        dec: FrameDecoder::new(1 << 20),
    }
}

fn response(id: u64, payload: &'static [u8]) -> Message {
    Message::Response {
        id,
        payload: Bytes::from_static(payload),
    }
}

fn sigint_lets_the_call_in_flight_finish(driver: &str) {
    let mut serve = Serving::start(driver, "60s");
    let mut f = frames(go_client(serve.serve.host_port(), "Sleep", b"300"));
    assert_eq!(f.next(), Some(Message::Version(Version::CURRENT)));
    assert_eq!(f.next(), Some(response(2, b"here")));
    serve.interrupt();
    serve.wait_says("shutting down");
    // The Sleep's answer, then the close: no goaway for a Go client.
    assert_eq!(f.next(), Some(response(1, b"")));
    assert_eq!(f.next(), None);
    let status = serve.serve.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

fn a_second_sigint_stops_at_once(driver: &str) {
    let mut serve = Serving::start(driver, "60s");
    let mut f = frames(go_client(serve.serve.host_port(), "CancelWait", b""));
    assert_eq!(f.next(), Some(Message::Version(Version::CURRENT)));
    assert_eq!(f.next(), Some(response(2, b"here")));
    serve.interrupt();
    serve.wait_says("shutting down");
    serve.interrupt();
    serve.wait_says("stopping at once");
    // The handler was cancelled and its caller told so, as Go would.
    let Some(Message::ErrorResponse { id: 1, payload }) = f.next() else {
        panic!("no cancellation")
    };
    assert!(RemoteError::decode(&payload).unwrap().is_canceled());
    assert_eq!(f.next(), None);
    let status = serve.serve.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

#[test]
fn sigint_lets_the_call_in_flight_finish_tokio() {
    sigint_lets_the_call_in_flight_finish("tokio");
}

#[test]
fn sigint_lets_the_call_in_flight_finish_mio() {
    sigint_lets_the_call_in_flight_finish("mio");
}

#[test]
fn a_second_sigint_stops_at_once_tokio() {
    a_second_sigint_stops_at_once("tokio");
}

#[test]
fn a_second_sigint_stops_at_once_mio() {
    a_second_sigint_stops_at_once("mio");
}

#[test]
fn a_bad_grace_is_a_usage_error() {
    let o = Command::new(WEFT)
        .args(["serve", "--addr", "tcp://127.0.0.1:0", "--grace", "soon"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--grace"));
}
