#![no_main]
//! See `weft_proto::fuzz::error_payload`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::error_payload(data));
