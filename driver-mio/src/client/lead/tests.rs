//! The leadership's hand-offs, driven step by step: the client is built
//! without its loop thread, so the test decides who polls and when.

use super::*;
use crate::{
    Client, ClientOptions, ConstantResolver, Endpoint, HandlerMap, Request, Server, ServerOptions,
};
use bytes::Bytes;
use std::sync::mpsc;
use weft_proto::{CallError, CallOptions, MethodKey};

fn hold() -> MethodKey {
    MethodKey::new("weft.Test", "Hold")
}

/// Waits for a state only another thread can bring about.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let give_up = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < give_up, "never: {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn lead_of(c: &Client) -> (Leader, usize) {
    let lead = lock(&c.inner.shared.lead);
    (lead.leader, lead.parked)
}

/// A client of `resolver` whose poller nobody polls until the test says.
fn client_without_loop(resolver: ConstantResolver, opts: ClientOptions) -> Client {
    let (core, shared) = Client::assemble(resolver, opts).unwrap();
    Client::with_loop(core, shared, None)
}

/// Lets nobody lead: the next caller to wait leads itself.
fn free_the_lead(c: &Client) {
    lock(&c.inner.shared.lead).leader = Leader::Nobody;
}

/// [`client_without_loop`] once its dial has been reported (which asks the
/// absent loop thread for a turn), with nobody leading.
fn dialed_without_loop(resolver: ConstantResolver, opts: ClientOptions) -> Client {
    let client = client_without_loop(resolver, opts);
    let adoptions = &client.inner.shared.adoptions;
    wait_until("dialed", || {
        adoptions.load(std::sync::atomic::Ordering::SeqCst) == 1
    });
    free_the_lead(&client);
    client
}

/// A server whose `Hold` calls each wait for a gate named by their
/// argument's first byte.
fn holding_server() -> (Server, [mpsc::Sender<()>; 2]) {
    let (a, ra) = mpsc::channel();
    let (b, rb) = mpsc::channel();
    let gates = Arc::new([Mutex::new(ra), Mutex::new(rb)]);
    let mut h = HandlerMap::new();
    h.set("weft.Test", "Hold", move |req: Request| {
        let _ = gates[usize::from(req.args[0])].lock().unwrap().recv();
        Ok(req.args)
    });
    let opts = ServerOptions {
        inline_handler_duration: None,
        ..Default::default()
    };
    let server = Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), h, opts).unwrap();
    (server, [a, b])
}

/// A caller that leads and finishes while another is parked hands the
/// lead to the loop thread, which would otherwise never poll for the one
/// left parked.
#[test]
fn a_leader_leaving_parked_callers_hands_the_lead_to_the_loop() {
    let (server, [gate_a, gate_b]) = holding_server();
    let resolver = ConstantResolver::new([server.local_endpoint().clone()]);
    let client = dialed_without_loop(resolver, ClientOptions::default());
    let call = |arg: u8| {
        let c = client.clone();
        thread::spawn(move || c.call(hold(), Bytes::from(vec![arg]), CallOptions::default()))
    };
    let a = call(0);
    wait_until("a leads", || lead_of(&client).0 == Leader::Caller);
    let b = call(1);
    wait_until("b parks", || lead_of(&client).1 == 1);
    gate_a.send(()).unwrap();
    assert_eq!(&a.join().unwrap().unwrap()[..], [0]);
    assert_eq!(
        lead_of(&client),
        (Leader::Loop, 1),
        "a left, b parked, and nobody polls for b"
    );
    let (core, shared) = (client.inner.core.clone(), client.inner.shared.clone());
    let looping = thread::spawn(move || event_loop(core, shared));
    gate_b.send(()).unwrap();
    assert_eq!(&b.join().unwrap().unwrap()[..], [1]);
    client.close();
    looping.join().unwrap();
    server.shutdown();
}

/// An endpoint whose dial blocks until the test lets it fail.
struct StuckDial(Mutex<mpsc::Receiver<()>>);

