#![no_main]
//! See `weft_proto::fuzz::request_header`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::request_header(data));
