//! A list answer sent as an event stream (WHATWG HTML §9.2 "Server-sent events"; MCP
//! 2025-11-25 Transports §Streamable HTTP), rewritten event by event: each event whose
//! data is the answer is filtered ([`Target::rewrite`]), every other event passes as it
//! came, as soon as its blank line arrives.
//!
//! The stream is framed as WHATWG frames it (lines end in LF, CRLF or a lone CR; a BOM may
//! open the stream; `data` lines join with LF), which is how browsers and the TypeScript
//! SDK read it. An opening BOM is read past but passed on: the client strips it itself,
//! and were it stripped here, a second BOM behind it would open the stream, be stripped
//! by the client in turn, and turn a line judged here as a field named `\u{feff}data`
//! into a `data` line. A client that strips no BOM reads the first line as a field named
//! `\u{feff}…`, so the BOM is sent on a line of its own (an empty comment line): every
//! reader then ignores that line and reads the rest as it was judged here.
//!
//! Some clients split lines on LF only (the Go SDK; ToolHive's own filter follows it on
//! purpose): to them a lone CR is part of a line, so the same bytes can frame different
//! events — a `data` line that continues past a lone CR with text WHATWG reads as another
//! field can carry an answer only they see. So no lone CR leaves here: every lone CR
//! becomes an LF (the same line break to a WHATWG reader, now one to every reader too), and
//! all readers see the events judged here. The one exception is a CR that is the stream's
//! very last byte: nothing follows it for anyone to misread.

use bytes::{Bytes, BytesMut};

use super::message::{BOM, Message, Target};
use super::{Judge, TooLarge};

/// An opening BOM as it is passed on: on a line of its own, an empty comment line.
const BOM_LINE: &[u8] = b"\xEF\xBB\xBF:\n";

/// The stream's state between two pieces.
#[derive(Default)]
pub(super) struct EventStream {
    /// An incomplete event (or the first bytes of the stream, while they might still be
    /// the start of a BOM).
    held: BytesMut,
    /// Where the scan of `held` resumes, so each byte is scanned once.
    cursor: Cursor,
    /// Whether the stream's first three bytes were looked at for a BOM.
    started: bool,
}

/// A position in a block being scanned.
#[derive(Clone, Copy, Default)]
struct Cursor {
    /// The next byte to look at.
    pos: usize,
    /// Where the current line starts.
    line_start: usize,
}

impl Cursor {
    fn at(pos: usize) -> Cursor {
        Cursor { pos, line_start: pos }
    }
}

/// What the events rewritten so far come to: unchanged runs stay slices of the input.
#[derive(Default)]
struct Output(Vec<Bytes>);

impl Output {
    fn push(&mut self, bytes: Bytes) {
        if !bytes.is_empty() {
            self.0.push(bytes);
        }
    }

    fn into_bytes(self) -> Bytes {
        match <[Bytes; 1]>::try_from(self.0) {
            Ok([one]) => one,
            Err(pieces) => {
                let mut out = BytesMut::with_capacity(pieces.iter().map(Bytes::len).sum());
                for p in pieces {
                    out.extend_from_slice(&p);
                }
                out.freeze()
            }
        }
    }
}

impl EventStream {
    pub(super) fn feed(
        &mut self,
        data: Bytes,
        target: &Target,
        judge: &dyn Judge,
        limit: usize,
    ) -> Result<Bytes, TooLarge> {
        let Some((data, skip)) = self.start(data) else { return Ok(Bytes::new()) };
        let mut out = Output::default();
        if skip > 0 {
            // See the module's notes.
            out.push(Bytes::from_static(BOM_LINE));
        }
        if self.held.is_empty() {
            // Common case: the piece holds whole events. Scan it in place; unchanged events
            // go on as slices of it.
            let (mut run, mut start, mut cursor) = (skip, skip, Cursor::at(skip));
            while let Some(end) = block_end(&data, &mut cursor, false) {
                let block = data.get(start..end).unwrap_or_default();
                if let Some(new) = rewrite_block(block, false, target, judge, limit)? {
                    out.push(data.slice(run..start));
                    out.push(Bytes::from(new));
                    run = end;
                }
                start = end;
                cursor = Cursor::at(end);
            }
            out.push(data.slice(run..start));
            self.held.extend_from_slice(data.get(start..).unwrap_or_default());
            self.cursor =
                Cursor { pos: cursor.pos.saturating_sub(start), line_start: cursor.line_start.saturating_sub(start) };
        } else {
            self.held.extend_from_slice(&data);
            while let Some(end) = block_end(&self.held, &mut self.cursor, false) {
                let block = self.held.split_to(end).freeze();
                self.cursor = Cursor::default();
                out.push(match rewrite_block(&block, false, target, judge, limit)? {
                    None => block,
                    Some(new) => Bytes::from(new),
                });
            }
        }
        if self.held.len() > limit {
            return Err(TooLarge { limit });
        }
        Ok(out.into_bytes())
    }

