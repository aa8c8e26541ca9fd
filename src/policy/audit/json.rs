//! The bytes of an audit line as ToolHive's Go writes them: string escaping (`log/slog`'s
//! JSON handler and `encoding/json`), RFC 3339 timestamps with Go's `RFC3339Nano` fraction,
//! request/response bodies re-encoded the way `json.Unmarshal` into `any` followed by
//! `json.Marshal` re-encodes them, and the random UUID v4 of `github.com/google/uuid`.
//!
//! Byte-for-byte fidelity matters because operators diff, grep and hash these lines, not only
//! parse them.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Which Go encoder a string goes through: the three escape slightly differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flavor {
    /// `log/slog`'s own escaper (`slog.String` attributes: `audit_id`, `type`, `source.value`
    /// ...): `\n` `\r` `\t` short forms only, no HTML escaping.
    Slog,
    /// `json.Encoder` with `SetEscapeHTML(false)`, which slog uses for `slog.Any` values (the
    /// `extra`, `subjects` and `target` maps): also the `\b` `\f` short forms (Go 1.22+).
    Encoder,
    /// `json.Marshal` (the `data` object, marshalled before slog sees it): as `Encoder`, and
    /// `<` `>` `&` escaped.
    Marshal,
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal.
pub(super) fn push_str(out: &mut String, s: &str, flavor: Flavor) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' if flavor != Flavor::Slog => out.push_str("\\b"),
            '\u{c}' if flavor != Flavor::Slog => out.push_str("\\f"),
            '<' | '>' | '&' if flavor == Flavor::Marshal => push_u_escape(out, c as u32),
            // All three escape the JavaScript line terminators (valid JSON, invalid JS).
            '\u{2028}' | '\u{2029}' => push_u_escape(out, c as u32),
            c if (c as u32) < 0x20 => push_u_escape(out, c as u32),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn push_u_escape(out: &mut String, code: u32) {
    out.push_str("\\u");
    for shift in [12, 8, 4, 0] {
        out.push(char::from(HEX[((code >> shift) & 0xf) as usize]));
    }
}

/// Appends `t` in UTC as Go's `time.RFC3339Nano` prints it: nanoseconds with trailing zeros
/// trimmed, no fraction at all on a whole second, `Z` for UTC.
pub(super) fn push_time(out: &mut String, t: SystemTime) {
    // A clock before 1970 is not a real case; the epoch is a harmless stand-in.
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let rem = secs % 86_400;
    let _ = write!(out, "\"{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}", rem / 3600, rem % 3600 / 60, rem % 60);
    let nanos = since.subsec_nanos();
    if nanos != 0 {
        let digits = format!("{nanos:09}");
        out.push('.');
        out.push_str(digits.trim_end_matches('0'));
    }
    out.push_str("Z\"");
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Appends a captured body as ToolHive's `addEventData` does: JSON is parsed into Go's `any`
/// and marshalled again (compact, object keys sorted, every number a float64), anything else
/// becomes a string (invalid UTF-8 replaced by U+FFFD, as Go's marshaller does).
pub(super) fn push_body(out: &mut String, body: &[u8]) {
    // serde_json's recursion limit (128) bounds `push_value`'s recursion.
    match serde_json::from_slice::<Value>(body) {
        Ok(value) => push_value(out, &value),
        Err(_) => push_str(out, &String::from_utf8_lossy(body), Flavor::Marshal),
    }
}

fn push_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => match n.as_f64() {
            Some(f) => push_go_float(out, f),
            None => out.push_str(&n.to_string()),
        },
        Value::String(s) => push_str(out, s, Flavor::Marshal),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            // Go marshals a map with its keys sorted bytewise.
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_str(out, key, Flavor::Marshal);
                out.push(':');
                push_value(out, item);
            }
            out.push('}');
        }
    }
}

