//! W3C Trace Context (Recommendation, §3.2 `traceparent`, §3.3 `tracestate`): reading a
//! client's trace context, making the proxy's span ids, deciding whether a trace is
//! sampled (OpenTelemetry's parent-based trace-id-ratio sampler), and writing the
//! `traceparent` the target receives.

use std::cell::Cell;

/// The length of a version-00 `traceparent`: `00-<32 hex>-<16 hex>-<2 hex>`.
pub(crate) const TRACEPARENT_LEN: usize = 55;

/// A parsed `traceparent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TraceParent {
    pub(crate) trace_id: [u8; 16],
    pub(crate) parent_id: [u8; 8],
    pub(crate) sampled: bool,
}

impl TraceParent {
    /// Reads a `traceparent` value (§3.2.2): lowercase hex, ids not all zero, version not
    /// `ff`; a later version may append fields after a `-`, which are ignored (§3.2.4).
    pub(crate) fn parse(value: &[u8]) -> Option<TraceParent> {
        let value = value.trim_ascii();
        let head = value.get(..TRACEPARENT_LEN)?;
        let version = hex::<1>(head.get(0..2)?)?;
        match (version[0], value.len()) {
            (0xff, _) => return None,
            (0, TRACEPARENT_LEN) => {}
            (0, _) => return None,
            (_, n) if n > TRACEPARENT_LEN && value[TRACEPARENT_LEN] != b'-' => return None,
            _ => {}
        }
        if head[2] != b'-' || head[35] != b'-' || head[52] != b'-' {
            return None;
        }
        let trace_id = hex::<16>(head.get(3..35)?)?;
        let parent_id = hex::<8>(head.get(36..52)?)?;
        let flags = hex::<1>(head.get(53..55)?)?;
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return None;
        }
        Some(TraceParent { trace_id, parent_id, sampled: flags[0] & 1 == 1 })
    }

    /// The version-00 header value naming `self.parent_id` as the parent.
    pub(crate) fn render(&self) -> [u8; TRACEPARENT_LEN] {
        let mut out = [0u8; TRACEPARENT_LEN];
        out[..3].copy_from_slice(b"00-");
        put_hex(&mut out[3..35], &self.trace_id);
        out[35] = b'-';
        put_hex(&mut out[36..52], &self.parent_id);
        out[52] = b'-';
        out[53..].copy_from_slice(if self.sampled { b"01" } else { b"00" });
        out
    }
}

/// Whether a `tracestate` value may be sent as a header (§3.3: at most 512 characters of
/// printable ASCII). A body's `_meta.tracestate` is a client's JSON string: unchecked, a
/// line break in it would start a header of the client's choosing.
pub(crate) fn valid_tracestate(value: &str) -> bool {
    !value.is_empty() && value.len() <= 512 && value.bytes().all(|b| (0x20..=0x7e).contains(&b))
}

/// Lowercase hex of `N` bytes (§3.2.2.3: uppercase is invalid).
fn hex<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (byte, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// The two lowercase hex digits of every byte: one lookup a byte, not one a digit (every
/// traced request renders a `traceparent`, sampled or not).
const HEX_PAIRS: [[u8; 2]; 256] = {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [DIGITS[i >> 4], DIGITS[i & 0xf]];
        i += 1;
    }
    pairs
};

fn put_hex(out: &mut [u8], bytes: &[u8]) {
    for (pair, &b) in out.chunks_exact_mut(2).zip(bytes) {
        pair.copy_from_slice(&HEX_PAIRS[usize::from(b)]);
    }
}

/// Lowercase hex text of an id, for span attributes and log lines.
pub(crate) fn hex_string(bytes: &[u8]) -> String {
    let mut out = vec![0u8; bytes.len() * 2];
    put_hex(&mut out, bytes);
    String::from_utf8(out).unwrap_or_default()
}

thread_local! {
    /// A per-thread SplitMix64 state: span ids need to be unique, not secret, and a
    /// syscall per request would cost more than the span.
    static RNG: Cell<u64> = Cell::new(seed());
}