impl Endpoint for StuckDial {
    fn dial(&self) -> io::Result<crate::Stream> {
        let _ = self.0.lock().unwrap().recv();
        Err(io::Error::other("let go by the test"))
    }

    fn address(&self) -> String {
        "stuck".into()
    }
}

/// A result set from another thread while its caller leads (here a cancel
/// of a call no connection holds: its replica is still dialing, so no
/// connection asks for a turn) ends the caller's poll: unparking a thread
/// that is not parked would leave it polling until the next timer.
#[test]
fn a_leading_caller_hears_of_a_result_set_elsewhere() {
    let (let_go, stuck) = mpsc::channel();
    let resolver = ConstantResolver::new([StuckDial(Mutex::new(stuck))]);
    // No timer of the client's ends the poll first.
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let client = client_without_loop(resolver, opts);
    free_the_lead(&client);
    let call = client.start(hold(), Bytes::new(), CallOptions::default());
    let cancel = call.cancel_handle();
    let (done_tx, done) = mpsc::channel();
    let waiter = thread::spawn(move || done_tx.send(call.wait()).unwrap());
    wait_until("the caller leads", || lead_of(&client).0 == Leader::Caller);
    cancel.cancel();
    let result = done
        .recv_timeout(Duration::from_secs(10))
        .expect("the leading caller never heard of its cancel");
    assert!(matches!(result, Err(CallError::Cancelled)), "{result:?}");
    waiter.join().unwrap();
    drop(let_go);
    client.close();
}

