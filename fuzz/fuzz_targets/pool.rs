#![no_main]
//! See `weft_proto::fuzz::pool`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::pool(data));
