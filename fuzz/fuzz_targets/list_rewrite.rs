#![no_main]
//! See `thv_fuzz::list_rewrite` for the input format and the invariants checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thv_fuzz::list_rewrite::run(data));
