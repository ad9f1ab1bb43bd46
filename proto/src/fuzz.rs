//! Bodies of the cargo-fuzz targets in `fuzz/`.
//!
//! They live here, as ordinary functions, so that `cargo test` runs them over
//! the checked-in corpus and a crash found by the fuzzer stays a regression
//! test. Each one checks invariants with assertions; a panic is a finding.

use crate::frame::{FrameDecoder, HEADER_LEN};
use crate::{Message, RemoteError, RequestHeader};

/// Payload limit the `frame_decoder` target runs with: small, so the fuzzer
/// reaches the limit checks often.
pub const FUZZ_MAX_PAYLOAD: u64 = 1 << 16;

/// Feeds `data` to a frame decoder in chunks whose sizes come from the data
/// itself, parsing every frame, and checks that memory stays bounded.
pub fn frame_decoder(data: &[u8]) {
    let Some((&chunk_seed, mut rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk_seed) + 1;
    let mut dec = FrameDecoder::new(FUZZ_MAX_PAYLOAD);
    let bound = 2 * (HEADER_LEN + FUZZ_MAX_PAYLOAD as usize + chunk);
    while !rest.is_empty() {
        let (now, later) = rest.split_at(chunk.min(rest.len()));
        rest = later;
        dec.extend_from_slice(now);
        loop {
            match dec.decode() {
                Ok(Some(frame)) => {
                    assert!(frame.payload.len() as u64 <= FUZZ_MAX_PAYLOAD);
                    if let Ok(Message::ErrorResponse { payload, .. }) = Message::parse(frame) {
                        let _ = RemoteError::decode(&payload);
                    }
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        assert!(
            dec.capacity() <= bound,
            "decoder holds {} bytes",
            dec.capacity()
        );
    }
}

/// Decodes `data` as a request header; whatever decodes must re-encode to a
/// header that decodes to the same value.
pub fn request_header(data: &[u8]) {
    if let Ok(h) = RequestHeader::decode(data) {
        let mut buf = Vec::with_capacity(h.encoded_len());
        h.encode(&mut buf);
        assert_eq!(buf.len(), h.encoded_len());
        assert_eq!(RequestHeader::decode(&buf).as_ref(), Ok(&h));
    }
}

/// Decodes `data` as an error payload; whatever decodes must round-trip.
pub fn error_payload(data: &[u8]) {
    if let Ok(e) = RemoteError::decode(data) {
        let mut buf = Vec::new();
        e.encode(&mut buf);
        assert_eq!(buf.len(), e.encoded_len());
        // Lossy UTF-8 repair means the bytes may differ, but not the value.
        assert_eq!(RemoteError::decode(&buf).as_ref(), Ok(&e));
    }
}
