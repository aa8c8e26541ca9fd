//! The differential table with the MCP policy on (`--authz-config`, `--tools`,
//! `--tools-override`): every decision, refusal and list rewrite through both engines
//! (see `diff.rs`), each refusal proven never to reach the target (`Sent(0)`).

use super::cases::FLAGS;
use super::diff::{
    Body, BodyHas, BodyLacks, ClientHas, ClientLacks, Sent, Status, TargetBody, TargetBodyHas, TargetHas, TargetLacks,
};
use super::diff::{Case, Engine, case, run, start_pair};
use super::wire::{Answer, OK, Target};

/// Cedar policies in ToolHive's format: `rm` is permitted and forbidden (forbid wins), the
/// anonymous principal may get one prompt, every resource may be read.
const AUTHZ: &str = r#"{"version": "1.0", "type": "cedarv1", "cedar": {"policies": [
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"echo\");",
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"add\");",
  "permit(principal, action == Action::\"call_tool\", resource == Tool::\"rm\");",
  "forbid(principal, action == Action::\"call_tool\", resource == Tool::\"rm\");",
  "permit(principal, action == Action::\"read_resource\", resource);",
  "permit(principal == Client::\"anonymous\", action == Action::\"get_prompt\", resource == Prompt::\"greet\");"
], "entities_json": "[]"}}"#;

/// `add` is shown as `sum`.
const OVERRIDE: &str = r#"{"toolsOverride": {"add": {"name": "sum", "description": "adds two numbers"}}}"#;

/// `POST /mcp` with `$fields` and the JSON-RPC body `$body`.
macro_rules! rpc {
    ($fields:literal, $body:expr) => {
        concat!(
            "POST /mcp HTTP/1.1\r\n{H}",
            $fields,
            "Content-Type: application/json\r\nContent-Length: {LEN}\r\n\r\n",
            $body
        )
    };
}

/// A tools/call of `$name` with id 7.
macro_rules! call {
    ($fields:literal, $name:literal) => {
        rpc!(
            $fields,
            concat!(
                r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":""#,
                $name,
                r#"","arguments":{"x":1}}}"#
            )
        )
    };
}

/// The server's tools, as a JSON answer and as an event stream (a notification first).
const TOOLS: &str = r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[{"name":"echo"},{"name":"rm"},{"name":"add","description":"x"},{"name":"hidden"}],"nextCursor":"c2"}}"#;

fn json_answer(status: &str, body: &str) -> Answer {
    let raw =
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}", body.len());
    Answer::Keep(Box::leak(raw.into_boxed_str()))
}

fn sse_answer(events: &[&str]) -> Answer {
    let mut raw =
        String::from("HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n");
    for event in events {
        raw.push_str(&format!("{:x}\r\n{event}\r\n", event.len()));
    }
    raw.push_str("0\r\n\r\n");
    Answer::Keep(Box::leak(raw.into_boxed_str()))
}

/// Sets `{LEN}` to the body's length (the body follows the head).
fn sized(send: &str) -> &'static str {
    let body_len = send.split_once("\r\n\r\n").map_or(0, |(_, b)| b.len());
    Box::leak(send.replace("{LEN}", &body_len.to_string()).into_boxed_str())
}

const UNKNOWN_TOOL: &str = r#""error":{"code":-32602,"message":"tool not found"}"#;

