//! The client and server connection cores, wired together in the
//! deterministic simulation of `sim/`.

mod sim;

use bytes::Bytes;
use sim::{Pair, ServerApp};
use std::time::Duration;
use weft_proto::MessageType;
use weft_proto::{
    CallError, CallOptions, CancelReason, ClientEvent, ConnError, DecodeError, MethodKey,
    PeerError, ServerEvent, Version,
};

fn echo() -> MethodKey {
    MethodKey::new("weft.Test", "Echo")
}

fn requests(p: &Pair) -> Vec<u64> {
    p.server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Request(r) => Some(r.id),
            _ => None,
        })
        .collect()
}

fn cancels(p: &Pair) -> Vec<(u64, CancelReason)> {
    p.server_events
        .iter()
        .filter_map(|e| match e {
            ServerEvent::Cancel { id, reason } => Some((*id, *reason)),
            _ => None,
        })
        .collect()
}

fn call(p: &mut Pair, args: &'static [u8], opts: &CallOptions) -> weft_proto::CallId {
    let now = p.now;
    p.client
        .start_call(now, echo(), Bytes::from_static(args), opts)
}

#[test]
fn handshake_then_calls_go_out() {
    for seed in 0..20 {
        let mut p = Pair::new(seed);
        // A call started before the handshake waits in the core.
        let id = call(&mut p, b"early", &CallOptions::default());
        assert_eq!(p.client.transmit().len(), 20, "only the version frame");
        p.drive_until(|p| p.connected());
        assert_eq!(p.client.version(), Some(Version::LATEST));
        assert_eq!(p.server.version(), Some(Version::LATEST));
        p.drive_until(|p| !requests(p).is_empty());
        assert_eq!(requests(&p), [1], "ids start at 1");
        assert_eq!(id.0, 1);
    }
}

#[test]
fn one_call() {
    let mut p = Pair::new(1);
    p.app = ServerApp::Echo {
        max_delay: Duration::from_micros(50),
    };
    let id = call(&mut p, b"hello", &CallOptions::default());
    p.settle();
    assert_eq!(p.done_for(id), [&Ok(Bytes::from_static(b"hello"))]);
    assert_eq!(p.client.in_flight(), 0);
    assert_eq!(p.server.in_flight(), 0);
}

#[test]
fn ten_thousand_concurrent_calls_each_end_once_with_their_own_result() {
    let mut p = Pair::new(7);
    p.app = ServerApp::Echo {
        max_delay: Duration::from_millis(5),
    };
    let mut ids = Vec::new();
    for i in 0..10_000u32 {
        let now = p.now;
        let args = Bytes::from(i.to_le_bytes().to_vec());
        ids.push((
            p.client
                .start_call(now, echo(), args.clone(), &CallOptions::default()),
            args,
        ));
    }
    p.settle();
    let mut seen = std::collections::HashMap::new();
    for e in &p.client_events {
        if let ClientEvent::Done { id, result } = e {
            assert!(
                seen.insert(*id, result.clone()).is_none(),
                "{id:?} ended twice"
            );
        }
    }
    assert_eq!(seen.len(), 10_000);
    for (id, args) in ids {
        assert_eq!(seen[&id], Ok(args));
    }
    // Random server delays mean responses came back out of order.
    let order: Vec<u64> = p
        .client_events
        .iter()
        .filter_map(|e| match e {
            ClientEvent::Done { id, .. } => Some(id.0),
            _ => None,
        })
        .collect();
    assert!(order.windows(2).any(|w| w[0] > w[1]));
}

#[test]
fn out_of_order_responses_reach_their_calls() {
    let mut p = Pair::new(3);
    let a = call(&mut p, b"a", &CallOptions::default());
    let b = call(&mut p, b"b", &CallOptions::default());
    let c = call(&mut p, b"c", &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 3);
    let now = p.now;
    p.server.respond(now, 3, Ok(Bytes::from_static(b"C")));
    p.respond_error(2, "no b today");
    p.server.respond(now, 1, Ok(Bytes::from_static(b"A")));
    p.settle();
    assert_eq!(p.done_for(a), [&Ok(Bytes::from_static(b"A"))]);
    assert_eq!(p.done_for(c), [&Ok(Bytes::from_static(b"C"))]);
    let [Err(e)] = p.done_for(b)[..] else {
        panic!()
    };
    assert_eq!(e.remote().unwrap().message(), "no b today");
    assert!(!e.is_communication());
}