/// A float64 as `encoding/json` writes it: shortest round-trip digits, plain notation
/// unless |f| < 1e-6 or |f| >= 1e21, then `1e+21` / `1e-7` style exponents.
fn push_go_float(out: &mut String, f: f64) {
    let abs = f.abs();
    if abs != 0.0 && !(1e-6..1e21).contains(&abs) {
        let s = format!("{f:e}");
        match s.split_once('e') {
            Some((mantissa, exp)) => {
                out.push_str(mantissa);
                out.push('e');
                if !exp.starts_with('-') {
                    out.push('+');
                }
                out.push_str(exp);
            }
            None => out.push_str(&s),
        }
    } else {
        let _ = write!(out, "{f}");
    }
}

/// A random (version 4) UUID in its lowercase hyphenated form, as `uuid.New().String()`.
pub(super) fn uuid_v4() -> String {
    let mut b = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        // The system RNG failing is not a reason to lose an audit event: fall back to the
        // clock and a counter, which keeps ids unique within this process.
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos();
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        b[..8].copy_from_slice(&(nanos as u64).to_be_bytes());
        b[8..].copy_from_slice(&n.to_be_bytes());
    }
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(char::from(HEX[usize::from(byte >> 4)]));
        s.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn time(secs: u64, nanos: u32) -> String {
        let mut out = String::new();
        push_time(&mut out, UNIX_EPOCH + Duration::new(secs, nanos));
        out
    }

    #[test]
    fn times_print_as_go_rfc3339nano() {
        assert_eq!(time(0, 0), "\"1970-01-01T00:00:00Z\"");
        // docs/middleware.md's example timestamp.
        assert_eq!(time(1_765_795_112, 164_124_000), "\"2025-12-15T10:38:32.164124Z\"");
        assert_eq!(time(951_782_400, 1), "\"2000-02-29T00:00:00.000000001Z\"");
        assert_eq!(time(4_107_542_399, 500_000_000), "\"2100-02-28T23:59:59.5Z\"");
    }

    #[test]
    fn strings_escape_as_go() {
        let s = "a\"b\\c\n\r\t\u{8}\u{c}\u{1}<>&\u{2028}é";
        let mut slog = String::new();
        push_str(&mut slog, s, Flavor::Slog);
        assert_eq!(slog, r#""a\"b\\c\n\r\t\u0008\u000c\u0001<>&\u2028é""#);
        let mut encoder = String::new();
        push_str(&mut encoder, s, Flavor::Encoder);
        assert_eq!(encoder, r#""a\"b\\c\n\r\t\b\f\u0001<>&\u2028é""#);
        let mut marshal = String::new();
        push_str(&mut marshal, s, Flavor::Marshal);
        assert_eq!(marshal, r#""a\"b\\c\n\r\t\b\f\u0001\u003c\u003e\u0026\u2028é""#);
    }

    #[test]
    fn bodies_reencode_as_go_any() {
        let mut out = String::new();
        push_body(
            &mut out,
            br#" {"z": 1, "a": [1.0, 2.5, 1e21, 1e-7, 12345678901234567890, "<x>"], "m": {"b": null, "a": true}} "#,
        );
        assert_eq!(
            out,
            r#"{"a":[1,2.5,1e+21,1e-7,12345678901234567000,"\u003cx\u003e"],"m":{"a":true,"b":null},"z":1}"#
        );
        let mut out = String::new();
        push_body(&mut out, b"event: message\ndata: {\"a\":1}\n\xff");
        assert_eq!(out, "\"event: message\\ndata: {\\\"a\\\":1}\\n\u{fffd}\"");
        let mut out = String::new();
        push_body(&mut out, br#"{"truncated": "#);
        assert_eq!(out, r#""{\"truncated\": ""#, "a cut body is not JSON: kept as a string");
    }

    #[test]
    fn uuids_are_v4() {
        let a = uuid_v4();
        let b = uuid_v4();
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        let parts: Vec<&str> = a.split('-').collect();
        assert_eq!(parts.iter().map(|p| p.len()).collect::<Vec<_>>(), [8, 4, 4, 4, 12]);
        assert!(parts[2].starts_with('4'));
        assert!(matches!(parts[3].as_bytes()[0], b'8' | b'9' | b'a' | b'b'));
        assert!(a.bytes().all(|c| c == b'-' || c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
    }
}
