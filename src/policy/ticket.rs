//! The MCP policy's side of the audit log ([`super::audit`]): an event is opened when a
//! request is decided ([`Ticket`], with what the request said), and completed with the
//! answer the client got, at once or, when the log reads answers
//! (`includeResponseData`, `detectApplicationErrors`), by a [`Tap`] the engine feeds the
//! answer to and drops at its end. Nothing is written on the request path: the auditor
//! queues the line for its own thread.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::Value;

use super::audit::{self, Auditor, EventType, Outcome};
use super::{Asked, Head, McpPolicy, ask_name};
use crate::inbound::Identity;

/// An audit event waiting for its exchange's outcome.
pub(crate) struct Ticket {
    ty: EventType,
    started: Instant,
    peer: IpAddr,
    user_agent: Option<String>,
    /// `X-Request-ID`, as the client sent it.
    request_id: Option<String>,
    who: Option<Arc<Identity>>,
    http_method: String,
    path: String,
    mcp_method: Option<String>,
    name: Option<String>,
    /// At most `maxDataSize + 1` bytes: enough for the auditor to tell a body it may log.
    request: Option<Vec<u8>>,
}

impl McpPolicy {
    /// The audit event of a request, when audit is on and wants its type.
    pub(super) fn ticket(&self, asked: &Asked<'_, '_>) -> Option<Ticket> {
        let auditor = self.audit.as_ref()?;
        let Asked { head, message, ask, body, who } = *asked;
        let mcp_method = message.and_then(|m| m.method.as_deref());
        let ty = EventType::for_request(mcp_method, head.http_method == "GET");
        if !auditor.wants(ty) {
            return None;
        }
        let keep = auditor.max_data_size().saturating_add(1);
        let request = (auditor.wants_request_data() && !body.is_empty())
            .then(|| body.get(..body.len().min(keep)).unwrap_or_default().to_vec());
        Some(Ticket {
            ty,
            started: Instant::now(),
            peer: head.peer,
            user_agent: head.user_agent.map(|ua| String::from_utf8_lossy(ua).into_owned()),
            request_id: head.request_id.map(|id| String::from_utf8_lossy(id).into_owned()),
            who: who.cloned(),
            http_method: head.http_method.to_owned(),
            path: head.path.to_owned(),
            mcp_method: mcp_method.map(str::to_owned),
            name: ask.and_then(ask_name).map(str::to_owned),
            request,
        })
    }

    /// A request refused before its body was read (incoming authentication): audited as
    /// an `http_request`, its MCP content unknown.
    pub(crate) fn refused(&self, head: &Head<'_>, status: u16) {
        if let Some(ticket) = self.ticket(&Asked::head(head, &[], None)) {
            self.finished(ticket, status, None);
        }
    }

    /// The answer to the exchange of `ticket` has begun with `status`: its audit event is
    /// completed now, or, when the audit reads the answer (`includeResponseData`, or
    /// `detectApplicationErrors`, on by default), by the [`Tap`] the engine feeds the
    /// answer's payload to and drops at the end.
    pub(crate) fn answering(&self, ticket: Ticket, status: u16) -> Option<Tap> {
        let auditor = self.audit.as_ref()?;
        let reads = auditor.wants_response_data() || auditor.detects_application_errors();
        if !reads || ticket.ty == EventType::SseConnection {
            self.finished(ticket, status, None);
            return None;
        }
        let want = auditor.max_data_size().saturating_add(1).max(audit::ERROR_DETECTION_PREFIX);
        Some(Tap { ticket: Some(ticket), auditor: auditor.clone(), status, want, seen: Vec::new(), total: 0 })
    }

    /// The exchange of `ticket` was answered with `status` (and `response`, when read):
    /// its audit line is queued.
    pub(crate) fn finished(&self, ticket: Ticket, status: u16, response: Option<&[u8]>) {
        if let Some(auditor) = &self.audit {
            log_event(auditor, ticket, status, response.map(<[u8]>::to_vec), response.map_or(0, <[u8]>::len));
        }
    }
}

/// Queues the audit event of `ticket`, answered with `status`; `response` is the start of
/// the answer's payload (`total` bytes in all), when it was read. The line is made on the
/// audit log's own thread: its id, its JSON, and the application-error check of the answer.
fn log_event(auditor: &Auditor, ticket: Ticket, status: u16, response: Option<Vec<u8>>, total: usize) {
    let at = SystemTime::now();
    let duration = ticket.started.elapsed();
    let detect = auditor.detects_application_errors();
    let keep_response = auditor.wants_response_data();
    auditor.log_later(ticket.ty, move |render| {
        let response = response.as_deref();
        let error = response.filter(|_| detect && (200..300).contains(&status)).and_then(audit::application_error);
        let outcome = if error.is_some() { Outcome::ApplicationError } else { Outcome::of_status(status) };
        // Only a whole body may be logged, and only one within `maxDataSize`.
        let response_data = response.filter(|r| keep_response && r.len() == total);
        let who = ticket.who.as_deref();
        let claim = |k: &str| who.and_then(|w| w.claims.get(k)).and_then(Value::as_str);
        let event = audit::Event {
            ty: ticket.ty,
            outcome,
            // The peer, never a forwarding header: a client could write anything there.
            source_ip: ticket.peer,
            user_agent: ticket.user_agent.as_deref(),
            request_id: ticket.request_id.as_deref(),
            subject: who.map(|w| w.subject.as_str()),
            user_name: who.and_then(|w| audit::user_from_claims(&w.claims)),
            client_name: claim("client_name"),
            client_version: claim("client_version"),
            endpoint: &ticket.path,
            http_method: &ticket.http_method,
            mcp_method: ticket.mcp_method.as_deref(),
            name: ticket.name.as_deref(),
            request_data: ticket.request.as_deref(),
            response_data,
            jsonrpc_error: error.as_ref().map(|(code, message)| (*code, message.as_str())),
            duration,
        };
        render.line(&event, at)
    });
}

/// An audit event that reads the start of its answer as the answer passes; its line is
/// queued when the tap is dropped (the answer ended, or the client left).
pub(crate) struct Tap {
    ticket: Option<Ticket>,
    auditor: Arc<Auditor>,
    status: u16,
    /// How many bytes of the answer the audit may read.
    want: usize,
    seen: Vec<u8>,
    total: usize,
}

impl Tap {
    /// The next bytes of the answer's payload (after any rewrite, as the client gets it).
    pub(crate) fn observe(&mut self, data: &[u8]) {
        self.total = self.total.saturating_add(data.len());
        let room = self.want.saturating_sub(self.seen.len());
        if room > 0 {
            self.seen.extend_from_slice(data.get(..data.len().min(room)).unwrap_or_default());
        }
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            log_event(&self.auditor, ticket, self.status, Some(std::mem::take(&mut self.seen)), self.total);
        }
    }
}
