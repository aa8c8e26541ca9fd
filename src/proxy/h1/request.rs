//! Which requests the own HTTP/1.1 path serves, and the request it sends the target for
//! them (RFC 9112 §3, §6; RFC 9110 §7.6).
//!
//! The own path takes the plain shape of MCP traffic only: `GET`, `POST` or `DELETE` in
//! HTTP/1.1, an origin-form target of ordinary characters, exactly one `Host` that names
//! the proxy, at most one `Content-Length` and no `Transfer-Encoding`, `Expect`,
//! `Upgrade` or `Origin`. Anything else — every smuggling shape, browsers (CORS), the
//! proxy's own endpoints, heads that are too large or malformed — is *not* judged here:
//! the connection goes to hyper with the bytes already read, and gets the answer it
//! always got. So this file can only ever take fewer requests than it could, never
//! answer one differently.

use std::io::Write as _;
use std::net::IpAddr;

use super::body;
use super::shape::{Field, connection_close, field, has_bare_lf, plain_origin_form};
use crate::net;
use crate::proxy::headers::{self, ForwardHeaders};
use crate::proxy::policy;

/// Most request header fields looked at (hyper's default too; beyond it hyper answers).
const MAX_HEADERS: usize = 100;

/// Bodies up to this size are copied behind the head, so the target gets one write.
pub(crate) const INLINE_BODY: usize = 64 * 1024;

/// The fixed facts a request is judged against.
pub struct Rules<'a> {
    /// Host names accepted in `Host` (see `Guard`); `None` accepts any.
    pub hosts: Option<&'a [String]>,
    /// `--max-request-body`.
    pub max_body: usize,
    /// Incoming authentication is on: `Authorization` is the proxy's, never forwarded.
    pub consume_authorization: bool,
    /// Whether `X-Forwarded-*` describe the client to the target.
    pub describe_client: bool,
    /// The `Host` the target gets.
    pub upstream_host: &'a [u8],
    pub client_ip: IpAddr,
    /// An MCP policy or telemetry reads the request ([`McpFields`]); its head is finished
    /// after it.
    pub mcp: bool,
    /// Telemetry traces requests: the client's `traceparent` is replaced by the proxy's.
    pub trace: bool,
    /// The operator's fields for the target, which replace the client's of the same names.
    pub forward: Option<&'a ForwardHeaders>,
    /// The field an exchanged token goes in besides `Authorization`
    /// (`--token-exchange-header-name`): the client's own is not forwarded.
    pub replaced: Option<&'a str>,
}

/// Where the fields an MCP policy reads are in the client's buffer. With a policy the
/// upstream head is left open after the forwarded fields: `Mcp-Name` (which may become the
/// server's name for a renamed tool) and the body's length are written by
/// [`super::heads::finish_head`] once the policy has decided.
#[derive(Debug, Clone, Copy)]
pub struct McpFields {
    pub method: Option<(usize, usize)>,
    pub name: Option<(usize, usize)>,
    pub user_agent: Option<(usize, usize)>,
    pub request_id: Option<(usize, usize)>,
    /// `Mcp-Method` or `Mcp-Name` came twice: the server might read either.
    pub repeated: bool,
    /// `Accept-Encoding`: withheld from the target when the answer is filtered (a list the
    /// proxy must read), so the server does not compress it.
    pub accept_encoding: Option<(usize, usize)>,
    /// The target gets a `Content-Length` (there was one, or the method is POST).
    pub length_line: bool,
    /// W3C trace context and the MCP session, for telemetry.
    pub traceparent: Option<(usize, usize)>,
    pub tracestate: Option<(usize, usize)>,
    pub session: Option<(usize, usize)>,
    pub protocol: Option<(usize, usize)>,
}

impl McpFields {
    /// No fields: what a request without an MCP policy or tracing has (the default, as a
    /// constant to borrow instead of a copy to make).
    pub(crate) const NONE: McpFields = McpFields {
        method: None,
        name: None,
        user_agent: None,
        request_id: None,
        repeated: false,
        accept_encoding: None,
        length_line: false,
        traceparent: None,
        tracestate: None,
        session: None,
        protocol: None,
    };
}

impl Default for McpFields {
    /// [`McpFields::NONE`]: the one list of the struct's empty values.
    fn default() -> Self {
        Self::NONE
    }
}

/// The methods the own path serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Delete => "DELETE",
        }
    }
}

