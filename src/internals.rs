//! For the fuzz targets (`fuzz/`) and the integration tests (`tests/it/`) only; not part of
//! `thv`'s interface: hidden from the documentation, changed together with its users.
//!
//! It re-exports exactly the internals they use (every other item of the crate is
//! `pub(crate)` or private), and adds a hook of its own for the `h1_conn` target:
//!
//! [`OwnEngine::serve`] serves one accepted client connection the way the server's accept
//! loop does (`server::serve_connection`): the same `Proxy` built from a [`Config`], the
//! same per-connection deadlines and watchdog, the same `h1::conn::serve`. It stops where
//! the own HTTP/1.1 path would hand the connection to hyper, and says so: the fuzz target
//! drives the own engine's connection state machine, and hyper's side is hyper's.
//!
//! It binds nothing: the caller accepts connections on a listener of its own, so a target
//! can run the engine on a runtime of its choice (one per input, on a paused clock, in
//! `h1_conn`). The split in two follows the costs: [`OwnProxy`] loads the trust store
//! (milliseconds) and is made once; [`OwnEngine`] holds what belongs to one runtime (the
//! target's connection pool, whose sockets are registered with that runtime) and is cheap.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpStream;

use crate::proxy::deadline::{Deadlines, Drain};
use crate::proxy::h1::FastPath;
use crate::proxy::h1::conn::{self, Outcome};
use crate::proxy::{Proxy, StreamStops};

pub use crate::cli::values::{parse_go_duration, parse_size};
pub use crate::cli::{Command, Invocation};
pub use crate::config::{Config, Environment, OutboundConfig};
pub use crate::inbound::bearer::bearer_token;
pub use crate::inbound::jose::Algorithm;
pub use crate::inbound::jwks::{JwksCache, KeySet};
pub use crate::inbound::jwt::JwtValidator;
pub use crate::mcp::jsonrpc::request_id;
pub use crate::mcp::sse::{EndpointRewrite, SseBody};
pub use crate::net::{is_local_host, is_loopback_host, normalize_origin};
pub use crate::oauth::challenge::{BearerChallenge, BearerError, Challenge, find_bearer, parse_challenges, sanitise};
pub use crate::oauth::http::{ControlClient, UrlPolicy};
pub use crate::oauth::metadata::{
    AuthorizationServerMetadata, ProtectedResourceMetadata, protected_resource_urls, well_known_urls,
};
pub use crate::outbound::discover::resource_matches;

/// The own HTTP/1.1 path's body framing (`proxy::h1::body`), for the `h1` target.
pub mod body {
    pub use crate::proxy::h1::body::{BodyError, Decoder, Framing, LAST_CHUNK, frame_chunk};
}

/// The own HTTP/1.1 path's request classifier (`proxy::h1::request`), for the `h1` target.
pub mod request {
    pub use crate::proxy::h1::request::{Classified, Rules, classify};
}

/// The own HTTP/1.1 path's response parser (`proxy::h1::response`), for the `h1` target.
pub mod response {
    pub use crate::proxy::h1::response::{Exchange, Parsed, parse};
}

/// The proxy service for a configuration the own path applies to. Cheap to clone.
#[derive(Clone)]
pub struct OwnProxy {
    proxy: Proxy,
    stops: StreamStops,
    config: Arc<Config>,
}

/// The own HTTP/1.1 engine on the current runtime, without a listener.
pub struct OwnEngine {
    proxy: OwnProxy,
    fast: FastPath,
    drain: Drain,
}

/// How the own engine left a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Served {
    /// It closed the connection.
    Closed,
    /// It would have handed the connection (and the bytes it read) to hyper.
    HandedToHyper,
}

impl OwnProxy {
    /// The proxy for `config` as if it listened on `port` (the port only names the proxy
    /// in its own answers); `None` when the own path does not apply to `config` (see
    /// `FastPath::for_config`) or it asks for incoming authentication, which needs
    /// discovery first.
    pub fn new(config: &Config, port: u16) -> Option<OwnProxy> {
        if config.inbound.is_some() {
            return None;
        }
        let stops = StreamStops::default();
        let proxy = Proxy::new(config, port, stops.clone(), None, None).ok()?;
        proxy.fast_path()?;
        Some(OwnProxy { proxy, stops, config: Arc::new(config.clone()) })
    }

    /// An engine on the current runtime: a new pool of connections to the target (its
    /// idle reaper runs on this runtime), and no shutdown begun.
    pub fn engine(&self) -> Option<OwnEngine> {
        let fast = FastPath::for_config(&self.config)?;
        Some(OwnEngine { proxy: self.clone(), fast, drain: Drain::default() })
    }

    /// Whether [`OwnEngine::begin_shutdown`] was called on one of its engines: its stream
    /// stops are spent, so build a new `OwnProxy` for the next run.
    pub fn shut_down(&self) -> bool {
        self.stops.listening.is_cancelled()
    }
}

impl OwnEngine {
    /// Serves `client` (accepted from `peer`) on the own path until it closes or would
    /// go to hyper.
    pub async fn serve(&self, client: TcpStream, peer: SocketAddr) -> Served {
        // As the server does: small writes leave at once.
        let _ = client.set_nodelay(true);
        let p = &self.proxy;
        let (deadlines, mut watchdog) = Deadlines::new(p.config.header_timeout, &self.drain);
        let max_head = p.config.max_header_size;
        match conn::serve(client, peer, p.proxy.policy(), &self.fast, &deadlines, &mut watchdog, max_head).await {
            Outcome::Closed => Served::Closed,
            Outcome::Fallback(..) => Served::HandedToHyper,
        }
    }

    /// Begins a graceful shutdown as SIGINT/SIGTERM does in the server: standalone GET
    /// event streams end, and every connection finishes its request and closes.
    pub fn begin_shutdown(&self) {
        self.proxy.stops.listening.cancel();
        self.drain.start();
    }
}
