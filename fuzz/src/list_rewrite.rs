//! The MCP list-answer rewriter (`thv::policy::filter`: `ListRewrite`, `rewrite_message`),
//! driven as the proxy engines drive it: an answer fed piece by piece, then finished.
//!
//! Input: byte 0 picks JSON body or event stream (bit 0), the list (bits 1–2), the
//! request id `1` or `"a"` (bit 3), a small or large limit (bit 4), and seeds the cuts
//! (with bits 5–7); the rest is the answer's payload. The judge refuses items whose
//! `name` contains "secret" and renames "old" to "new".
//!
//! Invariants:
//! - chunking never matters: the payload cut at fuzzer-derived points gives exactly the
//!   output of the payload in one piece (or both fail on the limit);
//! - no item the judge refused reaches a client: every message of the output, read as a
//!   WHATWG client reads an event stream and as an LF-only client (the Go SDK) does, is
//!   left unchanged by the rewriter (a fixed point), and, checked independently with
//!   `serde_json::Value`, no answer to the request lists a "secret" item;
//! - transparency: a payload with no message carrying a `result` (and nothing unreadable)
//!   comes out byte for byte (event streams: but lone CRs as LF, and an opening BOM on a
//!   line of its own);
//! - the output of an event stream has no lone CR but possibly its very last byte.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use thv::internals::list_filter::{Judge, ListKind, ListRewrite, Message, rewrite_message};

const BOM: &[u8] = b"\xEF\xBB\xBF";
const KINDS: [ListKind; 4] = [ListKind::Tools, ListKind::Prompts, ListKind::Resources, ListKind::ResourceTemplates];

/// Refuses names containing "secret"; renames "old" to "new".
pub struct SecretJudge;

impl Judge for SecretJudge {
    fn keep(&self, _kind: ListKind, item: &mut Map<String, Value>) -> bool {
        match item.get("name").and_then(Value::as_str) {
            Some(name) if name.contains("secret") => false,
            Some("old") => {
                item.insert("name".to_owned(), Value::from("new"));
                true
            }
            _ => true,
        }
    }
}

/// One run's settings, from the control byte.
#[derive(Clone, Copy)]
pub struct Setup {
    pub event_stream: bool,
    pub kind: ListKind,
    pub id: &'static str,
    pub limit: usize,
}

impl Setup {
    pub fn from_control(control: u8) -> Setup {
        Setup {
            event_stream: control & 1 == 1,
            kind: KINDS[usize::from((control >> 1) & 3)],
            id: if control & 8 == 0 { "1" } else { r#""a""# },
            limit: if control & 16 == 0 { 64 * 1024 } else { 300 },
        }
    }
}

/// Feeds `pieces` to a new rewriter, then finishes: the whole output, or `None` if the
/// limit was passed.
pub fn rewrite(setup: Setup, pieces: &[&[u8]]) -> Option<Vec<u8>> {
    let id = RawValue::from_string(setup.id.to_owned()).unwrap();
    let mut rw = ListRewrite::new(setup.event_stream, id, setup.kind, Arc::new(SecretJudge), setup.limit);
    let mut out = Vec::new();
    for p in pieces {
        out.extend_from_slice(&rw.feed(Bytes::copy_from_slice(p)).ok()?);
    }
    out.extend_from_slice(&rw.finish().ok()?);
    Some(out)
}

pub fn run(data: &[u8]) {
    let Some((&control, payload)) = data.split_first() else { return };
    if payload.len() > crate::MAX_INPUT {
        return;
    }
    let setup = Setup::from_control(control);

    let whole = rewrite(setup, &[payload]);
    let max_piece = if control & 32 == 0 { 7 } else { 61 };
    let pieces = crate::sse::cut(payload, control ^ (payload.len() as u8), max_piece);
    assert!(rewrite(setup, &pieces) == whole, "cutting into {} pieces changed the output", pieces.len());
    if !payload.is_empty() {
        let at = usize::from(control.wrapping_mul(31) ^ payload[0]) * payload.len() / 256;
        let (a, b) = payload.split_at(at);
        assert!(rewrite(setup, &[a, b, &[]]) == whole, "one cut at {at} changed the output");
    }
    let Some(out) = whole else { return };

    let messages = if setup.event_stream {
        let mut all = whatwg_data(&out);
        all.extend(lf_only_data(&out));
        all
    } else {
        vec![out.clone()]
    };
    for m in &messages {
        let again = rewrite_message(m, setup.id, setup.kind, &SecretJudge);
        assert!(
            again == Message::Unchanged,
            "the output is not a fixed point: {:?} -> {again:?}",
            String::from_utf8_lossy(m)
        );
        assert!(!lists_a_secret(m, setup), "a refused item reached the client: {:?}", String::from_utf8_lossy(m));
    }

    if setup.event_stream {
        let lone_cr = out.iter().enumerate().any(|(i, b)| *b == b'\r' && i + 1 < out.len() && out[i + 1] != b'\n');
        assert!(!lone_cr, "a lone CR went out: {:?}", String::from_utf8_lossy(&out));
        if whatwg_data(payload).iter().all(|d| plainly_no_answer(d)) {
            let expected = normalise(payload);
            assert!(
                out == expected,
                "an answer-free stream was changed:\n in:  {:?}\n out: {:?}",
                String::from_utf8_lossy(payload),
                String::from_utf8_lossy(&out)
            );
        }
    } else if plainly_no_answer(payload) {
        assert!(out == payload, "an answer-free body was changed");
    }
}

/// Blank, or JSON in which no message has a `result` member.
fn plainly_no_answer(message: &[u8]) -> bool {
    let body = message.strip_prefix(BOM).unwrap_or(message);
    if body.iter().all(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r')) {
        return true;
    }
    let has_result = |v: &Value| v.as_object().is_some_and(|o| o.contains_key("result"));
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Array(all)) => !all.iter().any(has_result),
        Ok(v) => !has_result(&v),
        Err(_) => false,
    }
}

