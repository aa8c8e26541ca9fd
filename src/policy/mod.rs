//! MCP-aware policy: who may call which tool, get which prompt, read which resource
//! (Cedar, `--authz-config`, [`authz`]); which tools a client sees and under which name
//! (`--tools`, `--tools-override`, [`tools`]); the list answers rewritten to match
//! ([`filter`]); and the audit trail of MCP calls (`--enable-audit`, `--audit-config`,
//! [`audit`]). ToolHive's file formats and flag names, unchanged.
//!
//! Both engines call [`McpPolicy::admit`] once a request's body is whole, and nothing
//! else: the steps below are plain functions in the order they run (agentgateway's shape),
//! each refusing with a small typed [`Refusal`] that one place turns into the answer.
//! Decisions are made on the body the server will act on ([`crate::mcp::request`]), never
//! on a header a client can forge. The audit log's side is [`ticket`]; the judge of listed
//! items, [`judge`].
//!
//! 1. [`refuse_unreadable`]: with any policy configured, a batch, a body that is not one
//!    JSON-RPC object, or params the server would read differently are refused (400),
//!    never forwarded: a policy cannot decide on what it cannot read.
//! 2. [`check_headers`]: a 2026-07-28 `Mcp-Method`/`Mcp-Name` that disagrees with the body
//!    is refused (400, -32020).
//! 3. [`McpPolicy::resolve_tool`]: a call on a tool the view hides is answered as a call to
//!    an unknown tool; a call on a new name goes to the server under the original one.
//! 4. [`McpPolicy::authorize`]: `tools/call`, `prompts/get` and `resources/read` are
//!    decided by Cedar on the server's names (403 when denied, the same answer whether
//!    the item exists or not).
//! 5. List methods always pass, and their answers are filtered ([`ListPlan`]).
//!
//! Unconfigured, none of this exists: the proxy holds `None` and never parses a body.

pub(crate) mod audit;
pub(crate) mod authz;
pub(crate) mod filter;
mod judge;
mod ticket;
pub(crate) mod tools;

use std::borrow::Cow;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use http::StatusCode;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tracing::info;

use crate::config::PolicyConfig;
use crate::inbound::Identity;
use crate::mcp::request::{Ask, Body, HEADER_MISMATCH, INVALID_PARAMS, Message, PARSE_ERROR, headers_agree};
use crate::proxy::respond::{self, INVALID_REQUEST, Local};
use crate::telemetry::metrics::{Count, Metrics};
use audit::Auditor;
use authz::{Action, Authorizer, Principal, ToolAnnotations};
use filter::{Judge, ListKind, ListRewrite};
use judge::ListJudge;
pub(crate) use ticket::{Tap, Ticket};
use tools::{Resolved, ToolView};

/// The most of a list answer held at once to rewrite it (a JSON body, or one SSE event).
/// A server's whole tool list is rarely over a few hundred KiB.
const LIST_ANSWER_LIMIT: usize = 16 << 20;

/// ToolHive's JSON-RPC code and message for a request its authorizer denied
/// (`pkg/mcp/errors.go`: `JSONRPCCodeDenied`), over HTTP 403.
const DENIED_CODE: i32 = 403;
const DENIED_MESSAGE: &str = "Unauthorized";
/// ToolHive's answer to a call on a filtered tool, over HTTP 200: the one an unknown tool
/// gets (`pkg/mcp/tool_filter.go`), so a hidden tool cannot be told from a missing one.
const TOOL_NOT_FOUND: &str = "tool not found";

/// The facts of a request head that policy reads, as either engine has them.
pub(crate) struct Head<'a> {
    pub(crate) http_method: &'a str,
    /// Without its query.
    pub(crate) path: &'a str,
    pub(crate) peer: IpAddr,
    pub(crate) user_agent: Option<&'a [u8]>,
    /// `X-Request-ID`, for the audit log.
    pub(crate) request_id: Option<&'a [u8]>,
    /// MCP 2026-07-28 `Mcp-Method` and `Mcp-Name`.
    pub(crate) mcp_method: Option<&'a [u8]>,
    pub(crate) mcp_name: Option<&'a [u8]>,
    /// `Mcp-Method` or `Mcp-Name` came more than once: the server might read either copy.
    pub(crate) repeated: bool,
}

