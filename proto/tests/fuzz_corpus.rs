//! Runs every fuzz target's body over its checked-in corpus, so inputs the
//! fuzzer once found interesting stay regression tests under `cargo test`.

use std::path::PathBuf;

fn run(target: &str, body: fn(&[u8])) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        body(&std::fs::read(&path).unwrap());
        n += 1;
    }
    assert!(n > 0, "empty corpus for {target}");
}

#[test]
fn frame_decoder_corpus() {
    run("frame_decoder", weft_proto::fuzz::frame_decoder);
}

#[test]
fn request_header_corpus() {
    run("request_header", weft_proto::fuzz::request_header);
}

#[test]
fn error_payload_corpus() {
    run("error_payload", weft_proto::fuzz::error_payload);
}

#[test]
fn client_conn_corpus() {
    run("client_conn", weft_proto::fuzz::client_conn);
}

#[test]
fn server_conn_corpus() {
    run("server_conn", weft_proto::fuzz::server_conn);
}

#[test]
fn pool_corpus() {
    run("pool", weft_proto::fuzz::pool);
}

#[test]
fn codec_corpus() {
    run("codec", weft_proto::fuzz::codec);
}