#[test]
fn cancel_before_send_puts_nothing_on_the_wire() {
    let mut p = Pair::new(4);
    let id = call(&mut p, b"x", &CallOptions::default());
    let now = p.now;
    assert!(p.client.cancel(now, id));
    assert_eq!(p.client.transmit().len(), 20, "no request, no cancel");
    p.settle();
    assert_eq!(p.done_for(id), [&Err(CallError::Cancelled)]);
    assert!(requests(&p).is_empty());
    assert!(cancels(&p).is_empty());
    assert_eq!(p.c2s.delivered, 20);
}

#[test]
fn cancel_after_send_reaches_the_handler_and_the_late_reply_is_dropped() {
    let mut p = Pair::new(5);
    p.app = ServerApp::Echo {
        max_delay: Duration::from_secs(10),
    };
    let start = p.now;
    let id = call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| !requests(p).is_empty());
    let now = p.now;
    assert!(p.client.cancel(now, id));
    assert!(!p.client.cancel(now, id), "second cancel is a no-op");
    p.settle();
    // The echo app answers a cancelled request with "context canceled",
    // as Go's server does; the client has already ended the call.
    assert_eq!(cancels(&p), [(1, CancelReason::Cancelled)]);
    assert_eq!(p.done_for(id), [&Err(CallError::Cancelled)]);
    // The handler stopped on the cancel, long before its 10 s echo delay.
    assert!(p.now - start < Duration::from_millis(10));
    assert_eq!(p.server.in_flight(), 0);
}

#[test]
fn cancel_after_the_response_changes_nothing() {
    let mut p = Pair::new(6);
    p.app = ServerApp::Echo {
        max_delay: Duration::ZERO,
    };
    let id = call(&mut p, b"x", &CallOptions::default());
    p.settle();
    let now = p.now;
    assert!(!p.client.cancel(now, id));
    p.settle();
    assert!(
        cancels(&p).is_empty(),
        "no cancel frame for a finished call"
    );
    assert_eq!(p.done_for(id), [&Ok(Bytes::from_static(b"x"))]);
}

#[test]
fn client_deadline_ends_the_call_and_sends_no_cancel() {
    let mut p = Pair::new(8);
    p.drive_until(|p| p.connected());
    let deadline = p.now + Duration::from_millis(10);
    let id = call(
        &mut p,
        b"x",
        &CallOptions {
            deadline: Some(deadline),
            ..Default::default()
        },
    );
    p.drive_until(|p| !p.done_for(id).is_empty());
    assert_eq!(p.done_for(id), [&Err(CallError::DeadlineExceeded)]);
    assert!(p.now >= deadline, "not before the deadline");
    assert!(
        p.now <= deadline + Duration::from_micros(1),
        "at the deadline, not later"
    );
    p.settle();
    // The server ends the handler by its own deadline, not by a cancel frame.
    assert_eq!(cancels(&p), [(1, CancelReason::DeadlineExceeded)]);
    let ServerEvent::Request(req) = &p.server_events[0] else {
        panic!()
    };
    let d = req.deadline.unwrap();
    assert!(d <= deadline + Duration::from_millis(1) && d > deadline - Duration::from_millis(1));
}

#[test]
fn server_deadline_answer_is_go_deadline_exceeded() {
    let mut p = Pair::new(9);
    p.app = ServerApp::Echo {
        max_delay: Duration::from_secs(60),
    };
    let deadline = p.now + Duration::from_millis(20);
    let id = call(
        &mut p,
        b"x",
        &CallOptions {
            deadline: Some(deadline),
            ..Default::default()
        },
    );
    p.settle();
    assert_eq!(p.done_for(id), [&Err(CallError::DeadlineExceeded)]);
    assert_eq!(cancels(&p), [(1, CancelReason::DeadlineExceeded)]);
}

