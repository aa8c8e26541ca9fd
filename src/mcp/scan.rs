//! A cursor over JSON text (RFC 8259) for [`super::peek`]: it reads the members it is
//! asked for in place and skips everything else without building values, with `memchr` (and,
//! for short strings, a word-at-a-time search) over strings, allocating nothing unless a
//! wanted string has escapes.

use std::borrow::Cow;

/// A JSON string token as it stands in the text.
pub(super) struct Str<'a> {
    /// Quotes included.
    pub(super) token: &'a str,
    /// Where the token starts in the text.
    pub(super) from: usize,
    escaped: bool,
}

impl<'a> Str<'a> {
    /// The string's value: borrowed unless it has escapes (which `serde_json` decodes and
    /// checks, lone surrogates included).
    pub(super) fn value(&self) -> Option<Cow<'a, str>> {
        match self.escaped {
            false => self.token.get(1..self.token.len() - 1).map(Cow::Borrowed),
            true => serde_json::from_str::<String>(self.token).ok().map(Cow::Owned),
        }
    }
}

/// Where the first `"` or `\` of `s` is. Most strings in a message are short (member
/// names, a method, a tool name), where `memchr2`'s call and set-up cost more than the
/// search: the first 32 bytes are searched a word at a time, the rest with `memchr2`.
#[inline(always)]
fn quote_or_backslash(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    const BACKSLASHES: u64 = u64::from_ne_bytes([b'\\'; 8]);
    // A high bit for each zero byte of `v`. A borrow can also mark a byte above a zero
    // byte, never one below it, so the lowest mark is exact.
    let zeros = |v: u64| v.wrapping_sub(ONES) & !v & HIGHS;
    let mut at = 0;
    while let Some(word) = s.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().ok()?);
        let marks = zeros(word ^ QUOTES) | zeros(word ^ BACKSLASHES);
        if marks != 0 {
            return Some(at + (marks.trailing_zeros() / 8) as usize);
        }
        at += 8;
        if at == 32 {
            return memchr::memchr2(b'"', b'\\', &s[at..]).map(|i| at + i);
        }
    }
    s[at..].iter().position(|&b| b == b'"' || b == b'\\').map(|i| at + i)
}

/// A cursor over the JSON text.
pub(super) struct Scan<'a> {
    pub(super) json: &'a str,
    pub(super) at: usize,
}

