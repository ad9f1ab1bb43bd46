//! The conformance suite: every scenario for every client driver x server
//! driver x transport (tokio<->tokio, tokio<->mio, mio<->tokio, mio<->mio,
//! over TCP and Unix sockets).
//!
//! Scenarios of weft-tokio's end-to-end tests not run here, and why:
//! - in-memory pipes, and read/write errors injected after N bytes
//!   (including reconnecting through 100 failing connections): both need a
//!   custom byte-stream endpoint, and weft-mio can only register real
//!   sockets with its event loop, so a stream wrapper cannot be plugged in.
//!   weft-tokio's e2e suite runs them for the tokio client against the
//!   tokio server.
//! - partial failure (a dead endpoint beside a live one) and retry: they
//!   exercise the pool core, identical in both drivers and covered in
//!   weft-proto's simulation; the dead-endpoint case also runs in
//!   weft-tokio's e2e. A client of nothing but a dead or silent endpoint
//!   runs here, on both clients (`client_suite!`).

use bytes::Bytes;
use std::io::{Read, Write};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};
use weft_cli::service::{COMPONENT, PANIC_MESSAGE};
use weft_proto::RequestHeader;
use weft_proto::{CallOptions, Metadata, NetEndpoint, TraceContext};
use weft_tests::{
    Abandoned, ClientOptions, Driver, Dynamic, ServerOptions, TestClient, TestServer, Transport,
    in_flight_probe,
};
use weft_tokio::{CallError, MethodKey};

mod calls;
mod limits;
mod peers;
use calls::*;
use peers::*;

/// Every scenario by name, for the suites (whose test modules take the
/// same names).
mod scenarios {
    pub(crate) use super::calls::*;
    pub(crate) use super::limits::*;
    pub(crate) use super::peers::*;
}

const SOON: Duration = Duration::from_secs(5);
/// A hang guard: far past anything a passing test waits for, so a test
/// that would hang fails instead.
const HANG: Duration = Duration::from_secs(30);

pub(crate) fn pair(c: Driver, s: Driver, t: Transport) -> (TestClient, TestServer) {
    let server = TestServer::start(s, t, "s");
    let client = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    (client, server)
}

macro_rules! suite {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tokio_tcp() { crate::scenarios::$scenario(Driver::Tokio, Driver::Tokio, Transport::Tcp) }
                #[test] fn tokio_mio_tcp() { crate::scenarios::$scenario(Driver::Tokio, Driver::Mio, Transport::Tcp) }
                #[test] fn mio_tokio_tcp() { crate::scenarios::$scenario(Driver::Mio, Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_mio_tcp() { crate::scenarios::$scenario(Driver::Mio, Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_tokio_unix() { crate::scenarios::$scenario(Driver::Tokio, Driver::Tokio, Transport::Unix) }
                #[test] fn tokio_mio_unix() { crate::scenarios::$scenario(Driver::Tokio, Driver::Mio, Transport::Unix) }
                #[test] fn mio_tokio_unix() { crate::scenarios::$scenario(Driver::Mio, Driver::Tokio, Transport::Unix) }
                #[test] fn mio_mio_unix() { crate::scenarios::$scenario(Driver::Mio, Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

/// Scenarios with no weft server: each client driver x transport.
macro_rules! client_suite {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tcp() { crate::scenarios::$scenario(Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_tcp() { crate::scenarios::$scenario(Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_unix() { crate::scenarios::$scenario(Driver::Tokio, Transport::Unix) }
                #[test] fn mio_unix() { crate::scenarios::$scenario(Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

/// Scenarios about the server: each server driver x transport, with the
/// other driver's client.
macro_rules! server_suite {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tcp() { crate::scenarios::$scenario(Driver::Mio, Driver::Tokio, Transport::Tcp) }
                #[test] fn mio_tcp() { crate::scenarios::$scenario(Driver::Tokio, Driver::Mio, Transport::Tcp) }
                #[test] fn tokio_unix() { crate::scenarios::$scenario(Driver::Mio, Driver::Tokio, Transport::Unix) }
                #[test] fn mio_unix() { crate::scenarios::$scenario(Driver::Tokio, Driver::Mio, Transport::Unix) }
            }
        )*
    };
}

client_suite!(
    unreachable_fails_fast_with_the_cause,
    silent_server_fails_the_handshake,
);

server_suite!(
    silent_peer_is_closed_at_the_handshake_timeout,
    stalled_frame_is_closed_at_the_body_timeout,
    client_that_does_not_read_is_not_buffered,
    request_and_hang_up_together_cancel_the_handler,
);

suite!(
    a_call,
    large_payloads,
    large_results_held_while_more_arrive,
    many_calls_behind_a_full_socket,
    concurrent_callers,
    errors,
    deadline,
    cancellation,
    close,
    metadata_and_trace,
    multiple_and_changing_endpoints,
    server_going_away,
    slow_handlers_do_not_hold_up_others,
    bad_input_closes_only_that_connection,
    oversize_request_is_refused,
    protocol_error_after_the_version_still_gets_the_version_reply,
    unreachable_without_endpoints,
    panics_stay_inside_their_call,
    a_panicking_balancer_fails_only_its_call,
    blocked_handlers_hold_only_their_connection,
    request_over_the_client_limit,
);