#[rustfmt::skip]
fn policy_cases() -> Vec<Case> {
    let tools_json = json_answer("200 OK", TOOLS);
    let tools_bom = json_answer("200 OK", &format!("\u{feff}{TOOLS}"));
    let tools_sse = sse_answer(&[
        "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"note\":\"hidden rm\"}}\n\n",
        &format!("id: 1\nevent: message\ndata: {TOOLS}\n\n"),
    ]);
    let tools_error = json_answer("500 Internal Server Error", TOOLS);
    // A standalone GET stream: the legacy transport's `endpoint` event, a notification, and
    // a list answered there (legacy HTTP+SSE answers every POST on it; a resumed stream
    // replays a POST's answers on it).
    let legacy_stream = sse_answer(&[
        "event: endpoint\ndata: /messages?sessionId=s1\n\n",
        "data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n",
        &format!("data: {}\n\n", TOOLS.replace(r#""id":7"#, r#""id":41"#)),
    ]);
    vec![
        case("policy: a permitted call passes unchanged", sized(call!("", "echo")), OK,
            &[Status(200), Sent(1), TargetBody(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"x":1}}}"#)]),
        case("policy: forbid beats permit", sized(call!("", "rm")), OK,
            &[Status(403), Sent(0), BodyHas(r#""id":7"#), BodyHas(r#""code":403"#)]),
        case("policy: a tool outside --tools is an unknown tool", sized(call!("", "hidden")), OK,
            &[Status(200), Sent(0), BodyHas(r#""id":7"#), BodyHas(UNKNOWN_TOOL)]),
        case("policy: a tool nobody has is answered alike", sized(call!("", "nosuch")), OK,
            &[Status(200), Sent(0), BodyHas(UNKNOWN_TOOL)]),
        case("policy: a renamed tool is called by its server name", sized(call!("Mcp-Method: tools/call\r\nMcp-Name: sum\r\n", "sum")), OK,
            &[Status(200), Sent(1), TargetBodyHas(r#""name":"add""#), TargetHas("mcp-name", "add"), TargetHas("mcp-method", "tools/call")]),
        case("policy: a renamed tool's old name is unknown", sized(call!("", "add")), OK,
            &[Status(200), Sent(0), BodyHas(UNKNOWN_TOOL)]),
        case("policy: a batch is refused whole", sized(rpc!("", r#"[{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo"}}]"#)), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32600"#)]),
        case("policy: an unparsable body is refused", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","#)), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32700"#)]),
        case("policy: a field given twice is refused", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"ping","method":"tools/call","params":{"name":"rm"}}"#)), OK,
            &[Status(400), Sent(0)]),
        case("policy: params the server would read otherwise are refused", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{}}"#)), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32602"#), BodyHas(r#""id":7"#)]),
        case("policy: Mcp-Name disagrees with the body", sized(call!("Mcp-Method: tools/call\r\nMcp-Name: rm\r\n", "echo")), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32020"#), BodyHas(r#""id":7"#)]),
        case("policy: Mcp-Method disagrees with the body", sized(call!("Mcp-Method: tools/list\r\n", "echo")), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32020"#)]),
        case("policy: Mcp-Name given twice", sized(call!("Mcp-Name: echo\r\nMcp-Name: echo\r\n", "echo")), OK,
            &[Status(400), Sent(0), BodyHas(r#""code":-32020"#)]),
        case("policy: headers that agree pass", sized(call!("Mcp-Method: tools/call\r\nMcp-Name: echo\r\n", "echo")), OK,
            &[Status(200), Sent(1), TargetHas("mcp-name", "echo")]),
        case("policy: a JSON tools/list is filtered and renamed", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)), tools_json,
            &[Status(200), Sent(1), BodyHas(r#"{"name":"echo"}"#), BodyHas(r#""name":"sum""#), BodyHas(r#""description":"adds two numbers""#),
              BodyHas(r#""nextCursor":"c2""#), BodyLacks(r#""rm""#), BodyLacks("hidden"), BodyLacks(r#""add""#), ClientLacks("content-length")]),
        case("policy: a filtered answer is asked for uncompressed", sized(rpc!("Accept-Encoding: gzip, br\r\n", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)), OK,
            &[Status(200), Sent(1), TargetLacks("accept-encoding")]),
        case("policy: other answers may be compressed", sized(call!("Accept-Encoding: gzip\r\n", "echo")), OK,
            &[Status(200), Sent(1), TargetHas("accept-encoding", "gzip")]),
        case("policy: a JSON tools/list after a UTF-8 BOM is filtered", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)), tools_bom,
            &[Status(200), Sent(1), BodyHas(r#"{"name":"echo"}"#), BodyLacks("hidden"), BodyLacks(r#""rm""#)]),
        case("policy: an SSE tools/list is filtered, other events untouched", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)), tools_sse,
            &[Status(200), Sent(1), BodyHas(r#"{"note":"hidden rm"}"#), BodyHas(r#"{"name":"echo"}"#), BodyHas(r#""name":"sum""#),
              BodyLacks(r#"{"name":"hidden"}"#), BodyLacks(r#"{"name":"rm"}"#), BodyHas("id: 1\n"), ClientHas("content-type", "text/event-stream")]),
        case("policy: a non-2xx list answer is not touched", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#)), tools_error,
            &[Status(500), Sent(1), Body(TOOLS)]),
        case("policy: the anonymous principal gets its prompt", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"greet"}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("policy: default deny", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"prompts/get","params":{"name":"other"}}"#)), OK,
            &[Status(403), Sent(0), BodyHas(r#""code":403"#)]),
        case("policy: a read is decided on the resource", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"file:///a"}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("policy: initialize passes", sized(rpc!("", r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{}}"#)), OK,
            &[Status(200), Sent(1)]),
        case("policy: a notification passes", sized(rpc!("", r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)), OK,
            &[Status(200), Sent(1)]),
        case("policy: a GET passes", "GET /mcp HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n", OK,
            &[Status(200), Sent(1), TargetLacks("content-length")]),
        case("policy: a list answered on a standalone GET stream is filtered too", "GET /sse HTTP/1.1\r\n{H}Accept: text/event-stream\r\n\r\n", legacy_stream,
            &[Status(200), Sent(1), BodyHas("event: endpoint\ndata: /messages?sessionId=s1\n\n"), BodyHas("list_changed"),
              BodyHas(r#""id":41"#), BodyHas(r#"{"name":"echo"}"#), BodyHas(r#""name":"sum""#), BodyLacks("hidden"), BodyLacks(r#"{"name":"rm"}"#)]),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_policy_decision_is_made_alike_by_both_engines() {
    let dir = std::env::temp_dir().join(format!("thv-policy-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (authz, overrides) = (dir.join("authz.json"), dir.join("override.json"));
    std::fs::write(&authz, AUTHZ).unwrap();
    std::fs::write(&overrides, OVERRIDE).unwrap();
    let target = Target::start().await;
    let mut flags = FLAGS.to_vec();
    let (authz, overrides) = (authz.to_str().unwrap(), overrides.to_str().unwrap());
    flags.extend(["--authz-config", authz, "--tools", "echo,add,rm", "--tools-override", overrides]);
    let (own, hyper) = start_pair(&format!("http://{}/mcp", target.addr), &flags);
    own.wait_for_stderr("Client::\"anonymous\"");
    let engines = [Engine::new("own", &own), Engine::new("hyper", &hyper)];
    let cases = policy_cases();
    let failures = run("policy", &target, &engines, &cases).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert!(failures.is_empty(), "{} differential cases; failures:\n{}", cases.len(), failures.join("\n"));
}
