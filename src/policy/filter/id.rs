//! JSON-RPC ids as clients match answers to requests (JSON-RPC 2.0 §5; the TypeScript
//! SDK's `Protocol._onresponse`; ECMA-262 §7.1.4.1.1 StringToNumber): which answers a
//! client could take for the list request's, so that none of them passes unfiltered.

/// A JSON-RPC id, as far as matching an answer to its request goes.
#[derive(Debug)]
pub(super) enum Id {
    Str(String),
    Num(f64),
    /// `null`, a boolean, an object, an array: matches nothing.
    Other,
    /// The request's id was not JSON: every answer matches (fail closed).
    Any,
}

impl Id {
    /// `raw` is JSON text.
    pub(super) fn of(raw: &str) -> Id {
        match raw.as_bytes().first() {
            Some(b'"') => serde_json::from_str(raw).map_or(Id::Other, Id::Str),
            // A JSON number is in Rust's float grammar; one too large for f64 is infinite,
            // as in JavaScript.
            Some(b'-' | b'0'..=b'9') => raw.parse().map_or(Id::Other, Id::Num),
            _ => Id::Other,
        }
    }

    /// Whether a client could take an answer with id `raw` (JSON text) for the request
    /// with this id. Wider than JSON-RPC's "the same value", on purpose (filtering a
    /// message that was not the answer costs nothing; missing the answer leaks it):
    /// - numbers compare by value: `1`, `1.0` and `1e0` are one id (JSON does not tell
    ///   them apart, and JavaScript clients parse all three to the same number);
    /// - strings compare by content after unescaping (`"a"` is `"\u0061"`);
    /// - a string and a number match when JavaScript's `Number(string)` is that number:
    ///   the TypeScript SDK looks answers up by `Number(response.id)`, so `"1"`, `" 1"`,
    ///   `"0x1"` and `"1.0"` all answer its request `1`.
    pub(super) fn may_be(&self, raw: &str) -> bool {
        if let Id::Any = self {
            return true;
        }
        let theirs = Id::of(raw);
        match (self, &theirs) {
            (Id::Str(a), Id::Str(b)) if a == b => true,
            _ => matches!((self.number(), theirs.number()), (Some(a), Some(b)) if a == b),
        }
    }

    fn number(&self) -> Option<f64> {
        match self {
            Id::Num(n) => Some(*n),
            Id::Str(s) => js_number(s),
            Id::Other | Id::Any => None,
        }
    }
}

/// JavaScript's `Number(string)` (ECMA-262 §7.1.4.1.1 StringToNumber); `None` for NaN.
fn js_number(s: &str) -> Option<f64> {
    let t = s.trim_matches(is_js_space);
    if t.is_empty() {
        return Some(0.0);
    }
    let radix = match t.get(..2) {
        Some("0x" | "0X") => 16,
        Some("0o" | "0O") => 8,
        Some("0b" | "0B") => 2,
        _ => 10,
    };
    if radix != 10 {
        let digits = t.get(2..).filter(|d| !d.is_empty())?;
        return digits.chars().try_fold(0.0, |acc, c| Some(acc * f64::from(radix) + f64::from(c.to_digit(radix)?)));
    }
    let (sign, unsigned) = match t.as_bytes().first() {
        Some(b'-') => (-1.0, t.get(1..)?),
        Some(b'+') => (1.0, t.get(1..)?),
        _ => (1.0, t),
    };
    if unsigned == "Infinity" {
        return Some(sign * f64::INFINITY);
    }
    is_decimal(unsigned).then(|| unsigned.parse::<f64>().ok()).flatten().map(|v| sign * v)
}

/// ECMA-262's StrUnsignedDecimalLiteral without `Infinity`: `1`, `1.`, `.5`, `1.5e-3`.
fn is_decimal(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |from: usize| b.iter().skip(from).take_while(|c| c.is_ascii_digit()).count();
    let int = digits(0);
    let mut i = int;
    let mut frac = 0;
    if b.get(i) == Some(&b'.') {
        frac = digits(i + 1);
        i += 1 + frac;
    }
    if int + frac == 0 {
        return false;
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp = digits(i);
        if exp == 0 {
            return false;
        }
        i += exp;
    }
    i == b.len()
}

/// ECMA-262's StrWhiteSpaceChar: WhiteSpace (incl. every Zs) and LineTerminator.
fn is_js_space(c: char) -> bool {
    matches!(
        c,
        '\t' | '\n' | '\u{b}' | '\u{c}' | '\r' | ' ' | '\u{a0}' | '\u{1680}' | '\u{2000}'
            ..='\u{200a}' | '\u{2028}' | '\u{2029}' | '\u{202f}' | '\u{205f}' | '\u{3000}' | '\u{feff}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn javascript_number_conversion() {
        for (s, n) in [
            ("", Some(0.0)),
            (" \u{a0}\u{feff}12\u{3000}", Some(12.0)),
            ("0x1f", Some(31.0)),
            ("0B101", Some(5.0)),
            ("0o17", Some(15.0)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("-1.5e+2", Some(-150.0)),
            ("1e400", Some(f64::INFINITY)),
        ] {
            assert_eq!(js_number(s), n, "{s:?}");
        }
        for nan in ["x", "0x", "-0x1", "1_0", "inf", "NaN", "infinity", ".", "1e", "e1", "1.2.3", "--1", "+"] {
            assert_eq!(js_number(nan), None, "{nan:?}");
        }
    }
}