    /// The end of the stream: the events that were only waiting to see whether a final
    /// CR was half of a CRLF, then the incomplete last event, filtered like any other
    /// (the Go SDK dispatches it; WHATWG readers drop it). No line ending is added.
    pub(super) fn finish(mut self, target: &Target, judge: &dyn Judge, limit: usize) -> Result<Bytes, TooLarge> {
        let held = std::mem::take(&mut self.held).freeze();
        let mut out = Output::default();
        let mut cursor = self.cursor;
        let mut start = 0;
        while let Some(end) = block_end(&held, &mut cursor, true) {
            let block = held.slice(start..end);
            out.push(match rewrite_block(&block, end == held.len(), target, judge, limit)? {
                None => block,
                Some(new) => Bytes::from(new),
            });
            start = end;
            cursor = Cursor::at(end);
        }
        let rest = held.slice(start..);
        out.push(match rewrite_block(&rest, true, target, judge, limit)? {
            None => rest,
            Some(new) => Bytes::from(new),
        });
        Ok(out.into_bytes())
    }

    /// Finds a BOM that opens the stream (WHATWG: "One leading U+FEFF BYTE ORDER MARK
    /// character must be ignored if any are present"): the bytes, and how many of them
    /// are the BOM, which is then not held. `None` while the bytes so far might still be
    /// its start.
    fn start(&mut self, data: Bytes) -> Option<(Bytes, usize)> {
        if self.started {
            return Some((data, 0));
        }
        let head = if self.held.is_empty() {
            data
        } else {
            let mut head = std::mem::take(&mut self.held);
            head.extend_from_slice(&data);
            head.freeze()
        };
        if head.len() < BOM.len() && BOM.starts_with(&head) {
            self.held = BytesMut::from(&head[..]);
            return None;
        }
        self.started = true;
        let skip = if head.starts_with(BOM) { BOM.len() } else { 0 };
        Some((head, skip))
    }
}

/// The end of the first complete event block (through its blank line) at or after
/// `cursor`, which is left where the scan stopped. A CR as the last byte might be the
/// first half of a CRLF, so the scan waits for the next byte, unless `eof`.
fn block_end(buf: &[u8], cursor: &mut Cursor, eof: bool) -> Option<usize> {
    while let Some(i) = buf.get(cursor.pos..).and_then(|rest| memchr::memchr2(b'\r', b'\n', rest)) {
        let at = cursor.pos + i;
        let next = match (buf.get(at), buf.get(at + 1)) {
            (Some(b'\r'), None) if !eof => {
                cursor.pos = at;
                return None;
            }
            (Some(b'\r'), Some(b'\n')) => at + 2,
            _ => at + 1,
        };
        let blank = at == cursor.line_start;
        *cursor = Cursor::at(next);
        if blank {
            return Some(next);
        }
    }
    cursor.pos = buf.len();
    None
}

/// One line of a block and the bytes that ended it (LF, CRLF, CR, or nothing at the end
/// of the stream).
struct Line<'a> {
    text: &'a [u8],
    end: &'a [u8],
}

impl<'a> Line<'a> {
    /// The field name: up to the first colon. A comment's is empty.
    fn name(&self) -> &'a [u8] {
        self.text.split(|b| *b == b':').next().unwrap_or_default()
    }

    /// The field value: after the first colon, minus one leading space; empty if no colon.
    fn value(&self) -> &'a [u8] {
        match self.text.iter().position(|b| *b == b':') {
            None => &[],
            Some(i) => {
                let v = self.text.get(i + 1..).unwrap_or_default();
                v.strip_prefix(b" ").unwrap_or(v)
            }
        }
    }
}

