#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| certgate_fuzz::check::response_head(data));
