//! The single integration-test binary: every test that runs `thv` as a real process.
//!
//! One binary keeps link time down on small machines; the modules group tests by role.

mod support;

mod authz_table;
mod cli;
mod corpus;
mod device;
mod dpop;
mod engine;
mod faults;
mod forwarding;
mod grants;
mod hostile;
mod inbound;
mod mcp;
mod outbound;
mod policy;
mod properties;
mod stdio;
mod telemetry;
