//! Every TCP connection weft dials or accepts has keep-alive on, with
//! Go's timing, on every client driver x server driver: a peer that
//! vanished without a FIN or a reset is found out rather than waited on
//! forever. Read from the kernel's own table of connections (Linux).

#![cfg(target_os = "linux")]

use std::time::{Duration, Instant};
use weft_driver::tcp::KEEPALIVE;
use weft_proto::{CallOptions, NetEndpoint};
use weft_tests::{Driver, TestClient, TestServer, Transport};

/// One row of `/proc/net/tcp` for an established connection.
#[derive(Debug)]
struct Row {
    local_port: u16,
    remote_port: u16,
    /// Which timer is pending: 2 is keep-alive's, 0 none.
    timer: u8,
    /// When it fires, in clock ticks (`USER_HZ`, 100 a second).
    ticks: u64,
}

fn established() -> Vec<Row> {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let port = |addr: &str| u16::from_str_radix(addr.split(':').nth(1).unwrap(), 16).unwrap();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            // State 01: established.
            if f[3] != "01" {
                return None;
            }
            let (timer, ticks) = f[5].split_once(':').unwrap();
            Some(Row {
                local_port: port(f[1]),
                remote_port: port(f[2]),
                timer: u8::from_str_radix(timer, 16).unwrap(),
                ticks: u64::from_str_radix(ticks, 16).unwrap(),
            })
        })
        .collect()
}

fn both_ends_have_keepalive(client: Driver, server: Driver) {
    let s = TestServer::start(server, Transport::Tcp, "s");
    let NetEndpoint::Tcp(addr) = &s.endpoint else {
        unreachable!("a TCP server")
    };
    let port: u16 = addr.rsplit(':').next().unwrap().parse().unwrap();
    let c = TestClient::connect(client, vec![s.endpoint.clone()]).unwrap();
    c.call("Echo", "hi", CallOptions::default()).unwrap();
    // Keep-alive's timer is pending whenever the connection is idle; just
    // after a call another (the tail-loss probe) may be for a moment.
    let due = KEEPALIVE.as_secs() * 100;
    let give_up = Instant::now() + Duration::from_secs(10);
    let rows = loop {
        let rows: Vec<Row> = established()
            .into_iter()
            .filter(|r| r.local_port == port || r.remote_port == port)
            .collect();
        let idle = rows.len() == 2 && rows.iter().all(|r| r.timer == 2 && r.ticks <= due);
        if idle || Instant::now() > give_up {
            break rows;
        }
        std::thread::yield_now();
    };
    assert_eq!(rows.len(), 2, "the client's end and the server's: {rows:?}");
    for r in &rows {
        let side = if r.local_port == port {
            "server"
        } else {
            "client"
        };
        assert_eq!(
            r.timer, 2,
            "the {side}'s end has no keep-alive timer: {r:?}"
        );
        assert!(
            r.ticks <= due,
            "the {side}'s keep-alive fires in {} s, not within {KEEPALIVE:?}",
            r.ticks / 100
        );
    }
    c.close();
    s.stop();
}

#[test]
fn tokio_tokio() {
    both_ends_have_keepalive(Driver::Tokio, Driver::Tokio);
}
#[test]
fn tokio_mio() {
    both_ends_have_keepalive(Driver::Tokio, Driver::Mio);
}
#[test]
fn mio_tokio() {
    both_ends_have_keepalive(Driver::Mio, Driver::Tokio);
}
#[test]
fn mio_mio() {
    both_ends_have_keepalive(Driver::Mio, Driver::Mio);
}
