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
pub use crate::cli::{Command, Invocation, ProxyCommand};
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
    pub use crate::proxy::h1::heads::finish_head;
    pub use crate::proxy::h1::request::{Classified, McpFields, Rules, classify};
    pub use crate::proxy::headers::ForwardHeaders;
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
        let proxy = Proxy::new(config, port, stops.clone(), None, None, None, None).ok()?;
        proxy.fast_path()?;
        Some(OwnProxy { proxy, stops, config: Arc::new(config.clone()) })
    }

    /// An engine on the current runtime: a new pool of connections to the target (its
    /// idle reaper runs on this runtime), and no shutdown begun.
    pub fn engine(&self) -> Option<OwnEngine> {
        let fast = FastPath::for_config(&self.config, None)?;
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

/// The MCP policy's request step (`policy::McpPolicy::admit`), for the `mcp_request` fuzz
/// target: a policy built from Cedar policy text and a tool view, judging request bodies
/// with the 2026-07-28 headers a client sent.
pub struct PolicyProbe(crate::policy::McpPolicy);

/// What the policy did with a request.
#[derive(Debug)]
pub enum Probed {
    /// Forwarded: the body the target gets, and its `Mcp-Name` (when the client sent one).
    Forwarded { body: Vec<u8>, mcp_name: Option<Vec<u8>>, list: bool },
    /// Answered by the proxy: status and body.
    Answered(u16, Vec<u8>),
}

impl PolicyProbe {
    /// `authz`: a ToolHive authorization config (JSON); `tools`: the `--tools` allow-list;
    /// `overrides`: a `--tools-override` file's text.
    pub fn new(authz: &str, tools: &[&str], overrides: &str) -> Result<PolicyProbe, String> {
        use crate::policy::tools::ToolView;
        let authorizer = crate::policy::authz::from_text(authz, false, "probe").map_err(|e| e.to_string())?;
        #[derive(serde::Deserialize)]
        struct File {
            #[serde(rename = "toolsOverride")]
            tools_override: std::collections::HashMap<String, crate::policy::tools::Override>,
        }
        let overrides: File = serde_json::from_str(overrides).map_err(|e| e.to_string())?;
        let allow: Vec<String> = tools.iter().map(|t| (*t).to_owned()).collect();
        let view = ToolView::new(&allow, overrides.tools_override)?;
        Ok(PolicyProbe(crate::policy::McpPolicy::new(Some(Arc::new(authorizer)), Some(Arc::new(view)), None)))
    }

    /// Judges `body` as a POST from an anonymous client.
    pub fn admit(&self, mcp_method: Option<&[u8]>, mcp_name: Option<&[u8]>, repeated: bool, body: &[u8]) -> Probed {
        use crate::policy::{Admission, Head};
        let head = Head {
            http_method: "POST",
            path: "/mcp",
            peer: std::net::IpAddr::from([127, 0, 0, 1]),
            user_agent: None,
            request_id: None,
            mcp_method,
            mcp_name,
            repeated,
        };
        match self.0.admit(&head, body, None) {
            Admission::Answer(answer) => Probed::Answered(answer.status().as_u16(), answer.body().to_vec()),
            Admission::Forward(admitted) => {
                let list = admitted.list.is_some();
                match admitted.renamed {
                    Some((body, name)) => {
                        Probed::Forwarded { body, mcp_name: mcp_name.map(|_| name.into_bytes()), list }
                    }
                    None => Probed::Forwarded { body: body.to_vec(), mcp_name: mcp_name.map(<[u8]>::to_vec), list },
                }
            }
        }
    }
}

// ------------------------------------------------------------------------------------------
// policy::authz (Cedar, `--authz-config`): for the cedarpy cross-check, tests/it/authz_table.rs.

/// A Cedar authz config, as `--authz-config` reads it, for [`cedar_explain`].
pub struct CedarConfig<'a> {
    pub text: &'a str,
    pub yaml: bool,
    /// The MCP server name resources are scoped to (`resource in MCP::"<name>"`), if any.
    pub server_name: Option<&'a str>,
}

