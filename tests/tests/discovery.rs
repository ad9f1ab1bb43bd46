//! Service discovery over real sockets: a client following a resolver
//! while replicas come and go, with calls running and none failing.

use std::path::{Path, PathBuf};
use std::time::Duration;
use weft_proto::{CallOptions, NetEndpoint};
use weft_tests::{Driver, ServerOptions, TestClient, TestServer};

const SOON: Duration = Duration::from_secs(10);

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("weft-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn serve(s: Driver, dir: &Path, name: &str) -> TestServer {
    let bind = NetEndpoint::Unix(dir.join(format!("{name}.sock")));
    TestServer::start_on(s, &bind, name, ServerOptions::default())
}

/// Calls `Who` until `n` answers in a row come from `name`: with round
/// robin over the ready replicas, every other replica is out of the set.
fn only(client: &TestClient, name: &str, n: usize) {
    let deadline = std::time::Instant::now() + SOON;
    let mut run = 0;
    while run < n {
        assert!(
            std::time::Instant::now() < deadline,
            "{name} never served alone"
        );
        let who = client.call("Who", "", CallOptions::default()).unwrap();
        run = if who == name.as_bytes() { run + 1 } else { 0 };
    }
}

fn follows_a_directory(c: Driver, s: Driver) {
    let dir = temp_dir(&format!("unixdir-{c:?}-{s:?}"));
    let a = serve(s, &dir, "a");
    let client = TestClient::connect_resolver(
        c,
        weft_tokio::UnixDirResolver::new(&dir),
        weft_mio::UnixDirResolver::new(&dir),
    )
    .unwrap();
    only(&client, "a", 5);
    let load = client.keep_calling(16, "Sleep", "1");

    // A replica appears: it is found and takes calls.
    let b = serve(s, &dir, "b");
    assert!(b.service.wait_started(100, SOON), "b found and called");

    // A replica's socket goes away (as a server unregisters before it
    // stops): the client drops it, and stopping it at once fails nothing.
    std::fs::remove_file(dir.join("a.sock")).unwrap();
    only(&client, "b", 20);
    let _stopped = a.stop();
    let served = b.service.started();
    assert!(b.service.wait_started(served + 100, SOON), "b carries on");

    let report = load.finish();
    assert_eq!(report.failures, 0, "{:?}", report.errors);
    assert!(report.calls > 200);
    drop(b);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unixdir_tokio_client() {
    follows_a_directory(Driver::Tokio, Driver::Mio);
}

#[test]
fn unixdir_mio_client() {
    follows_a_directory(Driver::Mio, Driver::Tokio);
}