/// The policy, built once at startup.
pub(crate) struct McpPolicy {
    authz: Option<Arc<Authorizer>>,
    tools: Option<Arc<ToolView>>,
    audit: Option<Arc<Auditor>>,
    /// Each tool's annotations as the server's own `tools/list` answers gave them (never a
    /// client's), for policies on `readOnlyHint` and the like.
    annotations: Arc<RwLock<HashMap<String, ToolAnnotations>>>,
    /// Counts refusals by reason (telemetry on).
    metrics: Option<Arc<Metrics>>,
}

/// What becomes of a request.
pub(crate) enum Admission {
    /// Forward it.
    Forward(Admitted),
    /// Answer it here; the server never sees it.
    Answer(Local),
}

/// A call on a renamed tool: the body the server gets, and the server's name for `Mcp-Name`.
type Renamed = (Vec<u8>, String);

/// A request that may go to the server, and what the proxy must do on the way.
#[derive(Default)]
pub(crate) struct Admitted {
    /// The body the server gets instead of the client's: a call on a renamed tool, sent
    /// under the server's name.
    pub(crate) renamed: Option<Renamed>,
    /// The answer is a list to filter.
    pub(crate) list: Option<ListPlan>,
    /// The audit event to complete when the exchange ends.
    pub(crate) audit: Option<Ticket>,
}

/// What a request asked, as far as the policy has read it: what its audit event says.
#[derive(Clone, Copy)]
struct Asked<'r, 'a> {
    head: &'r Head<'a>,
    message: Option<&'r Message<'a>>,
    ask: Option<&'r Ask<'a>>,
    body: &'a [u8],
    who: Option<&'r Arc<Identity>>,
}

impl<'r, 'a> Asked<'r, 'a> {
    /// A request of which only the head is read.
    fn head(head: &'r Head<'a>, body: &'a [u8], who: Option<&'r Arc<Identity>>) -> Asked<'r, 'a> {
        Asked { head, message: None, ask: None, body, who }
    }
}

/// How to filter list answers for one client: the answer to its list request (id and
/// kind), or, on a standalone GET stream, every list answer the stream carries. The legacy
/// HTTP+SSE transport answers every POST on that stream, and a resumed stream
/// (`Last-Event-ID`) replays a POST's answers there: without this, a list would reach the
/// client unfiltered on both.
pub(crate) struct ListPlan {
    answer: Option<(Box<RawValue>, ListKind)>,
    judge: Arc<dyn Judge>,
}

impl ListPlan {
    /// The rewriter for an answer of this content type (a JSON body or an event stream).
    pub(crate) fn rewriter(self, event_stream: bool) -> ListRewrite {
        match self.answer {
            Some((id, kind)) => ListRewrite::new(event_stream, id, kind, self.judge, LIST_ANSWER_LIMIT),
            None => ListRewrite::any_list(self.judge, LIST_ANSWER_LIMIT),
        }
    }
}

/// Whether an answer with this status is one a list plan rewrites: only 2xx (ToolHive's
/// `response_filter.go`: an error body is not a list). Whatever its content type: an event
/// stream is rewritten event by event, anything else as one JSON body, which fails closed
/// when it cannot be read (a list mislabelled to slip past the filter, ToolHive #5257).
pub(crate) fn rewrites(status: u16) -> bool {
    (200..300).contains(&status)
}