/// A request the own path serves.
#[derive(Debug)]
pub struct Plan {
    /// Length of the head in the client's buffer; the body follows it.
    pub head_len: usize,
    pub body_len: usize,
    /// Where the body ends in the client's buffer: `head_len + body_len`.
    pub end: usize,
    pub method: Method,
    /// The client asked to close the connection after this request.
    pub close: bool,
    /// Where in the client's buffer the request target, the `Host` value and (when
    /// consumed) the `Authorization` value are.
    pub target: (usize, usize),
    pub host: (usize, usize),
    pub authorization: Option<(usize, usize)>,
    /// With an MCP policy: its fields, and the upstream head is still open. Boxed: only a
    /// policy pays for it.
    pub mcp: Option<Box<McpFields>>,
    /// The head sent to the target.
    pub upstream_head: Vec<u8>,
}

impl Plan {
    /// A span of this request's head (`target`, `host`, an `authorization`) in the
    /// client's buffer `buf`.
    pub(crate) fn part(buf: &[u8], span: (usize, usize)) -> Option<&[u8]> {
        buf.get(span.0..span.1)
    }
}

/// What the bytes received so far are.
#[derive(Debug)]
pub enum Classified {
    /// Not a whole head yet.
    Partial,
    /// Served here.
    Fast(Plan),
    /// Left to hyper, which answers it as it always did.
    Fallback(Why),
}

/// Why a request is left to hyper's engine. Each is a request the own engine would have to
/// judge with rules it does not have (hyper's answers to malformed requests, CORS, the
/// local routes, chunked request bodies); none is answered differently for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Why {
    /// Not a well-formed HTTP/1.1 head (httparse refused it, another version, or a bare
    /// LF line end, whose acceptance is hyper's call: RFC 9112 §2.2).
    Malformed,
    /// A method other than GET, POST and DELETE (CONNECT, OPTIONS preflights, …).
    Method,
    /// A request target that is not plain origin-form (absolute-form, authority-form,
    /// unusual characters or broken percent-escapes).
    Target,
    /// `/health` or the RFC 9728 metadata: the proxy's own routes.
    LocalRoute,
    /// A field the own engine does not handle: `Transfer-Encoding` (chunked bodies),
    /// `Expect`, `Upgrade`, `Origin` (browsers: CORS), or a `Connection` naming a field.
    Field(&'static str),
    /// No `Host`, two of them, or one that is malformed or names another host (400/403).
    Host,
    /// Two `Content-Length`s, one that is not a plain number, or two `Authorization`s
    /// when the proxy consumes it.
    Ambiguous,
    /// A body larger than `--max-request-body` (413).
    TooLarge,
}

/// Judges the head at the start of `buf`.
pub fn classify(buf: &[u8], rules: &Rules<'_>) -> Classified {
    classify_reusing(buf, rules, None)
}

/// [`classify`], with the [`McpFields`] box of the connection's previous request to fill
/// again: a traced connection allocates it once, not once a request.
pub(crate) fn classify_reusing(buf: &[u8], rules: &Rules<'_>, spare: Option<Box<McpFields>>) -> Classified {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Classified::Partial,
        Err(_) => return Classified::Fallback(Why::Malformed),
    };
    match plan(buf, head_len, &req, rules, spare) {
        Ok(plan) => Classified::Fast(plan),
        Err(why) => Classified::Fallback(why),
    }
}

