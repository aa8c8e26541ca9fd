#![no_main]
//! See `thv_fuzz::h1_conn` for the input format and the invariants checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thv_fuzz::h1_conn::run(data));
