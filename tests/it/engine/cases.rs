//! The differential tables without incoming auth: every request and response header rule,
//! the local routes, every upstream failure and the request log, each case through both
//! engines (see `diff.rs`). The incoming-auth table lives in `auth.rs`.

use super::diff::{
    Body, BodyHas, ClientCount, ClientHas, ClientLacks, ClientStarts, Logs, Reused, Sent, Status, TargetBody,
    TargetHas, TargetLacks, TargetLine, TargetNoValue,
};
use super::diff::{Case, Check, Engine, case, run, start_pair};
use super::wire::{Answer, OK, Target};
use crate::support::upstream::closed_port;

/// The flags of every pair: the request log, a short upstream timeout, one extra origin.
pub const FLAGS: [&str; 5] = ["--debug", "--upstream-timeout", "1s", "--allowed-origins", "http://allowed.example"];

/// `POST /mcp` with `$fields` and the body `{}`.
macro_rules! post {
    ($fields:literal) => {
        concat!("POST /mcp HTTP/1.1\r\n{H}", $fields, "Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
    };
}
pub(super) use post;

/// `POST /mcp` carrying a JSON-RPC request with id 7.
macro_rules! ping {
    () => {
        concat!(
            "POST /mcp HTTP/1.1\r\n{H}Content-Type: application/json\r\nContent-Length: 40\r\n\r\n",
            r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#
        )
    };
}

/// A JSON-RPC error that echoes id 7.
const ECHOES_7: Check = BodyHas(r#""id":7"#);

/// An answer the own engine may frame either way, with two events.
const EVENTS: Answer = Answer::Keep(
    "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n\
     d\r\ndata: first\n\n\r\ne\r\ndata: second\n\n\r\n0\r\n\r\n",
);

/// Request header rules: what the target gets of what the client sent.
#[rustfmt::skip]
fn request_cases() -> Vec<Case> {
    vec![
        case("request: ordinary POST", post!(""), OK, &[Status(200), Sent(1), TargetLine("POST /mcp HTTP/1.1"),
            TargetHas("content-length", "2"), TargetHas("content-type", "application/json"), TargetBody("{}"),
            ClientHas("content-length", "11"), Body(r#"{"ok":true}"#)]),
        case("request: MCP and ordinary fields pass unchanged",
            post!("Mcp-Session-Id: s-1\r\nMCP-Protocol-Version: 2025-06-18\r\nLast-Event-ID: 42\r\nMcp-Method: tools/call\r\n\
                   Mcp-Name: add\r\nMcp-Param-X: 1\r\nAccept: application/json, text/event-stream\r\nUser-Agent: probe/1\r\n\
                   X-Custom: a, b\r\n"),
            OK, &[Status(200), TargetHas("mcp-session-id", "s-1"), TargetHas("mcp-protocol-version", "2025-06-18"),
            TargetHas("last-event-id", "42"), TargetHas("mcp-method", "tools/call"), TargetHas("mcp-name", "add"),
            TargetHas("mcp-param-x", "1"), TargetHas("accept", "application/json, text/event-stream"),
            TargetHas("user-agent", "probe/1"), TargetHas("x-custom", "a, b")]),
        case("request: Connection names a field", post!("Connection: x-hop, keep-alive\r\nX-Hop: secret\r\nX-Kept: yes\r\n"),
            OK, &[Status(200), TargetLacks("x-hop"), TargetNoValue("secret"), TargetNoValue("x-hop"), TargetHas("x-kept", "yes")]),
        case("request: Keep-Alive", post!("Keep-Alive: timeout=5\r\n"), OK, &[Status(200), TargetLacks("keep-alive")]),
        case("request: TE", post!("TE: trailers, deflate\r\n"), OK, &[Status(200), TargetLacks("te")]),
        case("request: Trailer", post!("Trailer: x-t\r\n"), OK, &[Status(200), TargetLacks("trailer")]),
        case("request: Proxy-Connection", post!("Proxy-Connection: keep-alive\r\n"), OK,
            &[Status(200), TargetLacks("proxy-connection")]),
        case("request: Proxy-Authorization", post!("Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n"), OK,
            &[Status(200), TargetLacks("proxy-authorization"), TargetNoValue("cHJveHk6c2VjcmV0")]),
        case("request: X-Forwarded-For replaced", post!("X-Forwarded-For: 6.6.6.6\r\n"), OK,
            &[Status(200), TargetNoValue("6.6.6.6"), TargetHas("x-forwarded-for", "127.0.0.1")]),
        case("request: X-Forwarded-Host replaced", post!("X-Forwarded-Host: evil.example\r\n"), OK,
            &[Status(200), TargetNoValue("evil.example"), TargetHas("x-forwarded-host", "127.0.0.1:{PORT}")]),
        case("request: X-Forwarded-Proto replaced", post!("X-Forwarded-Proto: https\r\n"), OK,
            &[Status(200), TargetHas("x-forwarded-proto", "http")]),
        case("request: Forwarded from the client", post!("Forwarded: for=6.6.6.6;host=evil.example;proto=https\r\n"), OK,
            &[Status(200), TargetNoValue("6.6.6.6"), TargetNoValue("evil.example")]),
        case("request: X-Real-IP dropped", post!("X-Real-IP: 6.6.6.6\r\n"), OK,
            &[Status(200), TargetLacks("x-real-ip"), TargetNoValue("6.6.6.6")]),
        case("request: Content_Length", post!("Content_Length: 5\r\n"), OK,
            &[Status(200), TargetLacks("content_length"), TargetHas("content-length", "2"), TargetBody("{}")]),
        case("request: Transfer_Encoding", post!("Transfer_Encoding: chunked\r\n"), OK,
            &[Status(200), TargetLacks("transfer_encoding"), TargetLacks("transfer-encoding"), TargetBody("{}")]),
        case("request: X_Forwarded_For", post!("X_Forwarded_For: 6.6.6.6\r\n"), OK,
            &[Status(200), TargetLacks("x_forwarded_for"), TargetNoValue("6.6.6.6")]),
        case("request: X_Forwarded_Host", post!("X_Forwarded_Host: evil.example\r\n"), OK,
            &[Status(200), TargetLacks("x_forwarded_host"), TargetNoValue("evil.example")]),
        case("request: X_Forwarded_Proto", post!("X_Forwarded_Proto: https\r\n"), OK,
            &[Status(200), TargetLacks("x_forwarded_proto")]),
        case("request: X_Real_IP", post!("X_Real_IP: 6.6.6.6\r\n"), OK, &[Status(200), TargetLacks("x_real_ip")]),
        case("request: Keep_Alive", post!("Keep_Alive: timeout=5\r\n"), OK, &[Status(200), TargetLacks("keep_alive")]),
        case("request: Proxy_Connection", post!("Proxy_Connection: keep-alive\r\n"), OK,
            &[Status(200), TargetLacks("proxy_connection")]),
        case("request: Proxy_Authorization", post!("Proxy_Authorization: Basic eA==\r\n"), OK,
            &[Status(200), TargetLacks("proxy_authorization")]),
        case("request: X_Custom passes", post!("X_Custom: 1\r\n"), OK, &[Status(200), TargetHas("x_custom", "1")]),
        case("request: Authorization without incoming auth", post!("Authorization: Bearer abc\r\n"), OK, &[Status(200)]),
        case("request: GET, Host replaced with the target's", "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n",
            OK, &[Status(200), Sent(1), TargetLine("GET /mcp HTTP/1.1")]),
        case("request: Host localhost:PORT", "GET /mcp HTTP/1.1\r\nHost: localhost:{PORT}\r\n\r\n", OK,
            &[Status(200), Sent(1), TargetHas("x-forwarded-host", "localhost:{PORT}")]),
        case("request: DELETE", "DELETE /mcp HTTP/1.1\r\n{H}Mcp-Session-Id: s-1\r\n\r\n", OK,
            &[Status(200), Sent(1), TargetLine("DELETE /mcp HTTP/1.1"), TargetHas("mcp-session-id", "s-1")]),
        case("request: chunked body forwarded with its exact length",
            "POST /mcp HTTP/1.1\r\n{H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n3\r\n{\"a\r\n4\r\n\":1}\r\n0\r\n\r\n",
            OK, &[Status(200), TargetHas("content-length", "7"), TargetLacks("transfer-encoding"), TargetBody(r#"{"a":1}"#)]),
        case("request: query kept for the target, not logged",
            "POST /mcp?session=abc HTTP/1.1\r\n{H}Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}", OK,
            &[Status(200), TargetLine("POST /mcp?session=abc HTTP/1.1"), Logs("path", "/mcp")]),
    ]
}

/// Response header rules: what the client gets of what the target answered.
#[rustfmt::skip]
fn response_cases() -> Vec<Case> {
    const GET: &str = "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n";
    vec![
        case("response: Connection names a field, Keep-Alive", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\nconnection: x-hop, keep-alive\r\nx-hop: secret\r\nkeep-alive: timeout=5\r\nx-kept: yes\r\ncontent-length: 2\r\n\r\nok"),
            &[Status(200), ClientLacks("x-hop"), ClientLacks("keep-alive"), ClientHas("x-kept", "yes"), Body("ok")]),
        case("response: Proxy-Connection", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\nproxy-connection: keep-alive\r\ncontent-length: 2\r\n\r\nok"),
            &[Status(200), ClientLacks("proxy-connection"), Body("ok")]),
        case("response: Trailer and TE on a sized answer", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\ntrailer: x-t\r\nte: trailers\r\ncontent-length: 2\r\n\r\nok"),
            &[Status(200), ClientLacks("trailer"), ClientLacks("te"), Body("ok")]),
        case("response: Upgrade on a 200", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\nupgrade: h2c\r\ncontent-length: 2\r\n\r\nok"),
            &[Status(200), ClientLacks("upgrade"), Body("ok")]),
        case("response: event stream on a POST gets x-accel-buffering", post!(""), EVENTS,
            &[Status(200), ClientHas("x-accel-buffering", "no"), ClientHas("content-type", "text/event-stream"),
            Body("data: first\n\ndata: second\n\n")]),
        case("response: GET event stream loses Content-Length", GET, Answer::Keep(
            "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: 13\r\n\r\ndata: first\n\n"),
            &[Status(200), ClientLacks("content-length"), ClientHas("x-accel-buffering", "no"), Body("data: first\n\n")]),
        case("response: Content-Length: 2, 2", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2, 2\r\n\r\nok"),
            &[Status(200), ClientCount("content-length", 1), ClientHas("content-length", "2"), Body("ok")]),
        case("response: 401 with WWW-Authenticate relayed", post!(""), Answer::Keep(
            "HTTP/1.1 401 Unauthorized\r\nwww-authenticate: Bearer realm=\"mcp\", scope=\"a b\"\r\ncontent-length: 0\r\n\r\n"),
            &[Status(401), ClientHas("www-authenticate", "Bearer realm=\"mcp\", scope=\"a b\""), Body("")]),
        case("response: 204", post!(""), Answer::Keep("HTTP/1.1 204 No Content\r\nx-kept: yes\r\n\r\n"),
            &[Status(204), ClientHas("x-kept", "yes"), Body("")]),
        case("response: 304", "GET /mcp HTTP/1.1\r\n{H}If-None-Match: \"v1\"\r\n\r\n",
            Answer::Keep("HTTP/1.1 304 Not Modified\r\netag: \"v1\"\r\n\r\n"),
            &[Status(304), ClientHas("etag", "\"v1\""), TargetHas("if-none-match", "\"v1\""), Body("")]),
        case("response: HTTP/1.0 with Content-Length", post!(""),
            Answer::Close("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n\r\nold"),
            &[Status(200), Body("old")]),
        case("response: HTTP/1.0 close-delimited", post!(""),
            Answer::Close("HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nold and closed"),
            &[Status(200), Body("old and closed")]),
        case("response: chunked with a trailer", post!(""), Answer::Keep(
            "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\ntrailer: x-trailer\r\n\r\n\
             5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: 1\r\n\r\n"),
            &[Status(200), Body("hello world")]),
        case("response: close-delimited", post!(""),
            Answer::Close("HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nuntil the end"),
            &[Status(200), Body("until the end")]),
        case("response: interim 100 before the answer", post!(""),
            Answer::Keep("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\ncontent-length: 2\r\n\r\nok"),
            &[Status(201), Body("ok")]),
        case("response: a custom reason phrase", post!(""),
            Answer::Keep("HTTP/1.1 200 Fine\r\ncontent-length: 2\r\n\r\nok"), &[Status(200), Body("ok")]),
    ]
}

/// The proxy's own routes and protections: never forwarded.
#[rustfmt::skip]
fn local_cases() -> Vec<Case> {
    vec![
        case("local: GET /health", "GET /health HTTP/1.1\r\n{H}\r\n", OK,
            &[Status(200), Sent(0), BodyHas(r#""status":"healthy""#)]),
        case("local: RFC 9728 document without incoming auth",
            "GET /.well-known/oauth-protected-resource/mcp HTTP/1.1\r\n{H}\r\n", OK, &[Status(404), Sent(0)]),
        case("local: CORS preflight from an allowed origin",
            "OPTIONS /mcp HTTP/1.1\r\n{H}Origin: http://allowed.example\r\nAccess-Control-Request-Method: POST\r\n\
             Access-Control-Request-Headers: content-type, mcp-session-id\r\n\r\n",
            OK, &[Sent(0), ClientHas("access-control-allow-origin", "http://allowed.example")]),
        case("local: POST from an allowed origin", post!("Origin: http://allowed.example\r\n"), OK,
            &[Status(200), Sent(1), ClientHas("access-control-allow-origin", "http://allowed.example")]),
        case("local: POST from a refused origin", post!("Origin: http://evil.example\r\n"), OK,
            &[Status(403), Sent(0), ClientLacks("access-control-allow-origin")]),
        case("local: foreign Host", "GET /mcp HTTP/1.1\r\nHost: evil.example\r\n\r\n", OK, &[Status(403), Sent(0)]),
        case("local: malformed Host", "GET /mcp HTTP/1.1\r\nHost: [::1]evil\r\n\r\n", OK, &[Status(400), Sent(0)]),
    ]
}

/// Upstream failures, and the log line of a stream the client closes.
#[rustfmt::skip]
fn failure_cases() -> Vec<Case> {
    vec![
        case("upstream: closes without answering", ping!(), Answer::Hangup, &[Status(502), Sent(1), ECHOES_7]),
        case("upstream: answers garbage", ping!(), Answer::Close("garbage\r\n\r\n"), &[Status(502), ECHOES_7]),
        case("upstream: answers an unrequested 101", ping!(), Answer::Close(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"),
            &[Status(502), Sent(1), ECHOES_7]),
        case("upstream: stalls past --upstream-timeout", ping!(), Answer::Stall, &[Status(504), Sent(1), ECHOES_7]),
        case("upstream: GET, reused connection closed after the request", "GET /mcp HTTP/1.1\r\n{H}\r\n",
            Answer::HangupIfReused, &[Status(502), Sent(1), Reused]).reused(),
        case("upstream: DELETE, reused connection closed after the request", "DELETE /mcp HTTP/1.1\r\n{H}\r\n",
            Answer::HangupIfReused, &[Status(502), Sent(1), Reused]).reused(),
        case("upstream: POST, reused connection closed after the request", ping!(),
            Answer::HangupIfReused, &[Status(502), Sent(1), Reused, ECHOES_7]).reused(),
        case("log: a GET event stream the client closes", "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n",
            Answer::Endless, &[Status(200), Sent(1), ClientHas("x-accel-buffering", "no"), Body("data: 0\n\n"),
            ClientStarts("content-type", "text/event-stream")]).first_event(),
    ]
}

/// Every rule without incoming auth, through both engines of one pair.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_case_is_answered_alike_by_both_engines() {
    let target = Target::start().await;
    let (own, hyper) = start_pair(&format!("http://{}/mcp", target.addr), &FLAGS);
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    let cases: Vec<Case> =
        [request_cases(), response_cases(), local_cases(), failure_cases()].into_iter().flatten().collect();
    let failures = run("plain", &target, &engines, &cases).await;
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
}

/// A target that refuses connections: both engines answer alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_connection_is_answered_alike_by_both_engines() {
    // The recorder stays unused: nothing listens at the target's port.
    let target = Target::start().await;
    let (own, hyper) = start_pair(&format!("http://127.0.0.1:{}/mcp", closed_port()), &FLAGS);
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    #[rustfmt::skip]
    let cases = [
        case("refused: POST", ping!(), OK, &[Status(502), ECHOES_7]),
        case("refused: GET", "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n", OK, &[Status(502)]),
        case("refused: GET /health", "GET /health HTTP/1.1\r\n{H}\r\n", OK,
            &[Status(503), BodyHas(r#""status":"unhealthy""#)]),
    ];
    let failures = run("refused", &target, &engines, &cases).await;
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
}
