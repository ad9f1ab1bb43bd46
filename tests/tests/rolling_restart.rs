//! Rolling restarts lose no call: three replicas behind one client, 128
//! calls without retry kept in flight, each replica shut down gracefully
//! and replaced by a new server on the same address in turn. For every
//! client driver x server driver, with a constant endpoint set and with
//! replicas taken out of and put back into a `DynamicResolver`.
//!
//! Each run prints calls made, restarts, failures and the longest call,
//! the figures the README quotes.

use std::time::Duration;
use weft_proto::{CallOptions, NetEndpoint};
use weft_tests::{Driver, Dynamic, ServerOptions, TestClient, TestServer, Transport};

const SOON: Duration = Duration::from_secs(10);
const GRACE: Duration = Duration::from_secs(10);
const IN_FLIGHT: usize = 128;
/// Calls each server must have taken before it is restarted, and the new
/// one before the next: it is in the rotation.
const SERVED: u64 = 200;
const NAMES: [&str; 3] = ["a", "b", "c"];

fn start_three(s: Driver) -> Vec<Option<TestServer>> {
    NAMES
        .iter()
        .map(|n| Some(TestServer::start(s, Transport::Tcp, n)))
        .collect()
}

fn endpoints(servers: &[Option<TestServer>]) -> Vec<NetEndpoint> {
    servers
        .iter()
        .map(|s| s.as_ref().unwrap().endpoint.clone())
        .collect()
}

fn all_answer(client: &TestClient) {
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 {
        seen.insert(client.call("Who", "", CallOptions::default()).unwrap());
    }
}

/// Shuts replica `i` down gracefully and starts its successor on the same
/// address; `out` and `back` run around it (resolver changes).
fn restart(
    servers: &mut [Option<TestServer>],
    i: usize,
    s: Driver,
    out: impl FnOnce(),
    back: impl FnOnce(),
) {
    let old = servers[i].take().unwrap();
    assert!(
        old.service.wait_started(SERVED, SOON),
        "{} serves",
        NAMES[i]
    );
    let endpoint = old.endpoint.clone();
    out();
    let _stopped = old.shutdown(GRACE);
    let new = TestServer::start_on(s, &endpoint, NAMES[i], ServerOptions::default());
    back();
    assert!(
        new.service.wait_started(SERVED, SOON),
        "the new {} is back in the rotation",
        NAMES[i]
    );
    servers[i] = Some(new);
}

fn rolling_restart(c: Driver, s: Driver) {
    let mut servers = start_three(s);
    let client = TestClient::connect(c, endpoints(&servers)).unwrap();
    all_answer(&client);
    let load = client.keep_calling(IN_FLIGHT, "Sleep", "1");
    for i in 0..3 {
        restart(&mut servers, i, s, || {}, || {});
    }
    let report = load.finish();
    println!(
        "rolling restart, {c:?} client, {s:?} servers: {} calls, 3 restarts, {} failed, longest call {:?}",
        report.calls, report.failures, report.longest
    );
    assert_eq!(report.failures, 0, "{:?}", report.errors);
    client.close();
    for s in servers.into_iter().flatten() {
        s.stop();
    }
}

fn rolling_restart_through_the_resolver(c: Driver, s: Driver) {
    let mut servers = start_three(s);
    let all = endpoints(&servers);
    let resolver = Dynamic::default();
    resolver.set(&all);
    let client = TestClient::connect_dynamic(c, &resolver).unwrap();
    all_answer(&client);
    let load = client.keep_calling(IN_FLIGHT, "Sleep", "1");
    for i in 0..3 {
        let others: Vec<NetEndpoint> = all
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, e)| e.clone())
            .collect();
        restart(
            &mut servers,
            i,
            s,
            || resolver.set(&others),
            || resolver.set(&all),
        );
    }
    let report = load.finish();
    println!(
        "rolling restart via the resolver, {c:?} client, {s:?} servers: {} calls, 3 restarts, {} failed, longest call {:?}",
        report.calls, report.failures, report.longest
    );
    assert_eq!(report.failures, 0, "{:?}", report.errors);
    client.close();
    for s in servers.into_iter().flatten() {
        s.stop();
    }
}

macro_rules! drivers {
    ($($scenario:ident),* $(,)?) => {
        $(
            mod $scenario {
                use super::*;
                #[test] fn tokio_tokio() { super::$scenario(Driver::Tokio, Driver::Tokio) }
                #[test] fn tokio_mio() { super::$scenario(Driver::Tokio, Driver::Mio) }
                #[test] fn mio_tokio() { super::$scenario(Driver::Mio, Driver::Tokio) }
                #[test] fn mio_mio() { super::$scenario(Driver::Mio, Driver::Mio) }
            }
        )*
    };
}

drivers!(rolling_restart, rolling_restart_through_the_resolver);
