//! A connection whose write fails in the same turn that started a handler:
//! the server must still take the failure's event, which cancels the
//! handlers (and ends their spans and the in-flight gauge), before the
//! connection's task ends.

mod common;

use bytes::Bytes;
use common::{Counters, Faulty, handlers};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use weft_proto::{MethodKey, RequestHeader, Transmit, Version};
use weft_tokio::ServerOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_failure_cancels_the_handlers_it_strands() {
    let (mut peer, theirs) = tokio::io::duplex(64 * 1024);
    // The version and a request arrive in one read, so the handler starts
    // in the same turn whose write (the version reply) fails.
    let mut tx = Transmit::new(0);
    tx.push_version(Version::CURRENT);
    let header = RequestHeader::new(MethodKey::new("weft.Test", "CancelWait"));
    tx.push_request(1, header.fields(), &Bytes::new());
    let mut hello = Vec::new();
    tx.drain_into(&mut hello);
    peer.write_all(&hello).await.unwrap();
    let counters = Counters::default();
    let server = weft_tokio::serve_on(
        Faulty::new(Box::new(theirs), usize::MAX, 0),
        handlers("w", &counters),
        ServerOptions::default(),
    );
    // A guard against the hang this test is about; nothing here is about
    // how long it takes.
    tokio::time::timeout(Duration::from_secs(10), counters.wait_cancelled(1))
        .await
        .expect("the handler was never told the connection failed");
    server.await.unwrap();
    drop(peer);
}