/// One request to decide, for [`cedar_explain`].
pub struct CedarRequest<'a> {
    /// `None`: no incoming auth (principal `Client::"anonymous"`).
    pub subject: Option<&'a str>,
    /// A JSON object of token claims.
    pub claims: &'a serde_json::Value,
    /// `call_tool`, `get_prompt` or `read_resource`.
    pub action: &'a str,
    pub resource: &'a str,
    /// A JSON object of tool or prompt arguments.
    pub arguments: Option<&'a serde_json::Value>,
    /// A tool's `annotations` object, as a server's tools/list would give it.
    pub annotations: Option<&'a serde_json::Value>,
}

/// Loads `config`, decides `request` with `Authorizer::allows` and `Authorizer::explain`
/// (an error if they disagree), and returns the decision with the Cedar request evaluated.
pub fn cedar_explain(
    config: &CedarConfig<'_>,
    request: &CedarRequest<'_>,
) -> Result<(bool, serde_json::Value), String> {
    use crate::policy::authz::{self, Action, Principal, ToolAnnotations};
    let mut authorizer = authz::from_text(config.text, config.yaml, "table").map_err(|e| e.to_string())?;
    if let Some(name) = config.server_name {
        authorizer = authorizer.with_server_name(name);
    }
    let action = match request.action {
        "call_tool" => Action::CallTool,
        "get_prompt" => Action::GetPrompt,
        "read_resource" => Action::ReadResource,
        other => return Err(format!("unknown action {other:?}")),
    };
    let claims = request.claims.as_object().ok_or("claims must be a JSON object")?;
    let arguments = match request.arguments {
        Some(value) => Some(value.as_object().ok_or("arguments must be a JSON object")?),
        None => None,
    };
    let annotations = request.annotations.and_then(|value| {
        let mut tool = serde_json::Map::new();
        tool.insert("annotations".to_owned(), value.clone());
        ToolAnnotations::from_tool(&tool)
    });
    let who = Principal { subject: request.subject, claims };
    let allowed = authorizer.allows(&who, action, request.resource, arguments, annotations.as_ref());
    let (explained, cedar_request) =
        authorizer.explain(&who, action, request.resource, arguments, annotations.as_ref());
    if allowed != explained {
        return Err(format!("allows() said {allowed}, explain() said {explained}"));
    }
    Ok((allowed, cedar_request))
}

// ------------------------------------------------------------------------------------------
// policy::filter (MCP list answers filtered by policy): for the `list_rewrite` fuzz target.

/// The list-answer rewriter (`policy::filter`), for the `list_rewrite` target.
pub mod list_filter {
    pub use crate::policy::filter::{Judge, ListKind, ListRewrite, Message, TooLarge, rewrite_message};
}

// ------------------------------------------------------------------------------------------
// telemetry (trace context in request bodies): for the `trace_context` fuzz target.

/// Telemetry's reading of a request body and its `_meta.traceparent` rewrite.
pub mod trace_context {
    use crate::telemetry::trace::TraceParent;
    use crate::telemetry::{Propagate, meta_trace};

    /// The `traceparent` a body's `_meta` carries (as the server reads it), if valid.
    pub fn meta_traceparent(body: &[u8]) -> Option<[u8; 55]> {
        let p = crate::mcp::peek::peek(body)?;
        meta_trace(&p).map(|(t, _)| t.render())
    }

    /// `body` with its valid `_meta.traceparent` replaced by one of the same trace naming the
    /// span `span` (what the target gets); `None` when it has none.
    pub fn rewrite(body: &[u8], span: [u8; 8]) -> Option<(Vec<u8>, [u8; 55])> {
        let p = crate::mcp::peek::peek(body)?;
        let (parent, at) = meta_trace(&p)?;
        let traceparent = TraceParent { parent_id: span, ..parent }.render();
        let propagate = Propagate { traceparent, body_at: Some(at), meta_state: None };
        Some((propagate.in_body(body, at), traceparent))
    }

    /// A `traceparent` value read and written back (`None` when invalid).
    pub fn round_trip(value: &[u8]) -> Option<[u8; 55]> {
        TraceParent::parse(value).map(|t| t.render())
    }
}