impl McpPolicy {
    /// The policy for `config`; starts the audit writer (inside the runtime).
    pub(crate) fn start(config: &PolicyConfig) -> Result<McpPolicy, audit::AuditError> {
        let audit = match &config.audit {
            Some(c) => Some(Auditor::start((**c).clone())?),
            None => None,
        };
        Ok(McpPolicy::new(config.authz.clone(), config.tools.clone(), audit.map(Arc::new)))
    }

    /// A policy of these parts.
    pub(crate) fn new(
        authz: Option<Arc<Authorizer>>,
        tools: Option<Arc<ToolView>>,
        audit: Option<Arc<Auditor>>,
    ) -> McpPolicy {
        McpPolicy { authz, tools, audit, annotations: Arc::default(), metrics: None }
    }

    /// The policy, counting its refusals into `metrics` (`thv_policy_denials`).
    pub(crate) fn with_metrics(self, metrics: Option<Arc<Metrics>>) -> McpPolicy {
        McpPolicy { metrics, ..self }
    }

    /// Whether Cedar or the audit log read tokens' claims (incoming auth then keeps them).
    pub(crate) fn needs_claims(config: &PolicyConfig) -> bool {
        config.authz.is_some() || config.audit.is_some()
    }

    /// The audit writer, to close at shutdown.
    pub(crate) fn auditor(&self) -> Option<&Auditor> {
        self.audit.as_deref()
    }

    /// Decides one request whose body is whole, for the client `who` (`None`: no incoming
    /// auth, the anonymous principal). The steps are the module's, in its order.
    pub(crate) fn admit(&self, head: &Head<'_>, body: &[u8], who: Option<&Arc<Identity>>) -> Admission {
        let read = Body::read(body);
        let mut asked = Asked::head(head, body, who);
        let message = match refuse_unreadable(&read) {
            Ok(Some(message)) => message,
            Ok(None) => {
                let list = (head.http_method == "GET").then(|| self.judge(None, who)).flatten();
                return Admission::Forward(Admitted { audit: self.ticket(&asked), list, ..Admitted::default() });
            }
            Err(refusal) => return self.answered(&asked, refusal),
        };
        asked.message = Some(message);
        let Ok(ask) = message.ask() else { return self.answered(&asked, Refusal::Params) };
        if let Err(refusal) = check_headers(head, message, &ask) {
            return self.answered(&Asked { ask: Some(&ask), ..asked }, refusal);
        }
        let (ask, renamed) = match self.resolve_tool(ask, body) {
            Ok(resolved) => resolved,
            Err(refusal) => return self.answered(&asked, refusal),
        };
        let asked = Asked { ask: Some(&ask), ..asked };
        if let Err(refusal) = self.authorize(message, &ask, who) {
            return self.answered(&asked, refusal);
        }
        Admission::Forward(Admitted { renamed, list: self.list_plan(message, who), audit: self.ticket(&asked) })
    }

