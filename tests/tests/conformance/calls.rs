//! Calls and their fates: payloads, concurrency, errors, deadlines, cancellation, closing, metadata, changing endpoints, slow, panicking and blocked handlers.

use super::*;

pub(crate) fn a_call(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    assert_eq!(
        &client
            .call("Echo", "hello", CallOptions::default())
            .unwrap()[..],
        b"hello"
    );
    let empty = client
        .call("Echo", Bytes::new(), CallOptions::default())
        .unwrap();
    assert!(empty.is_empty());
    client.close();
    server.stop();
}

pub(crate) fn large_payloads(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    for size in [4095, 4096, 4097, 1 << 20] {
        let args = Bytes::from((0..size).map(|i| i as u8).collect::<Vec<u8>>());
        assert_eq!(
            client
                .call("Echo", args.clone(), CallOptions::default())
                .unwrap(),
            args,
            "{size}"
        );
    }
    client.close();
    server.stop();
}

/// Large frames are read into buffers that serve the next large frame
/// once a result is dropped: results still held keep their bytes while
/// later large calls run, on both sides (the server echoes from them too).
pub(crate) fn large_results_held_while_more_arrive(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let wave = |fill: u8| {
        let args = Bytes::from(vec![fill; 300 * 1024 + usize::from(fill)]);
        let results = client
            .start_calls("Echo", args.clone(), 4, CallOptions::default())
            .wait();
        (args, results)
    };
    let (first_args, held) = wave(1);
    // Drop-and-reuse churn: later waves' results are dropped at once.
    for fill in 2..6 {
        let (args, results) = wave(fill);
        for r in results {
            assert_eq!(r.unwrap(), args, "wave {fill}");
        }
    }
    for r in held {
        assert_eq!(r.unwrap(), first_args, "a held result changed");
    }
    client.close();
    server.stop();
}

/// Many calls at once, more bytes than the socket holds: requests queue
/// behind the full socket (callers leave their writes to the connection's
/// loop, which writes as room appears). Every call gets its own bytes back,
/// well before the deadline a stuck request would run into.
pub(crate) fn many_calls_behind_a_full_socket(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let large = Bytes::from(
        (0..128 * 1024)
            .map(|i| (i % 251) as u8)
            .collect::<Vec<u8>>(),
    );
    let small = Bytes::from_static(&[7; 100]);
    // 8 MiB of large requests, then small ones started while they are
    // still being written.
    let large_calls = client.start_calls("Echo", large.clone(), 64, within(HANG));
    let small_calls = client.start_calls("Echo", small.clone(), 256, within(HANG));
    for r in large_calls.wait() {
        assert_eq!(r.unwrap(), large);
    }
    for r in small_calls.wait() {
        assert_eq!(r.unwrap(), small);
    }
    client.close();
    server.stop();
}

