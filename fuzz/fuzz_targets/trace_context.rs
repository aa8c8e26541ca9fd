#![no_main]
//! See `thv_fuzz::trace_context` for the input format and the invariants checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thv_fuzz::trace_context::run(data));