    /// Step 3: the server's name for a called tool. A hidden tool is refused as unknown;
    /// a renamed one gets a new body naming the original.
    fn resolve_tool<'a>(&self, ask: Ask<'a>, body: &[u8]) -> Result<(Ask<'a>, Option<Renamed>), Refusal> {
        let (Some(view), Ask::CallTool { name, arguments }) = (&self.tools, &ask) else { return Ok((ask, None)) };
        match view.resolve(name) {
            Resolved::Hidden => Err(Refusal::UnknownTool),
            Resolved::Tool(original) if original == name.as_ref() => Ok((ask, None)),
            Resolved::Tool(original) => {
                let original = original.to_owned();
                let renamed = with_tool_name(body, &original).ok_or(Refusal::Params)?;
                let arguments = arguments.clone();
                Ok((Ask::CallTool { name: Cow::Owned(original.clone()), arguments }, Some((renamed, original))))
            }
        }
    }

    /// Step 4: Cedar's decision on a call, get or read, on the server's names.
    fn authorize(&self, message: &Message<'_>, ask: &Ask<'_>, who: Option<&Arc<Identity>>) -> Result<(), Refusal> {
        let Some(authz) = &self.authz else { return Ok(()) };
        let principal = principal(who);
        let mut unknown_annotations = false;
        let allowed = match ask {
            Ask::CallTool { name, arguments } => {
                // Looked up only when a policy can read them.
                let annotations = authz
                    .reads_annotations()
                    .then(|| self.annotations.read().ok().and_then(|a| a.get(name.as_ref()).cloned()))
                    .flatten();
                // Fail closed: a `forbid` on `destructiveHint` must not pass a tool whose
                // hints the proxy has not seen (only the server's own list says them).
                unknown_annotations = annotations.is_none() && authz.reads_annotations();
                !unknown_annotations
                    && authz.allows(&principal, Action::CallTool, name, arguments.as_ref(), annotations.as_ref())
            }
            Ask::GetPrompt { name, arguments } => {
                authz.allows(&principal, Action::GetPrompt, name, arguments.as_ref(), None)
            }
            Ask::ReadResource { uri } => authz.allows(&principal, Action::ReadResource, uri, None, None),
            Ask::Other => true,
        };
        if allowed {
            return Ok(());
        }
        let why = if unknown_annotations {
            "the policies read tool annotations, and no tools/list answer from the MCP server has named this tool's yet"
        } else {
            "no policy permits it, or one forbids it"
        };
        info!(
            subject = principal.subject.unwrap_or("anonymous"),
            method = message.method.as_deref().unwrap_or_default(),
            name = ask_name(ask).unwrap_or_default(),
            why,
            "denied by the authorization policy"
        );
        Err(Refusal::Denied)
    }

    /// Step 5: a list request's answer is filtered when a policy or the tool view has a
    /// say on its items.
    fn list_plan(&self, message: &Message<'_>, who: Option<&Arc<Identity>>) -> Option<ListPlan> {
        let kind = ListKind::of_method(message.method.as_deref()?)?;
        let id = message.id()?;
        self.judge(Some((id.to_owned(), kind)), who)
    }

    /// The plan that filters `answer` (or, `None`, every list on a standalone stream) for
    /// `who`, when a policy or the tool view has a say on the items.
    fn judge(&self, answer: Option<(Box<RawValue>, ListKind)>, who: Option<&Arc<Identity>>) -> Option<ListPlan> {
        let tools_only = answer.as_ref().is_some_and(|(_, kind)| *kind == ListKind::Tools);
        let applies = self.authz.is_some() || (self.tools.is_some() && (tools_only || answer.is_none()));
        applies.then(|| ListPlan {
            answer,
            judge: Arc::new(ListJudge {
                authz: self.authz.clone(),
                tools: self.tools.clone(),
                annotations: self.annotations.clone(),
                who: who.cloned(),
            }),
        })
    }

    /// A request answered here, with the answer `refusal` makes; audited when audit is on.
    fn answered(&self, asked: &Asked<'_, '_>, refusal: Refusal) -> Admission {
        let answer = refusal.answer(asked.message.and_then(Message::id));
        if let Some(metrics) = &self.metrics {
            metrics.count(Count::PolicyDenial(refusal.metric_reason()));
        }
        if let Some(ticket) = self.ticket(asked) {
            self.finished(ticket, answer.status().as_u16(), Some(answer.body()));
        }
        Admission::Answer(answer)
    }
}

/// Step 1: the one JSON-RPC message of a body, `None` for no body.
fn refuse_unreadable<'a, 'b>(read: &'b Body<'a>) -> Result<Option<&'b Message<'a>>, Refusal> {
    match read {
        Body::Empty => Ok(None),
        Body::Message(message) => Ok(Some(message)),
        Body::Batch => Err(Refusal::Batch),
        Body::Unreadable => Err(Refusal::Unreadable),
    }
}

