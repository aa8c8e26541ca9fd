//! The target's response head, read and re-written for the client (RFC 9112 §4–§6,
//! RFC 9110 §7.6.1 and §6.6.1).
//!
//! Hop-by-hop fields go (`Connection`, every field it names, `Keep-Alive`,
//! `Transfer-Encoding`, …); the body's framing is the proxy's own to state. Everything
//! else passes in the target's order and spelling, reason phrase included.

use std::cell::RefCell;
use std::io::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::body::{self, Framing};
use crate::proxy::headers::{ConnectionOption, HOP_BY_HOP, connection_options, response_content_length};
use crate::proxy::policy;

/// Most response header fields accepted (hyper's client default).
const MAX_HEADERS: usize = 100;

/// What the request was, as far as the response's framing depends on it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    /// `GET`: an event stream answering it is a standalone stream (MCP) and loses any
    /// `Content-Length`, as on the hyper path.
    pub get: bool,
    /// The client connection closes after this response.
    pub close: bool,
    /// An MCP policy rewrites a successful answer (a list): its length changes.
    pub rewrite: bool,
}

/// A response head ready for the client.
#[derive(Debug)]
pub struct Plan {
    /// Length of the target's head in the buffer; the body follows.
    pub head_len: usize,
    pub status: u16,
    /// The head the client gets.
    pub head: Vec<u8>,
    pub framing: Framing,
    /// The client gets the proxy's chunks (otherwise the target's length and bytes).
    pub chunked: bool,
    /// The target connection may carry another request once the body is read.
    pub reusable: bool,
    pub event_stream: bool,
    /// A 401 whose challenge asks for an OAuth bearer token.
    pub bearer_challenge: bool,
    /// The body is rewritten on its way (see [`Exchange::rewrite`]); always chunked.
    pub rewrite: bool,
}

/// What the bytes received so far are.
#[derive(Debug)]
pub enum Parsed {
    Partial,
    /// An interim 1xx response of this many bytes, skipped (hyper's client does too).
    Informational(usize),
    Complete(Plan),
    /// `101 Switching Protocols`, which the proxy never asks for (502 on both engines).
    Upgrade,
    Invalid(&'static str),
}

/// Reads the response head at the start of `buf`.
pub fn parse(buf: &[u8], exchange: Exchange) -> Parsed {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let head_len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parsed::Partial,
        Err(httparse::Error::TooManyHeaders) => return Parsed::Invalid("too many header fields"),
        Err(_) => return Parsed::Invalid("invalid HTTP response head"),
    };
    let Some(status) = resp.code else { return Parsed::Invalid("no status") };
    match status {
        // httparse reads any three digits; HTTP status codes start at 100 (RFC 9110 §15),
        // and hyper's path refuses the others too (found by fuzzing: "002" was written
        // on as the invalid status line "HTTP/1.1 2").
        0..=99 => return Parsed::Invalid("invalid status code"),
        101 => return Parsed::Upgrade,
        100..=199 => return Parsed::Informational(head_len),
        _ => {}
    }

    // First pass: framing and the fields `Connection` names.
    let mut length: Option<u64> = None;
    let mut chunked_last = None;
    let mut reusable = resp.version == Some(1);
    let (mut event_stream, mut has_date, mut has_accel) = (false, false, false);
    let mut listed: Vec<&[u8]> = Vec::new();
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let Some(n) = response_content_length(h.value, length) else {
                return Parsed::Invalid("invalid or conflicting Content-Length");
            };
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            let last = h.value.rsplit(|&b| b == b',').next().unwrap_or_default().trim_ascii();
            chunked_last = Some(last.eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case("connection") {
            for option in connection_options(h.value) {
                match option {
                    ConnectionOption::Close => reusable = false,
                    ConnectionOption::KeepAlive => {}
                    ConnectionOption::Field(name) => listed.push(name),
                }
            }
        } else if name.eq_ignore_ascii_case("content-type") {
            event_stream = policy::is_event_stream(h.value);
        } else if name.eq_ignore_ascii_case("date") {
            has_date = true;
        } else if name.eq_ignore_ascii_case(policy::NO_BUFFERING.0) {
            has_accel = true;
        }
    }
    let no_body = status == 204 || status == 304;
    let framing = match (chunked_last, length) {
        _ if no_body => Framing::Empty,
        (Some(true), _) => Framing::Chunked,
        // RFC 9112 §6.3: another final coding is read until the connection closes.
        (Some(false), _) => Framing::Close,
        (None, Some(n)) => Framing::Length(n),
        (None, None) => Framing::Close,
    };
    if chunked_last.is_some() && length.is_some() {
        // Both framings at once: answer this one, but never trust that connection again.
        reusable = false;
    }
    if framing == Framing::Close {
        reusable = false;
    }