fn plan(
    buf: &[u8],
    head_len: usize,
    req: &httparse::Request<'_, '_>,
    rules: &Rules<'_>,
    spare: Option<Box<McpFields>>,
) -> Result<Plan, Why> {
    use Why::{Ambiguous, Host, Malformed};
    if req.version != Some(1) || has_bare_lf(buf.get(..head_len).ok_or(Malformed)?) {
        return Err(Malformed);
    }
    let method = match req.method.ok_or(Malformed)? {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "DELETE" => Method::Delete,
        _ => return Err(Why::Method),
    };
    let target = req.path.ok_or(Malformed)?;
    if !plain_origin_form(target.as_bytes()) {
        return Err(Why::Target);
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    if policy::local_route(path).is_some() {
        return Err(Why::LocalRoute);
    }
    // Where `s`, a part of the head that httparse returned, lies in `buf`.
    let span = |s: &[u8]| {
        let from = (s.as_ptr() as usize).checked_sub(buf.as_ptr() as usize).ok_or(Malformed)?;
        Ok::<_, Why>((from, from.checked_add(s.len()).ok_or(Malformed)?))
    };

    // Room for the forwarding fields; a small body gets room once its length is seen.
    let mut out = Vec::with_capacity(head_len.saturating_add(160));
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(rules.upstream_host);
    out.extend_from_slice(b"\r\n");

    let (mut host, mut length, mut authorization, mut close) = (None, None, None, false);
    let mut mcp = rules.mcp.then(|| match spare {
        Some(mut fields) => {
            *fields = McpFields::default();
            fields
        }
        None => Box::default(),
    });
    for h in req.headers.iter() {
        let name = h.name;
        if let Some(fields) = mcp.as_mut() {
            let is = |s: &str| name.eq_ignore_ascii_case(s);
            if is("mcp-method") {
                fields.repeated |= fields.method.replace(span(h.value)?).is_some();
            } else if is("mcp-name") {
                fields.repeated |= fields.name.replace(span(h.value)?).is_some();
                continue;
            } else if is("accept-encoding") {
                // Two are rare: hyper's engine keeps or drops them all.
                if fields.accept_encoding.replace(span(h.value)?).is_some() {
                    return Err(Ambiguous);
                }
                continue;
            } else if is("user-agent") {
                fields.user_agent = Some(span(h.value)?);
            } else if is("x-request-id") {
                fields.request_id = Some(span(h.value)?);
            } else if is("traceparent") {
                fields.traceparent = Some(span(h.value)?);
                // The proxy's own replaces it (written after the policy's fields).
                if rules.trace {
                    continue;
                }
            } else if is("tracestate") {
                // Written back after the policy's fields, or replaced by the body's own.
                if fields.tracestate.replace(span(h.value)?).is_some() && rules.trace {
                    return Err(Ambiguous);
                }
                if rules.trace {
                    continue;
                }
            } else if is("mcp-session-id") {
                fields.session = Some(span(h.value)?);
            } else if is("mcp-protocol-version") {
                fields.protocol = Some(span(h.value)?);
            }
        }
        match field(name) {
            Field::Other if headers::is_disguised(name) => continue,
            // A field the operator configured is theirs (written after these).
            Field::Other if rules.forward.is_some_and(|f| f.replaces(name)) => continue,
            Field::Other if rules.replaced.is_some_and(|r| name.eq_ignore_ascii_case(r)) => continue,
            Field::Other => {}
            Field::Refuse(name) => return Err(Why::Field(name)),
            Field::Drop => continue,
            Field::Host => {
                if host.is_some() {
                    return Err(Host);
                }
                host = Some(h.value);
                continue;
            }
            Field::ContentLength => {
                if length.is_some() {
                    return Err(Ambiguous);
                }
                let n = headers::content_length(h.value).ok_or(Ambiguous)?;
                let n = usize::try_from(n).map_err(|_| Why::TooLarge)?;
                // Read whole, a small body goes behind the head (one write to the target).
                if n <= INLINE_BODY {
                    out.reserve(n);
                }
                length = Some(n);
                continue;
            }
            Field::Connection => {
                close |= connection_close(h.value).ok_or(Why::Field("connection"))?;
                continue;
            }
            Field::Authorization if rules.consume_authorization => {
                if authorization.is_some() {
                    return Err(Ambiguous);
                }
                authorization = Some(span(h.value)?);
                continue;
            }
            Field::Authorization if rules.forward.is_some_and(|f| f.replaces(name)) => continue,
            Field::Authorization => {}
        }
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(h.value);
        out.extend_from_slice(b"\r\n");
    }
    let host = host.ok_or(Host)?;
    // A malformed or foreign Host is hyper's path to answer (400 or 403).
    let host_name = std::str::from_utf8(host).ok().and_then(net::authority_host).ok_or(Host)?;
    if let Some(allowed) = rules.hosts
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(host_name))
    {
        return Err(Host);
    }
    let body_len = length.unwrap_or(0);
    if body_len > rules.max_body {
        return Err(Why::TooLarge);
    }
    let end = head_len.checked_add(body_len).ok_or(Why::TooLarge)?;
    if let Some(fields) = rules.forward {
        fields.write(&mut out);
    }
    if rules.describe_client {
        out.extend_from_slice(b"x-forwarded-for: ");
        match rules.client_ip {
            IpAddr::V4(v4) if v4.octets() == [127, 0, 0, 1] => out.extend_from_slice(b"127.0.0.1"),
            ip => {
                let _ = write!(out, "{ip}");
            }
        }
        out.extend_from_slice(b"\r\nx-forwarded-host: ");
        out.extend_from_slice(host);
        out.extend_from_slice(b"\r\nx-forwarded-proto: http\r\n");
    }
    // The body is read whole first, so the target gets it framed by its exact length.
    let length_line = length.is_some() || method == Method::Post;
    match mcp.as_mut() {
        Some(fields) => fields.length_line = length_line,
        None => {
            if length_line {
                body::content_length_line(&mut out, body_len);
            }
            out.extend_from_slice(b"\r\n");
        }
    }
    Ok(Plan {
        head_len,
        body_len,
        end,
        method,
        close,
        target: span(target.as_bytes())?,
        host: span(host)?,
        authorization,
        mcp,
        upstream_head: out,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn rules(consume: bool, describe: bool) -> Rules<'static> {
        static HOSTS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
        let hosts = HOSTS.get_or_init(|| vec!["127.0.0.1".into(), "localhost".into()]);
        Rules {
            hosts: Some(hosts),
            max_body: 1000,
            consume_authorization: consume,
            describe_client: describe,
            upstream_host: b"up:9",
            client_ip: "127.0.0.1".parse().unwrap(),
            mcp: false,
            trace: false,
            forward: None,
            replaced: None,
        }
    }

    fn fast(raw: &[u8], r: &Rules<'_>) -> Plan {
        match classify(raw, r) {
            Classified::Fast(p) => p,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(raw)),
        }
    }

    #[test]
    fn a_plain_mcp_post_is_rewritten_for_the_target() {
        let raw = b"POST /mcp?x=1 HTTP/1.1\r\nHost: localhost:8080\r\nContent-Type: application/json\r\n\
Mcp-Session-Id: s1\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
X-Forwarded-For: 6.6.6.6\r\nAuthorization: Bearer t\r\nContent-Length: 2\r\n\r\n{}";
        let p = fast(raw, &rules(true, true));
        assert_eq!(p.head_len, raw.len() - 2);
        assert_eq!(p.body_len, 2);
        assert_eq!(&raw[p.authorization.unwrap().0..p.authorization.unwrap().1], b"Bearer t");
        assert_eq!(&raw[p.host.0..p.host.1], b"localhost:8080");
        assert_eq!(&raw[p.target.0..p.target.1], b"/mcp?x=1");
        assert_eq!(
            String::from_utf8(p.upstream_head).unwrap(),
            "POST /mcp?x=1 HTTP/1.1\r\nhost: up:9\r\nContent-Type: application/json\r\nMcp-Session-Id: s1\r\n\
x-forwarded-for: 127.0.0.1\r\nx-forwarded-host: localhost:8080\r\nx-forwarded-proto: http\r\ncontent-length: 2\r\n\r\n"
        );
        // Without incoming auth the client's credentials are the target's business.
        let p = fast(raw, &rules(false, false));
        let head = String::from_utf8(p.upstream_head).unwrap();
        assert!(head.contains("Authorization: Bearer t\r\n") && !head.contains("x-forwarded"), "{head}");
    }

    #[test]
    fn forgeable_and_disguised_fields_are_dropped() {
        let raw = b"POST /mcp HTTP/1.1\r\nhost: localhost\r\nX-Real-IP: 6.6.6.6\r\nContent_Length: 9\r\n\
X_Forwarded_For: 6.6.6.6\r\nTransfer_Encoding: chunked\r\nX_Custom: y\r\ncontent-length: 2\r\n\r\n{}";
        let head = String::from_utf8(fast(raw, &rules(false, false)).upstream_head).unwrap();
        assert_eq!(head, "POST /mcp HTTP/1.1\r\nhost: up:9\r\nX_Custom: y\r\ncontent-length: 2\r\n\r\n");
    }

    #[test]
    fn a_get_without_body_gets_no_length_and_close_is_seen() {
        let p = fast(b"GET /mcp HTTP/1.1\r\nhost: 127.0.0.1:1\r\nconnection: close\r\n\r\n", &rules(false, false));
        assert!(p.close);
        assert_eq!(p.body_len, 0);
        assert!(!String::from_utf8(p.upstream_head).unwrap().contains("content-length"));
    }

    #[test]
    fn unusual_requests_are_left_to_hyper_with_their_reason() {
        let r = rules(false, false);
        for (raw, why) in [
            (&b"GET /mcp HTTP/1.0\r\nhost: localhost\r\n\r\n"[..], Why::Malformed),
            (&b"PUT /mcp HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Method),
            (&b"OPTIONS /mcp HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Method),
            (&b"CONNECT localhost:1 HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Method),
            (&b"GET http://localhost/mcp HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Target),
            (&b"GET /health HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::LocalRoute),
            (&b"GET /health?x HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::LocalRoute),
            (
                &b"GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\nhost: localhost\r\n\r\n"[..],
                Why::LocalRoute,
            ),
            (&b"GET /a%zz HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Target),
            (&b"GET /a%2 HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Target),
            (&b"GET /a\"b HTTP/1.1\r\nhost: localhost\r\n\r\n"[..], Why::Target),
            (&b"GET /mcp HTTP/1.1\r\n\r\n"[..], Why::Host),
            (&b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nhost: localhost\r\n\r\n"[..], Why::Host),
            (&b"GET /mcp HTTP/1.1\r\nhost: evil.example\r\n\r\n"[..], Why::Host),
            (&b"GET /mcp HTTP/1.1\r\nhost: [::1]@evil.example\r\n\r\n"[..], Why::Host),
            (&b"GET /mcp HTTP/1.1\r\nhost: [::1]:1:80\r\n\r\n"[..], Why::Host),
            (&b"GET /mcp HTTP/1.1\r\nhost: localhost\r\norigin: http://localhost\r\n\r\n"[..], Why::Field("origin")),
            (
                &b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2\r\ncontent-length: 2\r\n\r\n{}"[..],
                Why::Ambiguous,
            ),
            (&b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: +2\r\n\r\n{}"[..], Why::Ambiguous),
            (&b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 2, 2\r\n\r\n{}"[..], Why::Ambiguous),
            (&b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 1001\r\n\r\n"[..], Why::TooLarge),
            (
                &b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n"[..],
                Why::Field("transfer-encoding"),
            ),
            (
                &b"POST /mcp HTTP/1.1\r\nhost: localhost\r\nTransfer-Encoding: chunked\r\ncontent-length: 5\r\n\r\n"[..],
                Why::Field("transfer-encoding"),
            ),
            (
                &b"POST /mcp HTTP/1.1\r\nhost: localhost\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n"[..],
                Why::Field("expect"),
            ),
            (
                &b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"[..],
                Why::Field("upgrade"),
            ),
            (
                &b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nconnection: x-secret\r\nx-secret: 1\r\n\r\n"[..],
                Why::Field("connection"),
            ),
            (&b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nx-folded: a\r\n b\r\n\r\n"[..], Why::Malformed),
            (&b"GET /mcp HTTP/1.1\r\nhost : localhost\r\n\r\n"[..], Why::Malformed),
            (&b"GET /mcp HTTP/1.1\nhost: localhost\n\n\x00"[..], Why::Malformed),
            (&b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nbad\rheader: 1\r\n\r\n"[..], Why::Malformed),
        ] {
            match classify(raw, &r) {
                Classified::Fallback(got) => assert_eq!(got, why, "{:?}", String::from_utf8_lossy(raw)),
                other => panic!("{other:?} for {:?}", String::from_utf8_lossy(raw)),
            }
        }
        let two_auth = b"GET /mcp HTTP/1.1\r\nhost: localhost\r\nauthorization: a\r\nauthorization: b\r\n\r\n";
        assert!(matches!(classify(two_auth, &rules(true, false)), Classified::Fallback(Why::Ambiguous)));
    }

    #[test]
    fn a_reused_field_box_starts_empty() {
        let traced = Rules { mcp: true, trace: true, ..rules(false, false) };
        let first = b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ntraceparent: x\r\nmcp-session-id: s\r\ncontent-length: 0\r\n\r\n";
        let Classified::Fast(plan) = classify(first, &traced) else { panic!("fast") };
        let spare = plan.mcp;
        assert!(spare.as_ref().is_some_and(|f| f.traceparent.is_some() && f.session.is_some()));
        let second = b"POST /mcp HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n\r\n";
        let Classified::Fast(plan) = classify_reusing(second, &traced, spare) else { panic!("fast") };
        let fields = plan.mcp.expect("fields");
        assert_eq!(format!("{fields:?}"), format!("{:?}", McpFields { length_line: true, ..McpFields::NONE }));
    }

    #[test]
    fn an_incomplete_head_waits() {
        assert!(matches!(classify(b"POST /mcp HTTP/1.1\r\nhost: loc", &rules(false, false)), Classified::Partial));
        assert!(matches!(classify(b"", &rules(false, false)), Classified::Partial));
    }
}
