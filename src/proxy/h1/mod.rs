//! The own HTTP/1.1 forwarding path: plain MCP requests to a plain-HTTP target, served
//! without hyper (pingora's and nginx's shape: parse in place, one task per exchange, a
//! pooled upstream socket written and read directly).
//!
//! hyper remains the server for everything else, with the same answers as before: the
//! first request on a connection that this path does not take moves that connection to
//! hyper, the bytes already read replayed ([`rewind`]). Which requests this path takes is
//! decided in one place, [`request`]; the target's response is read by [`response`] and
//! its body re-framed by [`body`] and passed on by [`emit`].
//!
//! It is on when the target is `http://` without a query of its own and no outgoing
//! authentication is configured (the remote-auth path resends requests and renews tokens,
//! which hyper's path does); `THV_HTTP1=hyper` turns it off.
//!
//! Bytes from the network are indexed here, so the module denies `clippy::indexing_slicing`
//! and `clippy::arithmetic_side_effects`: every index, slice and integer operation in it is
//! a checked form (`get`, `split_at_checked`, `strip_prefix`, `checked_*`, or `saturating_*`
//! where saturation provably changes nothing), and a failed check refuses the request, falls
//! back to hyper or closes the connection. The lints do not see ranges and lengths given to
//! methods (`Vec::drain`, `Vec::splice`, `Bytes::advance`): each such call follows the
//! check that keeps it in range. No local `allow` exists outside tests; three unit-test
//! modules allow `indexing_slicing`.

#![deny(clippy::indexing_slicing, clippy::arithmetic_side_effects)]

pub(crate) mod body;
pub(crate) mod conn;
mod emit;
pub(crate) mod heads;
mod io;
pub(crate) mod request;
pub(crate) mod response;
pub(crate) mod rewind;
mod shape;
pub(crate) mod upstream;

use std::sync::Arc;
use std::time::Duration;

use crate::telemetry::metrics::Metrics;
use upstream::RawPool;

/// The own path's fixed parts.
pub(crate) struct FastPath {
    pool: RawPool,
    /// The `Host` the target gets.
    upstream_host: Vec<u8>,
    response_timeout: Option<Duration>,
    connect_timeout: Duration,
    /// Counts resends on another connection (telemetry on).
    metrics: Option<Arc<Metrics>>,
}

impl FastPath {
    /// For `config`, when the own path applies to it.
    pub(crate) fn for_config(config: &crate::config::Config, metrics: Option<Arc<Metrics>>) -> Option<FastPath> {
        let t = &config.target;
        let applies =
            config.own_http1 && config.outbound.is_none() && t.scheme == http::uri::Scheme::HTTP && t.query.is_none();
        applies.then(|| FastPath {
            pool: RawPool::new(t.socket_authority(), config.connect_timeout),
            upstream_host: t.authority.as_str().as_bytes().to_vec(),
            response_timeout: config.upstream_timeout,
            connect_timeout: config.connect_timeout,
            metrics,
        })
    }
}
