//! Server-sent events read as messages, with bounded memory (WHATWG HTML §9.2.6
//! "Interpreting an event stream"; MCP 2025-11-25 Transports §Streamable HTTP, where each
//! event's data is one JSON-RPC message).
//!
//! The proxy itself never needs this: [`super::sse`] passes streams through byte for byte.
//! The stdio bridge does, because it turns each event into one line. A line or an event
//! larger than the limit is an error rather than a growing buffer, so a server that sends
//! an endless line costs at most the limit.

/// One dispatched event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Event {
    /// The `event:` field; `None` means the default type, `message`.
    pub(crate) name: Option<String>,
    /// The data lines joined by `\n`.
    pub(crate) data: Vec<u8>,
}

impl Event {
    /// Whether a client would hand this event to its `message` listener, which is where
    /// MCP puts JSON-RPC messages.
    pub(crate) fn is_message(&self) -> bool {
        self.name.as_deref().is_none_or(|n| n == "message")
    }
}

/// A line or an event went past the limit.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// Parses a stream chunk by chunk.
pub(crate) struct EventReader {
    max: usize,
    /// The current line, not yet terminated.
    line: Vec<u8>,
    /// The data buffer of the event being built.
    data: Vec<u8>,
    /// Whether a `data` field was seen (the buffer alone cannot tell `data:` from none).
    has_data: bool,
    name: Option<String>,
    /// The previous chunk ended in CR: an LF opening this one belongs to it.
    after_cr: bool,
    /// No line was completed yet (a UTF-8 BOM may open the stream).
    first_line: bool,
    /// The `id` field of the event being built (WHATWG's "last event ID buffer").
    id_buffer: Option<String>,
    /// The id of the last event dispatched (or of a block with an id and no data, as a
    /// priming event is): what `Last-Event-ID` resumes from (MCP 2025-11-25 Transports
    /// §Resumability and Redelivery).
    last_id: Option<String>,
}

impl EventReader {
    /// A reader that refuses lines and events longer than `max` bytes.
    pub(crate) fn new(max: usize) -> EventReader {
        EventReader {
            max,
            line: Vec::new(),
            data: Vec::new(),
            has_data: false,
            name: None,
            after_cr: false,
            first_line: true,
            id_buffer: None,
            last_id: None,
        }
    }

    /// The id to resume the stream from with `Last-Event-ID`, once the server gave one.
    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_id.as_deref().filter(|id| !id.is_empty())
    }

    /// A reader for a resumed stream: a fresh parser that keeps the last event id.
    pub(crate) fn resumed(&self) -> EventReader {
        EventReader { last_id: self.last_id.clone(), ..EventReader::new(self.max) }
    }

    /// Takes the next chunk; events it completes are appended to `out` in order.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        while !chunk.is_empty() {
            if std::mem::take(&mut self.after_cr) && chunk[0] == b'\n' {
                chunk = &chunk[1..];
                continue;
            }
            let Some(end) = memchr::memchr2(b'\r', b'\n', chunk) else {
                self.grow_line(chunk)?;
                break;
            };
            self.grow_line(&chunk[..end])?;
            self.after_cr = chunk[end] == b'\r';
            chunk = &chunk[end + 1..];
            let line = std::mem::take(&mut self.line);
            let done = self.line_done(&line, out);
            self.line = line;
            self.line.clear();
            done?;
        }
        Ok(())
    }

    fn grow_line(&mut self, bytes: &[u8]) -> Result<(), TooLarge> {
        if self.line.len() + bytes.len() > self.max {
            return Err(TooLarge);
        }
        self.line.extend_from_slice(bytes);
        Ok(())
    }

    fn line_done(&mut self, line: &[u8], out: &mut Vec<Event>) -> Result<(), TooLarge> {
        let line = if std::mem::take(&mut self.first_line) {
            line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            if let Some(id) = self.id_buffer.take() {
                self.last_id = Some(id);
            }
            let name = self.name.take();
            if std::mem::take(&mut self.has_data) {
                let mut data = std::mem::take(&mut self.data);
                data.pop(); // the LF after the last data line
                out.push(Event { name, data });
            }
            return Ok(());
        }
        if line[0] == b':' {
            return Ok(());
        }
        let (field, value) = match memchr::memchr(b':', line) {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match field {
            b"data" => {
                if self.data.len() + value.len() + 1 > self.max {
                    return Err(TooLarge);
                }
                self.data.extend_from_slice(value);
                self.data.push(b'\n');
                self.has_data = true;
            }
            b"event" => self.name = Some(String::from_utf8_lossy(value).into_owned()),
            // WHATWG: an id with NUL is ignored. A longer id than a header can carry is
            // no id to resume from; the line limit bounds it already.
            b"id" if !value.contains(&0) => self.id_buffer = Some(String::from_utf8_lossy(value).into_owned()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(chunks: &[&[u8]], max: usize) -> Result<Vec<Event>, TooLarge> {
        let mut reader = EventReader::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            reader.feed(chunk, &mut out)?;
        }
        Ok(out)
    }

    fn ev(name: Option<&str>, data: &str) -> Event {
        Event { name: name.map(str::to_owned), data: data.as_bytes().to_vec() }
    }

    #[test]
    fn events_in_any_split_and_line_ending() {
        let whole =
            b"\xEF\xBB\xBFid: 1\r\ndata:\r\n\r\n: ping\n\nevent: message\ndata: {\"a\":\ndata: 1}\r\rdata: x\n\n";
        let want = vec![ev(None, ""), ev(Some("message"), "{\"a\":\n1}"), ev(None, "x")];
        assert_eq!(read(&[whole], 1024).unwrap(), want);
        for cut in 1..whole.len() {
            assert_eq!(read(&[&whole[..cut], &whole[cut..]], 1024).unwrap(), want, "cut at {cut}");
        }
    }

    #[test]
    fn no_data_no_event_and_other_types_are_told_apart() {
        let events = read(&[b"event: endpoint\ndata: /m\n\nretry: 5\n\nid: 2\n\n"], 64).unwrap();
        assert_eq!(events, vec![ev(Some("endpoint"), "/m")]);
        assert!(!events[0].is_message());
        assert!(ev(None, "").is_message());
    }

    #[test]
    fn the_last_event_id_is_the_last_dispatched_one() {
        let mut reader = EventReader::new(64);
        let mut out = Vec::new();
        assert_eq!(reader.last_event_id(), None);
        reader.feed(b"id: p-0\ndata:\n\n", &mut out).unwrap();
        assert_eq!(reader.last_event_id(), Some("p-0"), "a priming event (an id, no data) counts");
        reader.feed(b"id: 7\ndata: {}\n\ndata: {}\n\nid: 8\ndata: x", &mut out).unwrap();
        assert_eq!(reader.last_event_id(), Some("7"), "an event without an id keeps it; 8 is not dispatched yet");
        let resumed = reader.resumed();
        assert_eq!(resumed.last_event_id(), Some("7"));
        reader.feed(b"\n\nid\n\n", &mut out).unwrap();
        assert_eq!(reader.last_event_id(), None, "an empty id resets it");
    }

    #[test]
    fn long_lines_and_events_are_refused_not_buffered() {
        assert_eq!(read(&[&[b'x'; 100]], 64), Err(TooLarge), "an endless line");
        let many = "data: 0123456789\n".repeat(10);
        assert_eq!(read(&[many.as_bytes()], 64), Err(TooLarge), "an event of many short lines");
        assert_eq!(read(&[b"data: 0123456789\n\n"], 64).unwrap().len(), 1);
    }
}