#[test]
fn deadline_already_passed_fails_without_sending() {
    let mut p = Pair::new(10);
    p.drive_until(|p| p.connected());
    let past = p.now;
    let id = call(
        &mut p,
        b"x",
        &CallOptions {
            deadline: Some(past),
            ..Default::default()
        },
    );
    assert_eq!(p.client.transmit().len(), 0);
    p.settle();
    assert_eq!(p.done_for(id), [&Err(CallError::DeadlineExceeded)]);
    assert!(requests(&p).is_empty());
}

#[test]
fn dropped_link_ends_every_call_once_with_a_communication_error() {
    for seed in 0..10 {
        let mut p = Pair::new(seed);
        p.app = ServerApp::Echo {
            max_delay: Duration::from_millis(2),
        };
        let ids: Vec<_> = (0..100)
            .map(|_| call(&mut p, b"x", &CallOptions::default()))
            .collect();
        // Let part of the traffic through, then cut the link.
        for _ in 0..(seed * 7) {
            p.step();
        }
        p.break_link();
        p.settle();
        for id in ids {
            let done = p.done_for(id);
            assert_eq!(done.len(), 1, "{id:?} ended {} times", done.len());
            if let Err(e) = done[0] {
                // Requests still waiting for the handshake never went out.
                assert!(e.is_communication() || e.is_unprocessed(), "{e}");
                assert!(e.to_string().contains("link dropped"));
            }
        }
        assert!(matches!(
            p.client_events.last(),
            Some(ClientEvent::Failed(ConnError::Transport(_)))
        ));
        assert!(matches!(
            p.server_events.last(),
            Some(ServerEvent::Failed(_))
        ));
        assert_eq!(p.server.in_flight(), 0);
        // Later calls fail at once.
        let late = call(&mut p, b"y", &CallOptions::default());
        p.settle();
        assert!(matches!(
            p.done_for(late)[..],
            [Err(CallError::Connection(_))]
        ));
    }
}

#[test]
fn server_in_flight_handlers_are_cancelled_when_the_link_drops() {
    let mut p = Pair::new(11);
    for _ in 0..3 {
        call(&mut p, b"x", &CallOptions::default());
    }
    p.drive_until(|p| requests(p).len() == 3);
    p.break_link();
    let lost: Vec<_> = cancels(&p);
    assert_eq!(lost, [1, 2, 3].map(|id| (id, CancelReason::ConnectionLost)));
}

#[test]
fn garbage_from_the_server_fails_the_client_connection_with_the_reason() {
    let mut p = Pair::new(12);
    let id = call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| p.connected() && !requests(p).is_empty());
    let mut bad = 5u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&(9u64).to_le_bytes()); // type 9, length 0
    p.inject_to_client(&bad);
    p.settle();
    let want = ConnError::Peer(PeerError::Decode(DecodeError::UnknownMessageType(9)));
    assert_eq!(p.done_for(id), [&Err(CallError::Connection(want.clone()))]);
    assert_eq!(p.client_events.last(), Some(&ClientEvent::Failed(want)));
    assert!(
        p.client
            .failure()
            .unwrap()
            .to_string()
            .contains("unknown message type 9")
    );
}

#[test]
fn oversize_frame_fails_the_server_connection_before_allocating() {
    let config = weft_proto::ConnConfig {
        max_payload: 1024,
        ..Default::default()
    };
    let mut p = Pair::with_config(13, config);
    p.drive_until(|p| p.connected());
    // Not a request (those are refused one by one, see server_limits.rs):
    // a response sent to a server.
    let mut bad = 1u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&(2 | (1_000_000u64 << 8)).to_le_bytes());
    p.inject_to_server(&bad);
    p.settle();
    let Some(ServerEvent::Failed(err)) = p.server_events.last() else {
        panic!()
    };
    assert_eq!(
        *err,
        ConnError::Peer(PeerError::Decode(DecodeError::PayloadTooLarge {
            len: 1_000_000,
            max: 1024
        }))
    );
    assert!(
        err.to_string()
            .contains("overly large message length 1000000")
    );
}

#[test]
fn a_request_sent_to_the_client_is_a_protocol_error() {
    let mut p = Pair::new(14);
    p.drive_until(|p| p.connected());
    let mut bad = 1u64.to_le_bytes().to_vec();
    bad.extend_from_slice(&4u64.to_le_bytes()); // a cancel frame, client-bound
    p.inject_to_client(&bad);
    p.settle();
    assert_eq!(
        p.client.failure(),
        Some(&ConnError::Peer(PeerError::UnexpectedMessage(
            MessageType::Cancel
        )))
    );
}

