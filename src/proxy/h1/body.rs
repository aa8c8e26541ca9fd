//! Message body framing on the own HTTP/1.1 path (RFC 9112 §6 and §7.1).
//!
//! The target's body is decoded by its own framing (a length, chunked coding, or the end
//! of the connection) and re-framed for the client: the same bytes under
//! `Content-Length` when the target gave one, otherwise the proxy's own chunks. Chunked
//! input is parsed strictly (no bare LF, no oversized sizes, bounded trailers): what the
//! client receives is always well framed, whatever the target sent, so a confused target
//! cannot desynchronise the client connection.

/// How the target frames its response body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (HEAD, 1xx, 204, 304).
    Empty,
    /// `Content-Length` bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the target closes the connection (RFC 9112 §6.3 rule 8).
    Close,
}

/// The target's body broke its framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the MCP server sent a malformed chunked body")]
    BadChunk,
    #[error("the MCP server closed the connection before the end of the body")]
    Truncated,
}

/// Longest chunk-size line (digits and extensions) and trailer section accepted.
const MAX_LINE: u32 = 4096;
const MAX_TRAILERS: u32 = 16 * 1024;

/// Incremental decoder of one response body.
#[derive(Debug)]
pub struct Decoder {
    state: State,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Length(u64),
    Close,
    /// In a chunk-size line: the size so far, digits seen, whether in an extension, and
    /// the line's length so far.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
        cr: bool,
        len: u32,
    },
    Data(u64),
    /// After a chunk's data: expecting CR (false) or LF (true).
    DataEnd {
        cr: bool,
    },
    /// In the trailer section: whether the current line is empty so far, whether a CR
    /// was seen, and the section's length so far.
    Trailers {
        line_empty: bool,
        cr: bool,
        len: u32,
    },
    Done,
}

