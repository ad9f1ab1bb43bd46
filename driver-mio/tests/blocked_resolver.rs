//! A resolver may block until its set changes, which may be never: a
//! client closed and dropped meanwhile must be freed (its poller and
//! waker closed), not kept alive by the thread waiting in the resolver.
//!
//! Its own test binary: it counts the process's pollers.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, Sender, channel};
use weft_mio::{Client, EndpointsVersion, Resolved, Resolver, SharedEndpoint};

/// Answers once (with no replicas), then blocks until released.
struct Blocking {
    asked: Mutex<Sender<()>>,
    release: Mutex<Receiver<()>>,
}

impl Resolver for Blocking {
    fn resolve(&self, version: Option<EndpointsVersion>) -> Resolved {
        if version.is_some() {
            let _ = self.asked.lock().unwrap().send(());
            let _ = self.release.lock().unwrap().recv();
        }
        // No replicas: no dial thread holds the client meanwhile.
        let endpoints: Vec<SharedEndpoint> = Vec::new();
        Ok((endpoints, Some(EndpointsVersion(1))))
    }
}

/// This process's epoll instances.
fn pollers() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy() == "anon_inode:[eventpoll]")
        .count()
}

#[test]
fn a_dropped_client_is_freed_while_its_resolver_blocks() {
    let before = pollers();
    let (asked_tx, asked) = channel();
    let (release, release_rx) = channel();
    let resolver = Blocking {
        asked: Mutex::new(asked_tx),
        release: Mutex::new(release_rx),
    };
    let client = Client::connect(resolver, Default::default()).unwrap();
    // Following the set: a thread now waits inside the resolver.
    asked.recv().unwrap();
    assert!(pollers() > before);
    client.close();
    drop(client);
    assert_eq!(
        pollers(),
        before,
        "the closed client's poller is still open"
    );
    let _ = release.send(());
}