pub(crate) fn concurrent_callers(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let end = Instant::now() + Duration::from_millis(100);
    let total: usize = thread::scope(|scope| {
        let handles: Vec<_> = (0..10u8)
            .map(|i| {
                let client = &client;
                scope.spawn(move || {
                    let mut n = 0;
                    while Instant::now() < end {
                        let args = Bytes::from(vec![i; 1 + n % 300]);
                        assert_eq!(
                            client
                                .call("Echo", args.clone(), CallOptions::default())
                                .unwrap(),
                            args
                        );
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert!(total >= 10);
    client.close();
    server.stop();
}

pub(crate) fn errors(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let err = client
        .call("Error", "boom", CallOptions::default())
        .unwrap_err();
    assert_eq!(err.remote().map(|r| r.message()), Some("boom"));
    assert!(!err.is_communication() && !err.is_deadline_exceeded() && !err.is_cancelled());
    let err = client
        .call("NoSuchMethod", "", CallOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("unknown function"), "{err}");
    client.close();
    server.stop();
}

pub(crate) fn deadline(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_millis(50)),
        ..Default::default()
    };
    let err = client.call("CancelWait", "", opts).unwrap_err();
    assert!(err.is_deadline_exceeded(), "{err}");
    // The server's own deadline ends the handler.
    assert!(server.service.wait_cancel_count(1, SOON));
    let opts = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(10)),
        ..Default::default()
    };
    let left: u64 = std::str::from_utf8(&client.call("Deadline", "", opts).unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!((9_000_000..=10_000_000).contains(&left), "{left}");
    assert_eq!(
        &client.call("Deadline", "", CallOptions::default()).unwrap()[..],
        b"none"
    );
    client.close();
    server.stop();
}

pub(crate) fn cancellation(c: Driver, s: Driver, t: Transport) {
    let server = TestServer::start(s, t, "s");
    let (opts, in_flight) = in_flight_probe();
    let client = TestClient::connect_with(c, vec![server.endpoint.clone()], opts).unwrap();
    let svc = server.service.clone();
    match client.call_and_cancel_when("CancelWait", move || assert!(svc.wait_started(1, SOON))) {
        // The cancel handle ends the call with the library's own error.
        Abandoned::Ended(Err(err)) if c == Driver::Mio => assert!(err.is_cancelled(), "{err}"),
        // The future was dropped while the call was pending: no result,
        // only the effects checked below.
        Abandoned::Dropped if c == Driver::Tokio => {}
        other => panic!("{c:?} client: {other:?}"),
    }
    let t0 = Instant::now();
    assert!(server.service.wait_cancel_count(1, SOON));
    // Promptly, not at some later timer (a keepalive, a linger): a bound
    // far above a loaded CI machine's scheduling delays, far below those.
    assert!(
        t0.elapsed() < Duration::from_secs(1),
        "handler saw the cancel after {:?}",
        t0.elapsed()
    );
    assert_eq!(server.service.cancel_count(), 1);
    // The client no longer counts the abandoned call: a later call finds
    // its replica with nothing in flight. (The router hears of the cancel
    // just after the cancel frame is written, so allow it a moment.)
    let end = Instant::now() + SOON;
    loop {
        assert_eq!(
            &client
                .call("CancelCount", "", CallOptions::default())
                .unwrap()[..],
            b"1"
        );
        if in_flight.load(Ordering::SeqCst) == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "the abandoned call is still in flight"
        );
    }
    client.close();
    server.stop();
}

pub(crate) fn close(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    client.call("Echo", "warm", CallOptions::default()).unwrap();
    thread::scope(|scope| {
        let pending = scope.spawn(|| client.call("Sleep", "10000", CallOptions::default()));
        assert!(
            server.service.wait_started(1, SOON),
            "the Sleep is in flight"
        );
        client.close();
        client.close();
        let err = pending.join().unwrap().unwrap_err();
        assert!(
            err.is_communication() && err.to_string().contains("closed"),
            "{err}"
        );
    });
    let later = client
        .call("Echo", "x", CallOptions::default())
        .unwrap_err();
    assert!(later.to_string().contains("closed"), "{later}");
    server.stop();
}

pub(crate) fn metadata_and_trace(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let opts = CallOptions {
        metadata: Some(Metadata::from_iter([("tenant", "acme"), ("a", "1")])),
        trace: Some(TraceContext {
            trace_id: [0xab; 16],
            span_id: [0xcd; 8],
            flags: 1,
        }),
        ..Default::default()
    };
    assert_eq!(
        &client.call("Metadata", "", opts.clone()).unwrap()[..],
        b"a=1\ntenant=acme"
    );
    let trace = client.call("Trace", "", opts).unwrap();
    assert_eq!(
        std::str::from_utf8(&trace).unwrap(),
        format!("{}-{}-01", "ab".repeat(16), "cd".repeat(8))
    );
    assert_eq!(
        &client.call("Metadata", "", CallOptions::default()).unwrap()[..],
        b""
    );
    client.close();
    server.stop();
}

pub(crate) fn who(client: &TestClient) -> String {
    String::from_utf8(
        client
            .call("Who", "", CallOptions::default())
            .unwrap()
            .to_vec(),
    )
    .unwrap()
}

pub(crate) fn multiple_and_changing_endpoints(c: Driver, s: Driver, t: Transport) {
    let a = TestServer::start(s, t, "a");
    let b = TestServer::start(s, t, "b");
    let z = TestServer::start(s, t, "z");
    let resolver = Dynamic::default();
    resolver.set(&[a.endpoint.clone(), b.endpoint.clone()]);
    let client = TestClient::connect_dynamic(c, &resolver).unwrap();
    let mut seen = std::collections::BTreeSet::new();
    let end = Instant::now() + SOON;
    while seen.len() < 2 && Instant::now() < end {
        seen.insert(who(&client));
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), ["a", "b"]);
    resolver.set(std::slice::from_ref(&z.endpoint));
    let end = Instant::now() + SOON;
    while who(&client) != "z" {
        assert!(Instant::now() < end, "never moved to the new endpoint");
    }
    for _ in 0..10 {
        assert_eq!(who(&client), "z");
    }
    client.close();
    for s in [a, b, z] {
        s.stop();
    }
}

pub(crate) fn server_going_away(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    client.call("Echo", "warm", CallOptions::default()).unwrap();
    let service = server.service.clone();
    let _stopped = thread::scope(|scope| {
        let pending = scope.spawn(|| client.call("CancelWait", "", CallOptions::default()));
        assert!(service.wait_started(1, SOON), "the call is in flight");
        // Stopping at once is a shutdown whose grace is already over: the
        // caller is answered with a cancellation, as Go's context says it.
        let stopped = server.stop();
        let err = pending.join().unwrap().unwrap_err();
        assert!(err.is_cancelled(), "{err}");
        stopped
    });
    // Stopping cancelled the handler.
    assert!(service.wait_cancel_count(1, SOON));
    client.close();
}

pub(crate) fn slow_handlers_do_not_hold_up_others(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    thread::scope(|scope| {
        // Two handlers that outlive the inline handler duration by far...
        let slow: Vec<_> = (0..2)
            .map(|_| scope.spawn(|| client.call("Sleep", "1000", CallOptions::default())))
            .collect();
        assert!(server.service.wait_started(2, SOON));
        // ... while other calls on the same connection keep being served:
        // all of them answered while the slow ones are still running (no
        // wall-clock bound, which a loaded machine could miss).
        for _ in 0..50 {
            assert_eq!(
                &client.call("Echo", "fast", CallOptions::default()).unwrap()[..],
                b"fast"
            );
        }
        assert!(
            slow.iter().all(|h| !h.is_finished()),
            "the fast calls waited for the slow ones"
        );
        for h in slow {
            h.join().unwrap().unwrap();
        }
    });
    client.close();
    server.stop();
}

pub(crate) fn within(d: Duration) -> CallOptions {
    CallOptions {
        deadline: Some(Instant::now() + d),
        ..Default::default()
    }
}

pub(crate) fn panics_stay_inside_their_call(c: Driver, s: Driver, t: Transport) {
    let (client, server) = pair(c, s, t);
    let client = &client;
    // Deadlines only as hang guards: a server that lost a call fails the
    // test instead of hanging it.
    thread::scope(|scope| {
        let slow = scope.spawn(|| client.call("Sleep", "500", within(2 * SOON)));
        assert!(
            server.service.wait_started(1, SOON),
            "the slow call is in flight"
        );
        // A handler that panics at once (inline), one that panics after
        // moving off the reader, and several at once.
        let panics: Vec<_> = ["", "20", "", "20", "5", "5"]
            .into_iter()
            .map(|delay| scope.spawn(move || client.call("Panic", delay, within(SOON))))
            .collect();
        for p in panics {
            let err = p.join().unwrap().unwrap_err();
            let remote = err.remote().map(|r| r.message()).unwrap_or_default();
            assert!(
                remote.contains("handler panicked") && remote.contains(PANIC_MESSAGE),
                "{err}"
            );
            assert!(!err.is_communication(), "{err}");
        }
        // The connection and the call running beside the panics carry on.
        assert_eq!(&slow.join().unwrap().unwrap()[..], b"");
    });
    for i in 0..20 {
        let arg = format!("after {i}");
        assert_eq!(
            client
                .call("Echo", arg.clone(), CallOptions::default())
                .unwrap(),
            arg
        );
    }
    client.close();
    server.stop();
}

pub(crate) fn blocked_handlers_hold_only_their_connection(c: Driver, s: Driver, t: Transport) {
    const BLOCKED: u64 = 300;
    let limit = ServerOptions::default().max_concurrent_handlers_per_connection as u64;
    let server = TestServer::start(s, t, "s");
    let blocked = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    let other = TestClient::connect(c, vec![server.endpoint.clone()]).unwrap();
    // 300 handlers that wait for their cancel, on one connection: only the
    // per-connection limit of them run.
    let pending = blocked.start_calls("CancelWait", "", BLOCKED as usize, CallOptions::default());
    assert!(server.service.wait_started(limit, SOON));
    thread::scope(|scope| {
        // Deadlines fire on a server full of blocked handlers ...
        let waiter = scope.spawn(|| other.call("CancelWait", "", within(Duration::from_secs(1))));
        let sleeper = scope.spawn(|| other.call("Sleep", "60000", within(Duration::from_secs(1))));
        // ... and the other client's calls are served meanwhile.
        let mut served = 0;
        for i in 0..100 {
            let arg = i.to_string();
            let out = other.call("Echo", arg.clone(), within(SOON)).unwrap();
            assert_eq!(out, arg);
            served += 1;
        }
        assert_eq!(served, 100);
        for call in [waiter, sleeper] {
            let err = call.join().unwrap().unwrap_err();
            assert!(err.is_deadline_exceeded(), "{err}");
        }
    });
    // The server's side of the deadline ended the waiting handler.
    assert!(server.service.wait_cancel_count(1, SOON));
    // Past the limit, none of the blocked connection's handlers started.
    assert_eq!(server.service.started(), limit + 2);
    // The blocked client hangs up: every one of its 300 requests is
    // cancelled, those that never ran included (their handlers start
    // already cancelled).
    blocked.close();
    assert!(
        server.service.wait_cancel_count(1 + BLOCKED, SOON),
        "{} cancelled",
        server.service.cancel_count()
    );
    assert!(pending.wait().iter().all(|r| r.is_err()));
    assert_eq!(
        &other.call("Echo", "later", within(SOON)).unwrap()[..],
        b"later"
    );
    other.close();
    server.stop();
}

/// A balancer that panics (the application's code) fails the call it
/// was picking for, with the panic's message; the client carries on, no
/// lock poisoned and no call left waiting.
pub(crate) fn a_panicking_balancer_fails_only_its_call(c: Driver, s: Driver, t: Transport) {
    let server = TestServer::start(s, t, "s");
    let opts = ClientOptions {
        balancer: Box::new(weft_tokio::BalancerFn::new(
            |_: &[weft_tokio::ReadyReplica], o: &CallOptions| {
                assert!(o.shard_key != 13, "no replica for key {}", o.shard_key);
                Some(0)
            },
        )),
        ..ClientOptions::default()
    };
    let client = TestClient::connect_with(c, vec![server.endpoint.clone()], opts).unwrap();
    let keyed = |shard_key| CallOptions {
        shard_key,
        ..within(HANG)
    };
    assert_eq!(&client.call("Echo", "one", keyed(1)).unwrap()[..], b"one");
    let err = client.call("Echo", "two", keyed(13)).unwrap_err();
    assert_eq!(
        err,
        CallError::BalancerPanicked("no replica for key 13".into())
    );
    assert_eq!(
        &client.call("Echo", "three", keyed(2)).unwrap()[..],
        b"three"
    );
    client.close();
}
