//! The bodies of the fuzz targets (one module per target), kept in a library so that the
//! `fuzz_targets/*.rs` files stay one line long and the checks can be read in one place.
//!
//! Every function takes the raw fuzzer input, must never panic on its own account, and
//! asserts the invariants of the code under test: a failed `assert!` is a finding, exactly
//! like a panic inside `thv`.

pub mod config;
pub mod h1;
pub mod h1_conn;
pub mod jsonrpc;
pub mod jwks;
pub mod jwt;
pub mod list_rewrite;
pub mod mcp_request;
pub mod metadata;
pub mod sse;
pub mod trace_context;
pub mod www_authenticate;

/// Inputs longer than this are ignored (a parser's cost is linear; long inputs only slow
/// the fuzzer down). `run.sh` passes a smaller `-max_len` anyway.
pub const MAX_INPUT: usize = 32 * 1024;