#[test]
fn a_non_version_first_frame_is_a_protocol_error() {
    let mut p = Pair::new(15);
    let mut resp = 1u64.to_le_bytes().to_vec();
    resp.extend_from_slice(&2u64.to_le_bytes());
    // Reach the client before the server's version does.
    p.client.handle_input(p.now, &resp);
    assert_eq!(
        p.client.failure(),
        Some(&ConnError::Peer(PeerError::NotVersion(
            MessageType::Response
        )))
    );
}

#[test]
fn a_duplicate_in_flight_request_id_fails_the_server_connection() {
    let mut p = Pair::new(16);
    call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| !requests(p).is_empty());
    let mut tx = weft_proto::Transmit::new(4096);
    tx.push_request(
        1,
        weft_proto::RequestHeader::new(echo()).fields(),
        &Bytes::new(),
    );
    let mut raw = Vec::new();
    tx.drain_into(&mut raw);
    p.inject_to_server(&raw);
    p.settle();
    assert_eq!(
        p.server.failure(),
        Some(&ConnError::Peer(PeerError::DuplicateRequestId(1)))
    );
}

#[test]
fn unknown_method_answer_is_go_compatible() {
    let mut p = Pair::new(17);
    let id = call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| !requests(p).is_empty());
    let now = p.now;
    p.server.respond_unknown_method(now, 1);
    p.settle();
    let [Err(e)] = p.done_for(id)[..] else {
        panic!()
    };
    assert_eq!(e.to_string(), "internal error: unknown function");
}

#[test]
fn close_ends_pending_calls_and_later_ones_say_closed() {
    let mut p = Pair::new(18);
    let id = call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| !requests(p).is_empty());
    let now = p.now;
    p.client.close(now);
    p.client.close(now);
    let late = call(&mut p, b"y", &CallOptions::default());
    p.drain();
    for id in [id, late] {
        let [Err(e)] = p.done_for(id)[..] else {
            panic!()
        };
        assert!(e.is_communication());
        assert!(e.to_string().contains("closed"), "{e}");
    }
    let failed = p
        .client_events
        .iter()
        .filter(|e| matches!(e, ClientEvent::Failed(_)))
        .count();
    assert_eq!(failed, 1, "close is idempotent");
}

#[test]
fn metadata_and_trace_reach_the_handler() {
    let mut p = Pair::new(19);
    let trace = weft_proto::TraceContext {
        trace_id: [1; 16],
        span_id: [2; 8],
        flags: 1,
    };
    let md = weft_proto::Metadata::from_iter([("k", "v"), ("a", "b")]);
    call(
        &mut p,
        b"x",
        &CallOptions {
            trace: Some(trace),
            metadata: Some(md.clone()),
            ..Default::default()
        },
    );
    p.drive_until(|p| !requests(p).is_empty());
    let ServerEvent::Request(req) = &p.server_events[0] else {
        panic!()
    };
    assert_eq!(req.trace, Some(trace));
    assert_eq!(req.metadata, Some(md));
    assert_eq!(req.method, echo());
}

#[test]
fn a_reused_request_id_is_not_cancelled_by_its_predecessors_deadline() {
    // Found by fuzzing server_conn. Request 7 with a 10 ms deadline is
    // answered at once; the client then reuses id 7 (allowed: not in
    // flight) without a deadline. The old deadline must not cancel it.
    let mut p = Pair::new(20);
    p.drive_until(|p| p.connected());
    let mut tx = weft_proto::Transmit::new(4096);
    let mut header = weft_proto::RequestHeader::new(echo());
    header.deadline_micros = 10_000;
    tx.push_request(7, header.fields(), &Bytes::new());
    let mut raw = Vec::new();
    tx.drain_into(&mut raw);
    p.inject_to_server(&raw);
    p.drive_until(|p| !requests(p).is_empty());
    let now = p.now;
    p.server.respond(now, 7, Ok(Bytes::new()));
    raw.clear();
    tx.push_request(
        7,
        weft_proto::RequestHeader::new(echo()).fields(),
        &Bytes::new(),
    );
    tx.drain_into(&mut raw);
    p.inject_to_server(&raw);
    p.drive_until(|p| requests(p).len() == 2);
    let later = p.now + Duration::from_millis(50);
    p.advance_to(later);
    assert!(cancels(&p).is_empty(), "{:?}", cancels(&p));
    assert_eq!(p.server.in_flight(), 1);
}

