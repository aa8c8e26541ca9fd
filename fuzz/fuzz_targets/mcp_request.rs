#![no_main]
//! See `thv_fuzz::mcp_request` for the input format and the invariants checked.

libfuzzer_sys::fuzz_target!(|data: &[u8]| thv_fuzz::mcp_request::run(data));
