#![no_main]
//! See `weft_proto::fuzz::frame_decoder`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| weft_proto::fuzz::frame_decoder(data));