/// Callers that one turn answers are woken together, with one system
/// call, rather than each as it is answered (which switched the polling
/// thread out after every unpark). Here two parked calls reach their
/// common deadline in the same turn. (That the wakes go out before the
/// turn's poll sleeps is `tests/tests/backlog.rs`'s: without, its mio
/// client hangs.)
#[cfg(target_os = "linux")]
#[test]
fn a_turn_wakes_the_callers_it_answered_together() {
    let (let_go, stuck) = mpsc::channel();
    let resolver = ConstantResolver::new([StuckDial(Mutex::new(stuck))]);
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    // The loop thread leads (the initial state) but does not run yet:
    // callers park.
    let client = client_without_loop(resolver, opts);
    // Far enough for both callers to park first, however slowly their
    // threads start.
    let deadline = Instant::now() + Duration::from_millis(300);
    let (done_tx, done) = mpsc::channel();
    for _ in 0..2 {
        let (c, done_tx) = (client.clone(), done_tx.clone());
        thread::spawn(move || {
            let opts = CallOptions {
                deadline: Some(deadline),
                ..Default::default()
            };
            done_tx.send(c.call(hold(), Bytes::new(), opts)).unwrap();
        });
    }
    wait_until("both park", || lead_of(&client).1 == 2);
    while Instant::now() < deadline {
        thread::sleep(deadline - Instant::now());
    }
    let shared = client.inner.shared.clone();
    let wake_calls = || {
        shared
            .lot
            .wake_calls
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    let before = wake_calls();
    // One turn: its timers answer both callers, then it polls.
    let (core, s) = (client.inner.core.clone(), shared.clone());
    let one_turn = thread::spawn(move || turn(&core, &s, &mut lock_state(&s)));
    for _ in 0..2 {
        let result = done
            .recv_timeout(Duration::from_secs(10))
            .expect("a caller answered by the turn's timers was never woken");
        assert!(
            matches!(
                result,
                Err(CallError::DeadlineExceeded | CallError::DeadlineWaitingForReplica(_))
            ),
            "{result:?}"
        );
    }
    let calls = wake_calls() - before;
    assert_eq!(
        calls, 1,
        "two callers answered in one turn, {calls} wake calls"
    );
    shared.notify();
    one_turn.join().unwrap();
    drop(let_go);
    client.close();
}

/// A leading caller whose own call ends on a timer (its deadline) returns
/// then, though nothing else would ever end its poll: the server answers
/// the handshake and nothing more.
#[test]
fn a_leading_caller_returns_at_its_deadline_from_a_deaf_server() {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint: weft_proto::NetEndpoint = format!("tcp://{}", listener.local_addr().unwrap())
        .parse()
        .unwrap();
    let (keep_open, held) = mpsc::channel::<()>();
    thread::spawn(move || {
        let Ok((mut s, _)) = listener.accept() else {
            return;
        };
        let mut version = [0u8; 20];
        if s.read_exact(&mut version).is_ok() && s.write_all(&version).is_ok() {
            let _ = held.recv();
        }
    });
    // No other timer of the client's ends the poll within the test.
    let opts = ClientOptions {
        connect_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let client = dialed_without_loop(ConstantResolver::new([endpoint]), opts);
    let (done_tx, done) = mpsc::channel();
    let c = client.clone();
    thread::spawn(move || {
        let opts = CallOptions {
            deadline: Some(Instant::now() + Duration::from_millis(200)),
            ..Default::default()
        };
        done_tx.send(c.call(hold(), Bytes::new(), opts)).unwrap();
    });
    let result = done
        .recv_timeout(Duration::from_secs(10))
        .expect("the leading caller slept through its own deadline");
    assert!(
        matches!(
            result,
            Err(CallError::DeadlineExceeded | CallError::DeadlineWaitingForReplica(_))
        ),
        "{result:?}"
    );
    drop(keep_open);
    client.close();
}

/// While a caller leads, the loop thread sleeps until it stops (rather than
/// waking every rest for as long as a call takes), and the caller wakes it
/// when it does.
#[test]
fn the_loop_thread_sleeps_while_a_caller_leads() {
    let (server, [gate, _]) = holding_server();
    let resolver = ConstantResolver::new([server.local_endpoint().clone()]);
    let client = dialed_without_loop(resolver, ClientOptions::default());
    let c = client.clone();
    let caller =
        thread::spawn(move || c.call(hold(), Bytes::from(vec![0]), CallOptions::default()));
    wait_until("the caller leads", || lead_of(&client).0 == Leader::Caller);
    let (core, shared) = (client.inner.core.clone(), client.inner.shared.clone());
    let looping = thread::spawn(move || event_loop(core, shared));
    let sleeps = || lock(&client.inner.shared.lead).loop_sleeps;
    wait_until("the loop thread sleeps", sleeps);
    gate.send(()).unwrap();
    assert_eq!(&caller.join().unwrap().unwrap()[..], [0]);
    wait_until("the caller woke the loop thread", || !sleeps());
    client.close();
    looping.join().unwrap();
    server.shutdown();
}

/// A wake that finds its caller still looking (it has read the lot's word
/// and not yet parked) must move the word before the caller can park: a
/// caller parking in between would sleep on a wake already spent. The hook
/// lets the caller park inside that gap.
#[test]
fn a_caller_parking_while_its_wake_is_under_way_does_not_sleep_through_it() {
    let (_let_go, stuck) = mpsc::channel();
    let resolver = ConstantResolver::new([StuckDial(Mutex::new(stuck))]);
    // The loop thread leads (the initial state) but never runs: the caller
    // parks.
    let client = client_without_loop(resolver, ClientOptions::default());
    let (me_tx, me_rx) = mpsc::channel();
    let (go_tx, go) = mpsc::channel::<()>();
    let (returned_tx, returned) = mpsc::channel();
    let c = client.clone();
    let caller = thread::spawn(move || {
        let (core, shared) = (&c.inner.core, &c.inner.shared);
        let (me, waker) = caller_waker();
        let _looking = me.enter(shared);
        let seen = seq(shared);
        me_tx.send((me.clone(), waker)).unwrap();
        go.recv().unwrap();
        lead_or_park(core, shared, &me, seen, || false);
        returned_tx.send(()).unwrap();
    });
    let (me, waker) = me_rx.recv().unwrap();
    *lock(&me.after_release) = Some(Box::new(move || {
        go_tx.send(()).unwrap();
        // Room for the caller to park before the wake goes on.
        thread::sleep(Duration::from_millis(50));
    }));
    waker.wake_by_ref();
    returned
        .recv_timeout(Duration::from_secs(5))
        .expect("the caller slept through a wake that found it looking");
    caller.join().unwrap();
    client.close();
}

/// A turn asked for inside a caller's `start` while nobody leads (here a
/// deadline earlier than any timer) does not wake the loop thread: the
/// caller leads at its wait. Asked for from anywhere else, it does.
#[test]
fn a_callers_start_leaves_its_turn_to_its_own_wait() {
    let (server, [gate, _]) = holding_server();
    let resolver = ConstantResolver::new([server.local_endpoint().clone()]);
    let client = dialed_without_loop(resolver, ClientOptions::default());
    let left = || {
        client
            .inner
            .shared
            .left_to_the_starter
            .load(std::sync::atomic::Ordering::SeqCst)
    };
    // Earlier than the connection's own timers.
    let soon = CallOptions {
        deadline: Some(Instant::now() + Duration::from_secs(2)),
        ..Default::default()
    };
    let call = client.start(hold(), Bytes::from(vec![0]), soon);
    assert_eq!(left(), 1, "the deadline's timer asked for a turn");
    assert_eq!(lead_of(&client), (Leader::Nobody, 0));
    assert!(lock(&client.inner.shared.lead).pending);
    assert!(
        turn_unled(&client.inner.shared),
        "a spinning wait would lead at once"
    );
    gate.send(()).unwrap();
    // No loop thread: the caller's own turns write, read and answer.
    assert_eq!(&call.wait().unwrap()[..], [0]);
    // Outside `start` (another thread's cancel, say), nobody is spared.
    client.inner.shared.notify();
    assert_eq!(left(), 1);
    client.close();
    server.shutdown();
}

/// Calls started and never waited for still go out: their `start`s,
/// past the batch size, leave the requests for a turn and do not wake
/// the loop thread; the loop thread, once it looks (here: started late, as
/// after its rest), finds the turn pending and takes the lead.
#[test]
fn requests_started_without_a_wait_go_out_after_the_loops_rest() {
    let (arrived, arrivals) = mpsc::channel();
    let arrived = Mutex::new(arrived);
    let (release, released) = mpsc::channel::<()>();
    let released = Mutex::new(released);
    let mut h = HandlerMap::new();
    h.set("weft.Test", "Note", move |req: Request| {
        if req.args[0] < 16 {
            arrived.lock().unwrap().send(req.args[0]).unwrap();
            let _ = released.lock().unwrap().recv();
        }
        Ok(req.args)
    });
    let opts = ServerOptions {
        inline_handler_duration: None,
        ..Default::default()
    };
    let server = Server::bind(&"tcp://127.0.0.1:0".parse().unwrap(), h, opts).unwrap();
    let resolver = ConstantResolver::new([server.local_endpoint().clone()]);
    let client = dialed_without_loop(resolver, ClientOptions::default());
    let note = MethodKey::new("weft.Test", "Note");
    // A first call, led by its caller: the handshake is done, nobody leads.
    let warm = client.call(note, Bytes::from(vec![100]), CallOptions::default());
    assert_eq!(&warm.unwrap()[..], [100]);
    assert_eq!(lead_of(&client), (Leader::Nobody, 0));
    let calls: Vec<_> = (0..16u8)
        .map(|i| client.start(note, Bytes::from(vec![i]), CallOptions::default()))
        .collect();
    let left = client
        .inner
        .shared
        .left_to_the_starter
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(left > 0, "some requests were left for a turn");
    let (core, shared) = (client.inner.core.clone(), client.inner.shared.clone());
    let looping = thread::spawn(move || event_loop(core, shared));
    let mut seen: Vec<u8> = (0..16)
        .map(|_| {
            arrivals
                .recv_timeout(Duration::from_secs(10))
                .expect("sent")
        })
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (0..16).collect::<Vec<u8>>());
    for _ in 0..16 {
        release.send(()).unwrap();
    }
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(&call.wait().unwrap()[..], [i as u8]);
    }
    client.close();
    looping.join().unwrap();
    server.shutdown();
}
