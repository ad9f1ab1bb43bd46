#![no_main]
//! See `weft_proto::fuzz::client_conn`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::client_conn(data));