#[test]
fn responding_as_the_deadline_falls_due_sends_no_cancel() {
    let mut p = Pair::new(21);
    let deadline = p.now + Duration::from_millis(1);
    call(
        &mut p,
        b"x",
        &CallOptions {
            deadline: Some(deadline),
            ..Default::default()
        },
    );
    p.drive_until(|p| !requests(p).is_empty());
    // The handler answers at a moment past the deadline, before any timer
    // ran on the server.
    p.server
        .respond(deadline + Duration::from_millis(5), 1, Ok(Bytes::new()));
    p.drain();
    assert!(cancels(&p).is_empty());
}

#[test]
fn a_request_over_the_limit_fails_alone_and_is_never_sent() {
    let config = weft_proto::ConnConfig {
        max_payload: 1024,
        ..Default::default()
    };
    let mut p = Pair::with_config(21, config);
    p.drive_until(|p| p.connected());
    let now = p.now;
    let big = p.client.start_call(
        now,
        MethodKey::new("weft.Test", "Echo"),
        Bytes::from(vec![0; 1024]),
        &CallOptions::default(),
    );
    assert!(p.client.transmit().is_empty(), "nothing was queued");
    p.settle();
    // 4 (header length) + 26 (header) + 1024 (arguments).
    assert_eq!(
        p.done_for(big),
        [&Err(CallError::RequestTooLarge {
            size: 1054,
            limit: 1024
        })]
    );
    assert!(p.client.failure().is_none(), "the connection carries on");
}

#[test]
fn a_response_over_the_clients_limit_fails_that_call_alone() {
    let config = weft_proto::ConnConfig {
        max_payload: 1024,
        ..weft_proto::ConnConfig::default()
    };
    let mut p = Pair::with_config(7, config);
    let big = call(&mut p, b"big", &CallOptions::default());
    let small = call(&mut p, b"small", &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 2);
    let now = p.now;
    // Answered in pieces, the large one first: the client skips its body
    // as it arrives and reads the next answer.
    p.server.respond(now, 1, Ok(Bytes::from(vec![7u8; 4096])));
    p.server.respond(now, 2, Ok(Bytes::from_static(b"small")));
    p.settle();
    assert_eq!(
        p.done_for(big),
        [&Err(CallError::ResponseTooLarge {
            size: 4096,
            limit: 1024
        })]
    );
    assert_eq!(p.done_for(small), [&Ok(Bytes::from_static(b"small"))]);
    assert!(p.connected(), "the connection goes on");
    let again = call(&mut p, b"again", &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 3);
    let now = p.now;
    p.server.respond(now, 3, Ok(Bytes::from_static(b"again")));
    p.settle();
    assert_eq!(p.done_for(again), [&Ok(Bytes::from_static(b"again"))]);
}

#[test]
fn a_response_claiming_far_past_the_limit_is_a_broken_stream() {
    let config = weft_proto::ConnConfig {
        max_payload: 1024,
        ..weft_proto::ConnConfig::default()
    };
    let mut p = Pair::with_config(8, config);
    let id = call(&mut p, b"x", &CallOptions::default());
    p.drive_until(|p| requests(p).len() == 1);
    // A response header claiming 64 GiB and one byte: not skipped.
    let mut frame = vec![0u8; 16];
    frame[..8].copy_from_slice(&1u64.to_le_bytes());
    let len_and_type = ((1u64 << 36) + 1) << 8 | weft_proto::MessageType::Response as u64;
    frame[8..].copy_from_slice(&len_and_type.to_le_bytes());
    p.inject_to_client(&frame);
    p.settle();
    let [Err(CallError::Connection(ConnError::Peer(PeerError::Decode(e))))] = &p.done_for(id)[..]
    else {
        panic!("{:?}", p.done_for(id))
    };
    assert!(matches!(e, DecodeError::PayloadTooLarge { .. }), "{e}");
}