/// Whether `message` is, to `serde_json::Value`, an answer to the request (ids compared
/// more narrowly than the rewriter does, so this is a subset) listing a "secret" item.
fn lists_a_secret(message: &[u8], setup: Setup) -> bool {
    let body = message.strip_prefix(BOM).unwrap_or(message);
    let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) else { return false };
    let ours = match m.get("id") {
        Some(Value::Number(n)) => setup.id == "1" && n.as_f64() == Some(1.0),
        Some(Value::String(s)) if setup.id == "1" => s.trim_ascii().parse::<f64>() == Ok(1.0),
        Some(Value::String(s)) => s == "a",
        _ => false,
    };
    let items = m.get("result").and_then(|r| r.get(setup.kind.field())).and_then(Value::as_array);
    ours && items.is_some_and(|items| {
        items.iter().any(|i| i.get("name").and_then(Value::as_str).is_some_and(|n| n.contains("secret")))
    })
}

/// The stream with every lone CR but a final one as LF, and an opening BOM on a line of
/// its own (an empty comment line).
fn normalise(stream: &[u8]) -> Vec<u8> {
    let (mut out, rest) = match stream.strip_prefix(BOM) {
        Some(rest) => (b"\xEF\xBB\xBF:\n".to_vec(), rest),
        None => (Vec::new(), stream),
    };
    let from = out.len();
    out.extend_from_slice(rest);
    for i in 0..rest.len().saturating_sub(1) {
        if rest[i] == b'\r' && rest[i + 1] != b'\n' {
            out[from + i] = b'\n';
        }
    }
    out
}

/// The data of every event a WHATWG client dispatches (it strips one opening BOM), and
/// of the incomplete last one.
pub fn whatwg_data(stream: &[u8]) -> Vec<Vec<u8>> {
    let stream = stream.strip_prefix(BOM).unwrap_or(stream);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < stream.len() {
        match stream[i] {
            b'\n' => {
                lines.push(&stream[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&stream[start..i]);
                if stream.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    if start < stream.len() {
        lines.push(&stream[start..]);
    }
    events(lines.into_iter(), |v| v.strip_prefix(b" ").unwrap_or(v).to_vec())
}

/// The same as a client that splits lines on LF only, drops trailing CRs and trims
/// each `data` value (the Go SDK's reading).
pub fn lf_only_data(stream: &[u8]) -> Vec<Vec<u8>> {
    let lines = stream.split(|b| *b == b'\n').map(|l| {
        let keep = l.iter().rposition(|b| *b != b'\r').map_or(0, |p| p + 1);
        &l[..keep]
    });
    events(lines, |v| match std::str::from_utf8(v) {
        Ok(s) => s.trim().as_bytes().to_vec(),
        Err(_) => v.trim_ascii().to_vec(),
    })
}

fn events<'a>(lines: impl Iterator<Item = &'a [u8]>, value: impl Fn(&[u8]) -> Vec<u8>) -> Vec<Vec<u8>> {
    let mut all = Vec::new();
    let mut data: Option<Vec<u8>> = None;
    for line in lines {
        if line.is_empty() {
            all.extend(data.take());
            continue;
        }
        let (name, v) = match line.iter().position(|b| *b == b':') {
            Some(p) => (&line[..p], value(&line[p + 1..])),
            None => (line, Vec::new()),
        };
        if name == b"data" {
            match &mut data {
                None => data = Some(v),
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(&v);
                }
            }
        }
    }
    all.extend(data);
    all
}