fn lines(block: &[u8]) -> impl Iterator<Item = Line<'_>> {
    let mut rest = block;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let (text, end, tail) = match memchr::memchr2(b'\r', b'\n', rest) {
            None => (rest, &[][..], &[][..]),
            Some(i) => {
                let len = if rest.get(i..i + 2) == Some(b"\r\n") { 2 } else { 1 };
                let (text, after) = rest.split_at(i);
                let (end, tail) = after.split_at(len);
                (text, end, tail)
            }
        };
        rest = tail;
        Some(Line { text, end })
    })
}

/// A line ending as it goes out: a lone CR becomes LF (see the module docs), unless it is
/// the stream's last byte.
fn line_end(end: &[u8], last_of_stream: bool) -> &[u8] {
    if end == b"\r" && !last_of_stream { b"\n" } else { end }
}

/// The block rewritten, or `None` if it goes on as it came. `at_end`: the block is the
/// end of the stream.
fn rewrite_block(
    block: &[u8],
    at_end: bool,
    target: &Target,
    judge: &dyn Judge,
    limit: usize,
) -> Result<Option<Vec<u8>>, TooLarge> {
    if block.len() > limit {
        return Err(TooLarge { limit });
    }
    // The data buffer, as a client builds it: values joined with LF. One line borrows.
    let mut data: Option<std::borrow::Cow<'_, [u8]>> = None;
    for line in lines(block).filter(|l| l.name() == b"data") {
        match &mut data {
            None => data = Some(line.value().into()),
            Some(d) => {
                let d = d.to_mut();
                d.push(b'\n');
                d.extend_from_slice(line.value());
            }
        }
    }
    // An empty buffer is not dispatched (an MCP priming event is one).
    let verdict = match data {
        Some(d) if !d.is_empty() => target.rewrite(&d, judge),
        _ => Message::Unchanged,
    };
    Ok(match verdict {
        Message::Unchanged => has_lone_cr(block, at_end).then(|| rebuild(block, at_end, None)),
        Message::Rewritten(payload) => Some(rebuild(block, at_end, Some((&payload, true)))),
        Message::Refused(payload) => Some(rebuild(block, at_end, Some((&payload, false)))),
    })
}

fn has_lone_cr(block: &[u8], at_end: bool) -> bool {
    memchr::memchr_iter(b'\r', block).any(|i| match block.get(i + 1) {
        Some(b) => *b != b'\n',
        None => !at_end,
    })
}

/// The block's lines in order with their endings (lone CRs as LF). With a payload, the
/// first `data` line carries it and the others go; when the payload is a refusal
/// (`keep_event` false) the `event` lines go too, since a client only dispatches unnamed
/// or `message` events to the request (ToolHive #6037: a named refusal would leave it
/// waiting).
fn rebuild(block: &[u8], at_end: bool, payload: Option<(&[u8], bool)>) -> Vec<u8> {
    let extra = payload.map_or(0, |(p, _)| p.len() + 6);
    let mut out = Vec::with_capacity(block.len() + extra);
    let mut data_written = false;
    let mut rest = block.len();
    for line in lines(block) {
        rest -= line.text.len() + line.end.len();
        let end = line_end(line.end, at_end && rest == 0);
        match payload {
            Some((payload, _)) if line.name() == b"data" && !line.text.is_empty() => {
                if !data_written {
                    out.extend_from_slice(b"data: ");
                    // Compact JSON has no raw line break, but the original spacing kept
                    // around the new array may (a multi-line `data`); in JSON they are
                    // whitespace outside strings, so a space means the same.
                    out.extend(payload.iter().map(|b| if matches!(b, b'\n' | b'\r') { b' ' } else { *b }));
                    out.extend_from_slice(end);
                    data_written = true;
                }
            }
            Some((_, false)) if line.name() == b"event" && !line.text.is_empty() => {}
            _ => {
                out.extend_from_slice(line.text);
                out.extend_from_slice(end);
            }
        }
    }
    // A dropped first line must not leave a line that starts with a BOM at the front: at
    // the start of the stream a client strips it, and a field judged here as
    // `\u{feff}data` would reach it as `data`. An empty comment line keeps it a line
    // like any other.
    if out.starts_with(BOM) && !block.starts_with(BOM) {
        out.splice(0..0, *b":\n");
    }
    out
}