/// Step 2: `Mcp-Method`/`Mcp-Name` must say what the body says.
fn check_headers(head: &Head<'_>, message: &Message<'_>, ask: &Ask<'_>) -> Result<(), Refusal> {
    if !head.repeated && headers_agree(head.mcp_method, head.mcp_name, message, ask) {
        Ok(())
    } else {
        Err(Refusal::HeaderMismatch)
    }
}

/// Why the policy answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// A JSON-RPC batch: refused whole, as ToolHive does (#5931). Batches left MCP in
    /// 2025-06-18, and deciding element by element would mean splitting the server's answer
    /// and filtering lists inside it, all for a revision no current client speaks.
    Batch,
    /// Not one JSON-RPC object, or a field given twice.
    Unreadable,
    /// Params of a decided-on method the server would read otherwise.
    Params,
    /// MCP 2026-07-28 `Mcp-Method`/`Mcp-Name` disagree with the body, or came twice.
    HeaderMismatch,
    /// A tool the view hides, or a renamed tool's old name.
    UnknownTool,
    /// Cedar said no (or nothing permitted it).
    Denied,
}

impl Refusal {
    /// The `reason` label of `thv_policy_denials`.
    fn metric_reason(self) -> &'static str {
        match self {
            Refusal::Batch => "batch",
            Refusal::Unreadable => "unreadable",
            Refusal::Params => "params",
            Refusal::HeaderMismatch => "header_mismatch",
            Refusal::UnknownTool => "unknown_tool",
            Refusal::Denied => "denied",
        }
    }

    /// The one place a refusal becomes an answer, echoing the request's `id`.
    fn answer(self, id: Option<&RawValue>) -> Local {
        let (status, code, message) = match self {
            Refusal::Batch => (
                StatusCode::BAD_REQUEST,
                INVALID_REQUEST,
                "JSON-RPC batches are not accepted while an MCP policy is configured; send one message per request",
            ),
            Refusal::Unreadable => (
                StatusCode::BAD_REQUEST,
                PARSE_ERROR,
                "the request body is not one JSON-RPC message the proxy's policy can read",
            ),
            Refusal::Params => {
                (StatusCode::BAD_REQUEST, INVALID_PARAMS, "the request's params cannot be read by the proxy's policy")
            }
            Refusal::HeaderMismatch => (
                StatusCode::BAD_REQUEST,
                HEADER_MISMATCH,
                "the Mcp-Method or Mcp-Name header does not match the request body",
            ),
            Refusal::UnknownTool => (StatusCode::OK, INVALID_PARAMS, TOOL_NOT_FOUND),
            Refusal::Denied => (StatusCode::FORBIDDEN, DENIED_CODE, DENIED_MESSAGE),
        };
        // Batches and unreadable bodies have no one id to echo.
        let id = id.filter(|_| !matches!(self, Refusal::Batch | Refusal::Unreadable));
        respond::jsonrpc_error(status, code, message, id)
    }
}

/// The Cedar principal for a client: its subject and claims, or the anonymous one.
fn principal(who: Option<&Arc<Identity>>) -> Principal<'_> {
    static NO_CLAIMS: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);
    match who {
        Some(w) => Principal { subject: Some(&w.subject), claims: &w.claims },
        None => Principal { subject: None, claims: &NO_CLAIMS },
    }
}

fn ask_name<'b>(ask: &'b Ask<'_>) -> Option<&'b str> {
    match ask {
        Ask::CallTool { name, .. } | Ask::GetPrompt { name, .. } => Some(name),
        Ask::ReadResource { uri } => Some(uri),
        Ask::Other => None,
    }
}

/// `body` (a `tools/call`) with `params.name` set to `name`; the rest re-serialised as read.
fn with_tool_name(body: &[u8], name: &str) -> Option<Vec<u8>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let mut message: Map<String, Value> = serde_json::from_slice(body).ok()?;
    let params = message.get_mut("params")?.as_object_mut()?;
    params.insert("name".to_owned(), Value::String(name.to_owned()));
    serde_json::to_vec(&message).ok()
}
