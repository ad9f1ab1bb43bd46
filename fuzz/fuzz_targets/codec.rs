#![no_main]
//! See `weft_proto::fuzz::codec`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::codec(data));