impl Decoder {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Size { size: 0, digits: 0, ext: false, cr: false, len: 0 },
            Framing::Close => State::Close,
        };
        Decoder { state }
    }

    /// Whether the whole body has been decoded.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done)
    }

    /// Decodes `input`, appending the body's data to `out`. Returns how many bytes of
    /// `input` belong to this body; anything after them (once done) is not part of it.
    pub fn decode(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<usize, BodyError> {
        // What is left of `input`: always a suffix of it.
        let mut rest = input;
        while !rest.is_empty() {
            match &mut self.state {
                State::Done => break,
                State::Close => {
                    out.extend_from_slice(rest);
                    rest = &[];
                }
                State::Length(left) | State::Data(left) => {
                    // All of `rest` when the body needs that much or more.
                    let (data, after) =
                        usize::try_from(*left).ok().and_then(|n| rest.split_at_checked(n)).unwrap_or((rest, &[]));
                    out.extend_from_slice(data);
                    rest = after;
                    // Never saturates: `data` is at most `left` bytes long.
                    *left = left.saturating_sub(data.len() as u64);
                    if *left == 0 {
                        self.state = match self.state {
                            State::Data(_) => State::DataEnd { cr: false },
                            _ => State::Done,
                        };
                    }
                }
                State::Size { size, digits, ext, cr, len } => {
                    let Some((&b, after)) = rest.split_first() else { break };
                    rest = after;
                    // Saturates (if ever) far above MAX_LINE, which is refused.
                    *len = len.saturating_add(1);
                    if *len > MAX_LINE {
                        return Err(BodyError::BadChunk);
                    }
                    if *cr {
                        if b != b'\n' || *digits == 0 {
                            return Err(BodyError::BadChunk);
                        }
                        self.state = if *size == 0 {
                            State::Trailers { line_empty: true, cr: false, len: 0 }
                        } else {
                            State::Data(*size)
                        };
                        continue;
                    }
                    match b {
                        b'\r' => *cr = true,
                        _ if *ext => {
                            // Extensions are skipped (RFC 9112 §7.1.1: unknown ones are ignored),
                            // but a control character in them is not HTTP.
                            if b != b'\t' && (b < 0x20 || b == 0x7f) {
                                return Err(BodyError::BadChunk);
                            }
                        }
                        b';' | b' ' | b'\t' if *digits > 0 => *ext = true,
                        _ => {
                            let digit = (b as char).to_digit(16).ok_or(BodyError::BadChunk)?;
                            // 15 hex digits are 60 bits: no overflow, and far past any body.
                            let Some(more) = digits.checked_add(1).filter(|&d| d <= 15) else {
                                return Err(BodyError::BadChunk);
                            };
                            *digits = more;
                            *size = (*size << 4) | u64::from(digit);
                        }
                    }
                }
                State::DataEnd { cr } => {
                    let Some((&b, after)) = rest.split_first() else { break };
                    rest = after;
                    match (b, *cr) {
                        (b'\r', false) => *cr = true,
                        (b'\n', true) => self.state = State::Size { size: 0, digits: 0, ext: false, cr: false, len: 0 },
                        _ => return Err(BodyError::BadChunk),
                    }
                }
                State::Trailers { line_empty, cr, len } => {
                    let Some((&b, after)) = rest.split_first() else { break };
                    rest = after;
                    // Saturates (if ever) far above MAX_TRAILERS, which is refused.
                    *len = len.saturating_add(1);
                    if *len > MAX_TRAILERS {
                        return Err(BodyError::BadChunk);
                    }
                    match (b, *cr) {
                        (b'\n', true) if *line_empty => self.state = State::Done,
                        (b'\n', true) => {
                            *line_empty = true;
                            *cr = false;
                        }
                        (b'\r', false) => *cr = true,
                        (b'\n', false) | (_, true) => return Err(BodyError::BadChunk),
                        _ => *line_empty = false,
                    }
                }
            }
        }
        // Never saturates: `rest` is a suffix of `input`.
        Ok(input.len().saturating_sub(rest.len()))
    }

    /// The target closed the connection: the end of a close-delimited body, otherwise a
    /// truncated one.
    pub(crate) fn finish_at_eof(&mut self) -> Result<(), BodyError> {
        match self.state {
            State::Close | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(BodyError::Truncated),
        }
    }
}

/// Wraps `out[start..]` as one chunk (RFC 9112 §7.1), in place; nothing if it is empty
/// (or `start` is past the end: then there is nothing to wrap either).
pub fn frame_chunk(out: &mut Vec<u8>, start: usize) {
    let Some(len) = out.len().checked_sub(start).filter(|&n| n > 0) else { return };
    // The size in hex, no leading zeros (at most 16 digits), then CRLF; filled from the right.
    let mut head = [0u8; 18];
    let [digits @ .., cr, lf] = &mut head;
    (*cr, *lf) = (b'\r', b'\n');
    let (mut rest, mut first) = (len, 0);
    for (at, slot) in digits.iter_mut().enumerate().rev() {
        *slot = hex_digit(rest);
        rest >>= 4;
        if rest == 0 {
            first = at;
            break;
        }
    }
    out.splice(start..start, head.iter().skip(first).copied());
    out.extend_from_slice(b"\r\n");
}

/// The lowercase hex digit for the low four bits of `n`.
fn hex_digit(n: usize) -> u8 {
    match n & 0xf {
        0 => b'0',
        1 => b'1',
        2 => b'2',
        3 => b'3',
        4 => b'4',
        5 => b'5',
        6 => b'6',
        7 => b'7',
        8 => b'8',
        9 => b'9',
        10 => b'a',
        11 => b'b',
        12 => b'c',
        13 => b'd',
        14 => b'e',
        _ => b'f',
    }
}