/// A refusal as an event of its own.
pub(super) fn refusal_event(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(body);
    out.extend_from_slice(b"\n\n");
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::value::RawValue;

    use super::super::tests::TestJudge;
    use super::super::{ListKind, ListRewrite};
    use super::*;

    const LIMIT: usize = 64 * 1024;

    fn rewriter() -> ListRewrite {
        ListRewrite::new(true, RawValue::from_string("1".into()).unwrap(), ListKind::Tools, Arc::new(TestJudge), LIMIT)
    }

    /// Feeds `pieces`, then finishes; returns what each call gave.
    fn run(pieces: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut rw = rewriter();
        let mut outs: Vec<Vec<u8>> =
            pieces.iter().map(|p| rw.feed(Bytes::copy_from_slice(p)).unwrap().to_vec()).collect();
        outs.push(rw.finish().unwrap().to_vec());
        outs
    }

    fn whole(stream: &[u8]) -> String {
        String::from_utf8(run(&[stream]).concat()).unwrap()
    }

    const ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"},{"name":"secret"}]}}"#;
    const FILTERED: &str = r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"a"}]}}"#;
    const NOTE: &str = r#"{"jsonrpc":"2.0","method":"notifications/message","params":{"tools":[{"name":"secret"}]}}"#;

    #[test]
    fn events_that_are_not_the_answer_pass_byte_for_byte_as_soon_as_they_end() {
        let mut rw = rewriter();
        let first = format!("id: 0\ndata:\n\n: keepalive\n\nevent: message\ndata:  {NOTE}\n\n");
        assert_eq!(&rw.feed(Bytes::from(format!("{first}data: {{\"json"))).unwrap()[..], first.as_bytes());
        let out =
            rw.feed(Bytes::from(format!("rpc\":\"2.0\",\"method\":\"x\"}}\n\nretry: 5\n\ndata: {ANSWER}"))).unwrap();
        assert_eq!(&out[..], b"data: {\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n\nretry: 5\n\n");
        assert_eq!(&rw.feed(Bytes::from_static(b"\n\n")).unwrap()[..], format!("data: {FILTERED}\n\n").as_bytes());
        assert!(rw.finish().unwrap().is_empty());
    }

    #[test]
    fn the_answer_keeps_its_other_fields_in_order_with_one_data_line() {
        let stream = format!(
            ": c1\nid: 7\nevent: message\ndata: {}\n: c2\ndata: {}\nretry: 10\n\n",
            &ANSWER[..33],
            &ANSWER[33..]
        );
        // The LF that joined the two values stays, as a space.
        let filtered = FILTERED.replace(r#""result":"#, r#""result": "#);
        assert_eq!(
            whole(stream.as_bytes()),
            format!(": c1\nid: 7\nevent: message\ndata: {filtered}\n: c2\nretry: 10\n\n")
        );
    }

    #[test]
    fn multi_line_data_joins_with_lf_and_goes_out_on_one_line() {
        let stream =
            "data: {\"jsonrpc\":\"2.0\",\ndata:\"id\":1,\"result\":{\"tools\":\ndata: [{\"name\":\"secret\"}]}}\n\n";
        assert_eq!(whole(stream.as_bytes()), "data: {\"jsonrpc\":\"2.0\", \"id\":1,\"result\":{\"tools\": []}}\n\n");
    }

    #[test]
    fn a_dropped_event_line_never_lets_a_bom_open_the_stream() {
        // `\u{feff}data` is no `data` field here (not the stream's first line), so the event
        // has no readable answer and is refused, its `event` line dropped. Were the BOM line
        // then the first, a client would strip the BOM and read that line as `data`.
        let stream = "event: x\r\u{feff}data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]}}\ndata: ?\n\n";
        let out = whole(stream.as_bytes());
        assert!(out.starts_with(":\n\u{feff}data: "), "{out:?}");
        assert!(!out.contains("event:") && out.contains("\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"error\""), "{out:?}");
        // Behind a BOM that opens the stream, the same: the client strips that one only.
        let opened = format!("\u{feff}{stream}");
        let out = whole(opened.as_bytes());
        assert!(out.starts_with("\u{feff}:\n:\n\u{feff}data: "), "{out:?}");
    }

    #[test]
    fn a_bom_opened_stream_reads_the_same_to_a_reader_that_keeps_the_bom() {
        // WHATWG strips the BOM and reads `{` + the lines below: JSON without a result,
        // passed on. A reader that keeps the BOM (splitting on LF only) would take the first
        // line for a field named `\u{feff}data` and read the rest alone: not the message
        // judged here. On a line of its own, the BOM is ignored by both.
        let stream = "\u{feff}data: {\ndata: \"jsonrpc\": \"2.0\",\ndata: \"x\": 0\ndata: }\n\n";
        let out = whole(stream.as_bytes());
        assert_eq!(out, stream.replacen('\u{feff}', "\u{feff}:\n", 1));
        let lf_only_first = out.split('\n').next().unwrap_or_default();
        assert!(!lf_only_first.contains("data"), "the BOM's line carries no field: {out:?}");
    }

    #[test]
    fn line_endings_lf_crlf_and_lone_cr() {
        let crlf = format!("event: message\r\ndata: {ANSWER}\r\n\r\n: x\r\n\r\n");
        assert_eq!(whole(crlf.as_bytes()), format!("event: message\r\ndata: {FILTERED}\r\n\r\n: x\r\n\r\n"));
        // A lone CR is a line break: as an LF for the readers that only know LF.
        let cr = format!("event: message\rdata: {ANSWER}\r\r: x\r\r");
        assert_eq!(whole(cr.as_bytes()), format!("event: message\ndata: {FILTERED}\n\n: x\n\r"));
        let mixed = format!(": a\r\n\rdata: {NOTE}\n\r\n");
        assert_eq!(whole(mixed.as_bytes()), format!(": a\r\n\ndata: {NOTE}\n\r\n"));
    }

    #[test]
    fn a_lone_cr_cannot_frame_an_answer_for_lf_only_readers() {
        // WHATWG reads `{"jsonrpc":"2.0","id":2\n}` (no result); a reader splitting on LF
        // only would read the answer with id 1 (its JSON parser keeps the last id).
        let stream = "data: {\"jsonrpc\":\"2.0\",\"id\":2\r,\"id\":1,\"result\":{\"tools\":[{\"name\":\"secret\"}]}\ndata: }\n\n";
        let out = whole(stream.as_bytes());
        assert!(!out.contains('\r'), "{out:?}");
        assert_eq!(out, stream.replace('\r', "\n"));
    }

    #[test]
    fn any_split_gives_the_same_output() {
        let stream = format!(
            "\u{feff}: c\r\n\r\nid: 1\rdata: {NOTE}\r\rdata: {}\r\ndata: {}\r\n\r\nevent: x\ndata: ",
            &ANSWER[..42],
            &ANSWER[42..]
        );
        let stream = format!("{stream}{ANSWER}\r");
        let expected = whole(stream.as_bytes());
        assert!(
            expected.contains(FILTERED)
                && !expected.contains("secret\"}]}}\r\n")
                && expected.starts_with("\u{feff}:\n: c\r\n\r\nid: 1\ndata:")
        );
        let b = stream.as_bytes();
        for cut in 0..=b.len() {
            assert_eq!(String::from_utf8(run(&[&b[..cut], &b[cut..]]).concat()).unwrap(), expected, "cut at {cut}");
        }
        for cut in 0..b.len().saturating_sub(7) {
            let three = [&b[..cut], &b[cut..cut + 7], &b[cut + 7..]];
            assert_eq!(String::from_utf8(run(&three).concat()).unwrap(), expected, "cuts at {cut}, {}", cut + 7);
        }
        let bytes: Vec<&[u8]> = b.chunks(1).collect();
        assert_eq!(String::from_utf8(run(&bytes).concat()).unwrap(), expected);
    }

    #[test]
    fn a_byte_order_mark_opens_the_stream_only() {
        // Read past, passed on, on a line of its own.
        let stream = format!("\u{feff}data: {ANSWER}\n\n");
        assert_eq!(whole(stream.as_bytes()), format!("\u{feff}:\ndata: {FILTERED}\n\n"));
        assert_eq!(run(&[b"\xEF", b"\xBB", b"\xBF", b": x\n\n"]).concat(), b"\xEF\xBB\xBF:\n: x\n\n");
        assert_eq!(
            run(&[b"\xEF\xBB\xBF", b"data: ", ANSWER.as_bytes(), b"\n\n"])[..2],
            [b"\xEF\xBB\xBF:\n".to_vec(), vec![]]
        );
        // A second one is a field name's first character, to this reader and the client.
        let two = format!("\u{feff}\u{feff}data: {ANSWER}\n\n");
        assert_eq!(whole(two.as_bytes()), format!("\u{feff}:\n\u{feff}data: {ANSWER}\n\n"));
        // Not a BOM after all: the bytes are the stream's.
        assert_eq!(run(&[b"\xEF\xBB", b": x\n\n"]).concat(), b"\xEF\xBB: x\n\n");
        assert_eq!(run(&[b"\xEF"]).concat(), b"\xEF");
        // Only one, only at the start: later ones are the stream's.
        let later = format!(": x\n\n\u{feff}data: {ANSWER}\n\n");
        assert_eq!(whole(later.as_bytes()), later);
    }

    #[test]
    fn what_cannot_be_read_is_refused_and_loses_its_event_name() {
        let stream = "id: 3\nevent: message\ndata: {not json\n\n";
        let refusal = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"the MCP server's list answer could not be read by the proxy's policy"}}"#;
        assert_eq!(whole(stream.as_bytes()), format!("id: 3\ndata: {refusal}\n\n"));
        let dup = "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[]},\"result\":{}}\n\n";
        assert_eq!(whole(dup.as_bytes()), format!("data: {refusal}\n\n"));
    }

    #[test]
    fn empty_data_is_not_an_event() {
        for stream in ["id: 1\ndata:\n\n", "data\n\n", "data:\ndata:\n\n", "event: x\n\n", "\n\n\n"] {
            assert_eq!(whole(stream.as_bytes()), stream);
        }
    }

    #[test]
    fn the_incomplete_last_event_is_filtered_without_a_line_end_added() {
        let mut rw = rewriter();
        assert!(rw.feed(Bytes::from(format!("id: 4\ndata: {ANSWER}"))).unwrap().is_empty());
        assert_eq!(&rw.finish().unwrap()[..], format!("id: 4\ndata: {FILTERED}").as_bytes());
        assert_eq!(whole(format!("data: {NOTE}\n").as_bytes()), format!("data: {NOTE}\n"));
        assert_eq!(whole(format!("data: {ANSWER}\r").as_bytes()), format!("data: {FILTERED}\r"));
        assert_eq!(whole(format!("data: {NOTE}\n\r").as_bytes()), format!("data: {NOTE}\n\r"));
    }

    #[test]
    fn an_event_past_the_limit_fails_closed_however_it_arrives() {
        let stream = format!(": ok\n\ndata: {ANSWER}\n\n");
        let limit = 40;
        let mut whole = ListRewrite::new(
            true,
            RawValue::from_string("1".into()).unwrap(),
            ListKind::Tools,
            Arc::new(TestJudge),
            limit,
        );
        assert!(whole.feed(Bytes::from(stream.clone())).is_err());
        let mut split = ListRewrite::new(
            true,
            RawValue::from_string("1".into()).unwrap(),
            ListKind::Tools,
            Arc::new(TestJudge),
            limit,
        );
        assert_eq!(&split.feed(Bytes::from(stream[..20].to_owned())).unwrap()[..], b": ok\n\n");
        assert!(split.feed(Bytes::from(stream[20..50].to_owned())).is_err());
    }

    #[test]
    fn block_boundaries() {
        let end = |buf: &[u8], eof| block_end(buf, &mut Cursor::default(), eof);
        assert_eq!(end(b"a\n\nb", false), Some(3));
        assert_eq!(end(b"a\r\n\r\nb", false), Some(5));
        assert_eq!(end(b"a\r\rb", false), Some(3));
        assert_eq!(end(b"a\r\n\r", false), None, "a trailing CR may be half of CRLF");
        assert_eq!(end(b"a\r\n\r", true), Some(4));
        assert_eq!(end(b"a\nb\n", false), None);
        assert_eq!(end(b"\n", false), Some(1));
        // Resuming where the scan stopped gives the same end.
        let mut cursor = Cursor::default();
        assert_eq!(block_end(b"a\nb\r", &mut cursor, false), None);
        assert_eq!(block_end(b"a\nb\r\r", &mut cursor, false), None);
        assert_eq!(block_end(b"a\nb\r\rx", &mut cursor, false), Some(5));
    }
}