impl<'a> Scan<'a> {
    pub(super) fn bytes(&self) -> &'a [u8] {
        self.json.as_bytes()
    }

    /// Past insignificant whitespace (RFC 8259 §2: space, tab, LF, CR).
    #[inline(always)]
    pub(super) fn space(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.bytes().get(self.at) {
            self.at += 1;
        }
    }

    /// The next significant byte, not consumed.
    #[inline(always)]
    pub(super) fn next(&mut self) -> Option<u8> {
        self.space();
        self.bytes().get(self.at).copied()
    }

    #[inline(always)]
    pub(super) fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then(|| self.at += 1)
    }

    #[inline(always)]
    pub(super) fn string(&mut self) -> Option<Str<'a>> {
        if self.next()? != b'"' {
            return None;
        }
        let from = self.at;
        self.at += 1;
        let mut escaped = false;
        loop {
            let rest = self.bytes().get(self.at..)?;
            let stop = quote_or_backslash(rest)?;
            self.at += stop;
            if rest[stop] == b'"' {
                self.at += 1;
                return Some(Str { token: self.json.get(from..self.at)?, from, escaped });
            }
            escaped = true;
            match *self.bytes().get(self.at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => self.at += 2,
                b'u' if self.bytes().get(self.at + 2..self.at + 6)?.iter().all(u8::is_ascii_hexdigit) => self.at += 6,
                _ => return None,
            }
        }
    }

    pub(super) fn literal(&mut self, word: &str) -> Option<()> {
        self.json.get(self.at..)?.starts_with(word).then(|| self.at += word.len())
    }

    /// RFC 8259 §6: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
    pub(super) fn number(&mut self) -> Option<()> {
        let b = self.bytes();
        let digits = |mut i: usize| {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            i
        };
        let mut i = self.at + usize::from(b.get(self.at) == Some(&b'-'));
        i = match b.get(i)? {
            b'0' => i + 1,
            b'1'..=b'9' => digits(i + 1),
            _ => return None,
        };
        if b.get(i) == Some(&b'.') {
            let end = digits(i + 1);
            (end > i + 1).then_some(())?;
            i = end;
        }
        if let Some(b'e' | b'E') = b.get(i) {
            i += 1;
            i += usize::from(matches!(b.get(i), Some(b'+' | b'-')));
            let end = digits(i);
            (end > i).then_some(())?;
            i = end;
        }
        self.at = i;
        Some(())
    }

    /// Past one value of any kind, containers nested at most `depth` deep.
    pub(super) fn skip(&mut self, depth: u32) -> Option<()> {
        match self.next()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(depth, |scan, _| scan.skip(depth - 1)),
            b'[' => self.array(depth),
            b't' => self.literal("true"),
            b'f' => self.literal("false"),
            b'n' => self.literal("null"),
            b'-' | b'0'..=b'9' => self.number(),
            _ => None,
        }
    }

    /// The text of one value (for a JSON-RPC id).
    pub(super) fn value_text(&mut self, depth: u32) -> Option<&'a str> {
        self.space();
        let from = self.at;
        self.skip(depth)?;
        self.json.get(from..self.at)
    }

    /// An object, each member's value read (or skipped) by `member` with its unescaped name.
    pub(super) fn object(
        &mut self,
        depth: u32,
        mut member: impl FnMut(&mut Scan<'a>, &str) -> Option<()>,
    ) -> Option<()> {
        if depth == 0 {
            return None;
        }
        self.expect(b'{')?;
        if self.next()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let name = self.string()?.value()?;
            self.expect(b':')?;
            member(self, &name)?;
            match self.next()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    pub(super) fn array(&mut self, depth: u32) -> Option<()> {
        if depth == 0 {
            return None;
        }
        self.expect(b'[')?;
        if self.next()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            self.skip(depth - 1)?;
            match self.next()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A wanted member that is a string or `null`; anything else makes the body unreadable.
    #[inline(always)]
    pub(super) fn string_or_null(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.next()? {
            b'"' => Some(Some(self.string()?.value()?)),
            b'n' => self.literal("null").map(|()| None),
            _ => None,
        }
    }

    /// A wanted member that is an object (read by `member`: `true`) or `null` (`false`).
    pub(super) fn object_or_null(
        &mut self,
        depth: u32,
        member: impl FnMut(&mut Scan<'a>, &str) -> Option<()>,
    ) -> Option<bool> {
        match self.next()? {
            b'{' => self.object(depth, member).map(|()| true),
            b'n' => self.literal("null").map(|()| false),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_word_search_finds_what_memchr2_finds() {
        // Every length across the word and `memchr2` boundaries, a stop at every place, and
        // bytes one off a stop (a borrow in the word search would show as a false stop).
        for len in 0..80 {
            for stop in (0..len).map(Some).chain([None]) {
                for (filler, mark) in
                    [(b'a', b'"'), (b'!', b'\\'), (b'#', b'"'), (b'[', b'\\'), (0x01, b'"'), (0xff, b'\\')]
                {
                    let mut s = vec![filler; len];
                    if let Some(at) = stop {
                        s[at] = mark;
                        if at + 1 < len {
                            s[at + 1] = if mark == b'"' { b'\\' } else { b'"' };
                        }
                    }
                    assert_eq!(quote_or_backslash(&s), memchr::memchr2(b'"', b'\\', &s), "{len} {stop:?} {filler}");
                }
            }
        }
    }
}