    // Second pass: the client's head.
    let mut out = Vec::with_capacity(head_len.saturating_add(64));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa::Buffer::new().format(status).as_bytes());
    out.push(b' ');
    match resp.reason {
        Some(reason) if !reason.is_empty() => out.extend_from_slice(reason.as_bytes()),
        _ => out.extend_from_slice(
            http::StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("").as_bytes(),
        ),
    }
    out.extend_from_slice(b"\r\n");
    let mut bearer_challenge = false;
    for h in resp.headers.iter() {
        let name = h.name;
        if is_hop_by_hop(name)
            || name.eq_ignore_ascii_case("content-length")
            || listed.iter().any(|l| l.eq_ignore_ascii_case(name.as_bytes()))
        {
            continue;
        }
        if status == 401 && name.eq_ignore_ascii_case("www-authenticate") {
            bearer_challenge |= std::str::from_utf8(h.value)
                .is_ok_and(|v| crate::oauth::challenge::find_bearer(std::iter::once(v)).is_some());
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let standalone_stream = event_stream && policy::standalone_stream(exchange.get);
    // A GET's answer is filtered only as an event stream (a standalone stream may carry
    // list answers; see `policy::ListPlan`).
    let rewrite = exchange.rewrite
        && crate::policy::rewrites(status)
        && framing != Framing::Empty
        && (!exchange.get || event_stream);
    let chunked = match framing {
        Framing::Empty => {
            // A 304 (or an answer to HEAD, which never comes here) may state the length
            // the full answer would have.
            if let (Some(n), 304) = (length, status) {
                body::content_length_line(&mut out, n);
            }
            false
        }
        Framing::Length(n) if !standalone_stream && !rewrite => {
            body::content_length_line(&mut out, n);
            false
        }
        _ => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n");
            true
        }
    };
    if event_stream && !has_accel {
        let (name, value) = policy::NO_BUFFERING;
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if !has_date {
        write_date(&mut out);
    }
    if exchange.close {
        out.extend_from_slice(b"connection: close\r\n");
    }
    out.extend_from_slice(b"\r\n");
    Parsed::Complete(Plan {
        head_len,
        status,
        head: out,
        framing,
        chunked,
        reusable,
        event_stream,
        bearer_challenge,
        rewrite,
    })
}

/// The fields hyper's path removes as hop-by-hop (`headers::HOP_BY_HOP`), in any case as
/// the target spelled them.
fn is_hop_by_hop(name: &str) -> bool {
    HOP_BY_HOP.iter().any(|h| h.eq_ignore_ascii_case(name))
}

thread_local! {
    /// `Date: <IMF-fixdate>\r\n` for the current second (RFC 9110 §6.6.1: a proxy adds
    /// `Date` to a response that lacks one), formatted once a second per thread.
    static DATE: RefCell<(u64, Vec<u8>)> = const { RefCell::new((0, Vec::new())) };
}

/// Appends a `date` field with the current time.
pub(crate) fn write_date(out: &mut Vec<u8>) {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_secs();
    DATE.with_borrow_mut(|(at, line)| {
        if *at != secs || line.is_empty() {
            line.clear();
            let _ = write!(line, "date: {}\r\n", httpdate::fmt_http_date(now));
            *at = secs;
        }
        out.extend_from_slice(line);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET: Exchange = Exchange { get: true, close: false, rewrite: false };
    const POST: Exchange = Exchange { get: false, close: false, rewrite: false };

    fn complete(raw: &[u8], ex: Exchange) -> Plan {
        match parse(raw, ex) {
            Parsed::Complete(p) => p,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn hop_by_hop_fields_go_and_the_rest_passes_in_order() {
        let raw = b"HTTP/1.1 200 Fine\r\nDate: x\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: t=5\r\n\
Mcp-Session-Id: s\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\nok";
        let p = complete(raw, POST);
        assert_eq!(p.head_len, raw.len() - 2);
        assert_eq!(p.framing, Framing::Length(2));
        assert!(p.reusable && !p.chunked && !p.event_stream);
        assert_eq!(
            String::from_utf8(p.head).unwrap(),
            "HTTP/1.1 200 Fine\r\nDate: x\r\nMcp-Session-Id: s\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n"
        );
    }

    #[test]
    fn framing_follows_rfc_9112_section_6_3() {
        let chunked = complete(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n", POST);
        assert_eq!(chunked.framing, Framing::Chunked);
        assert!(chunked.chunked && chunked.reusable);
        let close = complete(b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n", POST);
        assert_eq!(close.framing, Framing::Close);
        assert!(!close.reusable);
        let both = complete(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n", POST);
        assert_eq!(both.framing, Framing::Chunked);
        assert!(!both.reusable, "a connection that sent both framings is not reused");
        let none = complete(b"HTTP/1.1 200 OK\r\n\r\n", POST);
        assert_eq!(none.framing, Framing::Close);
        let old = complete(b"HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n", POST);
        assert!(!old.reusable);
        assert!(String::from_utf8(old.head).unwrap().starts_with("HTTP/1.1 200 OK\r\n"));
        let no_content = complete(b"HTTP/1.1 204 No Content\r\ncontent-length: 7\r\n\r\n", POST);
        assert_eq!(no_content.framing, Framing::Empty);
        assert!(!String::from_utf8(no_content.head).unwrap().contains("content-length"));
        let closing = complete(b"HTTP/1.1 202 Accepted\r\nconnection: close\r\ncontent-length: 0\r\n\r\n", POST);
        assert!(!closing.reusable);
    }

    #[test]
    fn a_standalone_event_stream_is_chunked_and_marked_unbuffered() {
        let raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 100\r\n\r\n";
        let p = complete(raw, GET);
        assert!(p.event_stream && p.chunked);
        let head = String::from_utf8(p.head).unwrap();
        assert!(head.contains("x-accel-buffering: no\r\n") && !head.contains("content-length"), "{head}");
        assert!(head.contains("\r\ndate: "), "a Date is added when the target sent none: {head}");
        let p = complete(raw, POST);
        assert!(!p.chunked, "an event stream answering a POST keeps its length");
    }

    #[test]
    fn interim_and_broken_heads() {
        assert!(matches!(parse(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200", POST), Parsed::Informational(25)));
        assert!(matches!(parse(b"HTTP/1.1 101 Switching\r\n\r\n", POST), Parsed::Upgrade));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\ncontent-le", POST), Parsed::Partial));
        assert!(matches!(parse(b"garbage\r\n\r\n", POST), Parsed::Invalid(_)));
        assert!(matches!(parse(b"HTTP/1.1 002 OK\r\n\r\n", POST), Parsed::Invalid(_)));
        assert!(matches!(
            parse(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n", POST),
            Parsed::Invalid(_)
        ));
        assert!(matches!(parse(b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", POST), Parsed::Invalid(_)));
    }

    #[test]
    fn a_bearer_challenge_is_noticed_and_close_is_announced() {
        let raw = b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer resource_metadata=\"x\"\r\ncontent-length: 0\r\n\r\n";
        let p = complete(raw, Exchange { get: false, close: true, rewrite: false });
        assert!(p.bearer_challenge);
        assert!(String::from_utf8(p.head).unwrap().ends_with("connection: close\r\n\r\n"));
        let basic = b"HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Basic realm=\"x\"\r\ncontent-length: 0\r\n\r\n";
        assert!(!complete(basic, POST).bearer_challenge);
    }
}
