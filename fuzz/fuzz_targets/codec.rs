//! JSON and msgpack frames: whatever decodes encodes, stably, and nothing panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollcall::hub::fuzz::codec(data));