/// A random seed from the standard library's per-thread hash keys (drawn from the OS
/// once), mixed with the clock and the thread: no crypto library's entropy pool to fill,
/// which on first use costs a request tens of milliseconds.
fn seed() -> u64 {
    use std::hash::BuildHasher as _;
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((nanos, std::thread::current().id()))
}

fn next_u64() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    })
}

/// A new span id (never all zero, §3.2.2.4).
pub(crate) fn span_id() -> [u8; 8] {
    loop {
        let id = next_u64();
        if id != 0 {
            return id.to_be_bytes();
        }
    }
}

/// A new trace id (never all zero, §3.2.2.3).
pub(crate) fn trace_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&span_id());
    id[8..].copy_from_slice(&span_id());
    id
}

/// OpenTelemetry's samplers: `TraceIdRatioBased(rate)`, under `ParentBased` when
/// `follow_parent` (the default: a sampled parent's children are sampled, an unsampled
/// parent's are not, so one trace is never cut in two).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sampler {
    /// Trace ids whose low 63 bits fall below this are sampled (OpenTelemetry's
    /// `TraceIdRatioBased`, as the Go SDK computes it).
    bound: u64,
    follow_parent: bool,
}

impl Sampler {
    pub(crate) fn new(rate: f64, follow_parent: bool) -> Sampler {
        let bound = if rate >= 1.0 { u64::MAX } else { (rate.max(0.0) * (1u64 << 63) as f64) as u64 };
        Sampler { bound, follow_parent }
    }

    /// Whether the trace `trace_id` is recorded, given the client's context.
    pub(crate) fn sampled(&self, parent: Option<&TraceParent>, trace_id: &[u8; 16]) -> bool {
        match parent {
            Some(p) if self.follow_parent => p.sampled,
            _ => {
                let low = u64::from_be_bytes(trace_id[8..].try_into().unwrap_or_default()) >> 1;
                self.bound == u64::MAX || low < self.bound
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_round_trips() {
        let tp = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        assert!(tp.sampled);
        assert_eq!(hex_string(&tp.parent_id), "00f067aa0ba902b7");
        assert_eq!(&tp.render()[..], EXAMPLE.as_bytes());
    }

    #[test]
    fn invalid_values_are_ignored() {
        for bad in [
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01", // uppercase
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01", // zero trace id
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", // zero parent
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", // version ff
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", // v00 with more
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceParent::parse(bad.as_bytes()), None, "{bad}");
        }
        let later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-extra";
        assert!(
            TraceParent::parse(later.as_bytes()).is_some_and(|t| !t.sampled),
            "a later version's fields are skipped"
        );
    }

    #[test]
    fn a_tracestate_is_one_line_of_printable_ascii() {
        assert!(valid_tracestate("congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"));
        assert!(!valid_tracestate("a=b\r\nx-injected: 1"));
        assert!(!valid_tracestate(""));
        assert!(!valid_tracestate(&"a".repeat(513)));
        assert!(!valid_tracestate("a=\u{e9}"));
    }

    #[test]
    fn hex_is_lowercase_and_two_digits_a_byte() {
        let all: Vec<u8> = (0..=255).collect();
        let expected: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex_string(&all), expected);
    }

    #[test]
    fn ids_are_never_zero_and_differ() {
        let (a, b) = (span_id(), span_id());
        assert_ne!(a, b);
        assert_ne!(trace_id(), [0; 16]);
    }

    #[test]
    fn the_sampler_follows_a_parent_and_the_rate() {
        let parent = TraceParent::parse(EXAMPLE.as_bytes()).unwrap();
        let unsampled = TraceParent { sampled: false, ..parent };
        let never = Sampler::new(0.0, true);
        assert!(never.sampled(Some(&parent), &parent.trace_id), "a sampled parent decides");
        assert!(!Sampler::new(1.0, true).sampled(Some(&unsampled), &parent.trace_id));
        assert!(!never.sampled(None, &trace_id()));
        assert!(Sampler::new(1.0, false).sampled(Some(&unsampled), &parent.trace_id), "not parent-based");
        let tenth = Sampler::new(0.1, true);
        let kept = (0..20_000).filter(|_| tenth.sampled(None, &trace_id())).count();
        assert!((1_500..2_500).contains(&kept), "about a tenth of 20000 kept: {kept}");
    }
}
