//! The hub driven by arbitrary scripts of opens, frames, closes, time and REST reads.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| rollcall::hub::fuzz::hub(data));