/// The end of a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// `content-length: N` and its line end, the number written without the formatting
/// machinery (every head the own engine writes has one).
pub(crate) fn content_length_line(out: &mut Vec<u8>, n: impl itoa::Integer) {
    out.extend_from_slice(b"content-length: ");
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn lengths_are_written_in_decimal() {
        for n in [0, 7, 10, 99, 300, 4096, 8_388_608, usize::MAX] {
            let mut out = Vec::new();
            content_length_line(&mut out, n);
            assert_eq!(out, format!("content-length: {n}\r\n").into_bytes());
        }
    }

    fn decode_all(framing: Framing, parts: &[&[u8]]) -> (Result<Vec<u8>, BodyError>, bool) {
        let mut d = Decoder::new(framing);
        let mut out = Vec::new();
        for p in parts {
            match d.decode(p, &mut out) {
                Ok(used) => assert!(used <= p.len()),
                Err(e) => return (Err(e), false),
            }
        }
        let done = d.is_done();
        (Ok(out), done)
    }

    #[test]
    fn chunked_bodies_decode_across_any_split() {
        let wire: &[u8] = b"5;name=v\r\nhello\r\n7\r\n, world\r\n0\r\nx-trailer: 1\r\n\r\n";
        for split in 0..wire.len() {
            let (out, done) = decode_all(Framing::Chunked, &[&wire[..split], &wire[split..]]);
            assert_eq!(out.unwrap(), b"hello, world", "split at {split}");
            assert!(done, "split at {split}");
        }
    }

    #[test]
    fn bytes_after_the_body_are_not_consumed() {
        let mut d = Decoder::new(Framing::Chunked);
        let mut out = Vec::new();
        let wire = b"2\r\nok\r\n0\r\n\r\nHTTP/1.1 200 OK\r\n";
        assert_eq!(d.decode(wire, &mut out).unwrap(), 12);
        assert!(d.is_done());
        let mut d = Decoder::new(Framing::Length(2));
        out.clear();
        assert_eq!(d.decode(b"okEXTRA", &mut out).unwrap(), 2);
        assert_eq!(out, b"ok");
        assert!(d.is_done());
    }

    #[test]
    fn malformed_chunked_bodies_are_refused() {
        for bad in [
            &b"5\nhello\r\n0\r\n\r\n"[..],
            b"x\r\n",
            b"\r\n",
            b"5\r\nhelloXX",
            b"1000000000000000\r\n",
            b"0\r\n\n",
            b"2;\x01\r\n",
            b"0\r\nbad\rline\r\n\r\n",
        ] {
            let (out, _) = decode_all(Framing::Chunked, &[bad]);
            assert_eq!(out, Err(BodyError::BadChunk), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn eof_ends_only_close_delimited_bodies() {
        let mut d = Decoder::new(Framing::Close);
        let mut out = Vec::new();
        d.decode(b"anything", &mut out).unwrap();
        assert!(d.finish_at_eof().is_ok());
        assert!(d.is_done());
        let mut d = Decoder::new(Framing::Length(10));
        d.decode(b"short", &mut out).unwrap();
        assert_eq!(d.finish_at_eof(), Err(BodyError::Truncated));
        let mut d = Decoder::new(Framing::Chunked);
        d.decode(b"5\r\nhel", &mut out).unwrap();
        assert_eq!(d.finish_at_eof(), Err(BodyError::Truncated));
    }

    #[test]
    fn chunks_are_framed_with_their_exact_length() {
        let mut out = b"HEAD".to_vec();
        out.extend_from_slice(&[b'a'; 300]);
        frame_chunk(&mut out, 4);
        assert!(out.starts_with(b"HEAD12c\r\naaa"), "{:?}", String::from_utf8_lossy(&out[..12]));
        assert!(out.ends_with(b"a\r\n"));
        assert_eq!(out.len(), 4 + 5 + 300 + 2);
        let mut empty = b"x".to_vec();
        frame_chunk(&mut empty, 1);
        assert_eq!(empty, b"x");
        let mut one = b"z".to_vec();
        frame_chunk(&mut one, 0);
        assert_eq!(one, b"1\r\nz\r\n");
    }
}
