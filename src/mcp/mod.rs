//! What the proxy knows about the Model Context Protocol itself. The proxy stays
//! transparent: it only *reads* MCP where that makes its own answers better (echoing a
//! JSON-RPC id in an error) or where the transport requires it (the legacy HTTP+SSE
//! `endpoint` event, MCP 2024-11-05 Transports §HTTP with SSE).

pub(crate) mod events;
pub(crate) mod jsonrpc;
pub(crate) mod peek;
pub(crate) mod request;
mod scan;
pub(crate) mod sse;
pub(crate) mod strict;
