//! The `thv` binary: parse, run, map the outcome to an exit code. Everything else is in
//! the library.

#![forbid(unsafe_code)]

use std::process::ExitCode;

use thv::Invocation;

/// See Cargo.toml: RSS that follows the load, and cheaper small allocations.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let invocation = match Invocation::parse_from(std::env::args_os()) {
        Ok(invocation) => invocation,
        Err(e) => {
            let _ = e.print();
            // --help and --version are not failures; usage errors exit 1 as cobra does.
            return if e.use_stderr() { ExitCode::FAILURE } else { ExitCode::SUCCESS };
        }
    };
    match thv::run(&invocation) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e}");
            ExitCode::FAILURE
        }
    }
}
