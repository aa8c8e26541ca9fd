//! Value syntaxes of flags that ToolHive inherits from Go: byte sizes and
//! `time.ParseDuration` durations. Parsing only; ranges are [`crate::config`]'s rules.

use std::time::Duration;

/// Parses a byte size: a whole number with an optional unit (`B`, `KiB`/`K`, `MiB`/`M`,
/// `GiB`/`G` are powers of 1024; `KB`, `MB`, `GB` powers of 1000).
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().map_err(|_| "is not a size; use e.g. 8MiB or 1048576".to_owned())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => return Err(format!("has an unknown unit {other:?}; use B, KiB, MiB or GiB")),
    };
    let bytes = n.checked_mul(mult).filter(|b| *b <= (4u64 << 30)).ok_or("is larger than 4GiB")?;
    if bytes == 0 {
        return Err("must be at least 1 byte".to_owned());
    }
    usize::try_from(bytes).map_err(|_| "is too large for this machine".to_owned())
}

/// Parses a duration in Go's `time.ParseDuration` syntax: one or more decimal numbers,
/// each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), e.g. `30s`, `1.5h`, `2m30s`;
/// a bare `0` is zero. Negative durations are refused.
pub fn parse_go_duration(raw: &str) -> Result<Duration, String> {
    let invalid = || format!("invalid duration {raw:?}; use Go syntax such as 30s, 1m or 2m30s");
    let s = raw.trim();
    let s = s.strip_prefix('+').unwrap_or(s);
    if s.starts_with('-') {
        return Err(format!("duration {raw:?} is negative; use a positive value such as 30s"));
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    if s.is_empty() {
        return Err(invalid());
    }
    let mut total_ns: f64 = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(rest.len());
        let (num, after) = rest.split_at(num_len);
        if num.is_empty() || num == "." {
            return Err(invalid());
        }
        let value: f64 = num.parse().map_err(|_| invalid())?;
        let unit_len = after.find(|c: char| c.is_ascii_digit() || c == '.').unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_len);
        let scale = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(invalid()),
        };
        total_ns += value * scale;
        rest = next;
    }
    if !total_ns.is_finite() || total_ns > (u64::MAX as f64) {
        return Err(invalid());
    }
    Ok(Duration::from_nanos(total_ns.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size("512KiB").unwrap(), 512 << 10);
        assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
        assert_eq!(parse_size("2MB").unwrap(), 2_000_000);
        for bad in ["", "0", "-1", "8XB", "99999GiB", "MiB"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn go_durations() {
        for (s, ms) in [
            ("30s", 30_000),
            ("2m30s", 150_000),
            ("1.5h", 5_400_000),
            ("300ms", 300),
            ("0", 0),
            ("1h2m3.5s", 3_723_500),
        ] {
            assert_eq!(parse_go_duration(s).unwrap(), Duration::from_millis(ms), "{s}");
        }
        assert_eq!(parse_go_duration("1us").unwrap(), Duration::from_micros(1));
        assert_eq!(parse_go_duration("1µs").unwrap(), Duration::from_micros(1));
        for bad in ["", "30", "5 min", "-1s", "s", "1x", ".s", "1.2.3s"] {
            assert!(parse_go_duration(bad).is_err(), "{bad}");
        }
    }
}
