//! Addresses, hosts and origins: the one place that decides what a host string is.
//!
//! - [`authority_host`]: a client's `Host` (RFC 9110 §7.2 with RFC 3986 §3.2.2's grammar),
//!   the one parser of client-given authorities for both engines;
//! - [`ip_literal`], [`is_loopback_host`], [`is_public`], [`is_local_host`]: what an
//!   address or name is (loopback, private network, public), for the URL policy of the
//!   OAuth fetches, the SSRF-safe resolver and whether the target may learn about the
//!   client (`X-Forwarded-*`);
//! - [`normalize_origin`]: a browser origin as browsers serialise it (RFC 6454, WHATWG URL);
//! - [`bracket_ipv6`], [`host_part`]: spelling helpers for the names the proxy answers to.

use std::net::IpAddr;

use url::Url;

/// The host of a `Host` value, when the whole value is `uri-host [":" port]` (RFC 9110
/// §7.2, RFC 3986 §3.2.2): an IPv6 literal in brackets, or a non-empty reg-name
/// (unreserved characters, sub-delims, percent-escapes; IPv4 addresses are among them),
/// then optionally `:` and a port of 1 to 5 digits up to 65535. No userinfo, no
/// IPvFuture, no zone, nothing after the port.
///
/// One pass over the bytes with a class table: it runs on every request of both engines.
pub(crate) fn authority_host(value: &str) -> Option<&str> {
    let bytes = value.as_bytes();
    let host_len = if bytes.first() == Some(&b'[') {
        let close = memchr::memchr(b']', bytes)?;
        value.get(1..close)?.parse::<std::net::Ipv6Addr>().ok()?;
        close.checked_add(1)?
    } else {
        reg_name_len(bytes)?
    };
    let (host, port) = value.split_at_checked(host_len)?;
    match port.as_bytes() {
        [] => Some(host),
        [b':', digits @ ..] if (1..=5).contains(&digits.len()) => {
            let port =
                digits.iter().try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))?;
            (port <= u32::from(u16::MAX)).then_some(host)
        }
        _ => None,
    }
}

/// The length of the non-empty RFC 3986 reg-name (`*( unreserved / pct-encoded /
/// sub-delims )`) at the start of `bytes`, which must end there or at a `:`.
fn reg_name_len(bytes: &[u8]) -> Option<usize> {
    let mut i = 0;
    // The common name has no escapes: a table lookup per byte until the first other one.
    loop {
        i += bytes.get(i..)?.iter().position(|&c| !REG_NAME[usize::from(c)]).unwrap_or(bytes.len() - i);
        match bytes.get(i) {
            None | Some(b':') => break,
            Some(b'%') if bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)) => i += 3,
            Some(_) => return None,
        }
    }
    (i > 0).then_some(i)
}

/// Unreserved characters and sub-delims (RFC 3986 §2.2, §2.3).
const REG_NAME: [bool; 256] = {
    let mut table = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        table[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            );
        c += 1;
    }
    table
};

/// The host part of `host[:port]` (IPv6 literals keep their brackets), without checking
/// it: for names the operator configured, already validated.
pub(crate) fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.find(']').and_then(|i| authority.get(..=i)).unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// An IPv6 address as a URL or `Host` spells it, in brackets; other hosts unchanged.
pub(crate) fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]") } else { host.to_owned() }
}

/// The address of an IP-literal host (brackets allowed), with IPv4-mapped IPv6 unwrapped.
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    let ip = bare.parse::<IpAddr>().ok()?;
    Some(match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    })
}

/// Whether `host` names this machine.
pub fn is_loopback_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost") || ip_literal(host).is_some_and(|ip| ip.is_loopback())
}

/// Whether `ip` is a public unicast address.
pub(crate) fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            let [s, ..] = v6.segments();
            !(v6.is_loopback() || v6.is_unspecified() || (s & 0xfe00) == 0xfc00 || (s & 0xffc0) == 0xfe80)
                && v6.to_ipv4_mapped().is_none_or(|v4| is_public(IpAddr::V4(v4)))
        }
    }
}

/// Whether a host name or IP literal is this machine or a private network: loopback,
/// RFC 1918 / unique-local, link-local, `localhost`, single-label names (containers,
/// compose services) and the reserved internal suffixes.
pub fn is_local_host(host: &str) -> bool {
    let bare = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
            IpAddr::V6(v6) => {
                let [s, ..] = v6.segments();
                v6.is_loopback()
                    || v6.is_unspecified()
                    || (s & 0xfe00) == 0xfc00 // unique local fc00::/7
                    || (s & 0xffc0) == 0xfe80 // link local fe80::/10
            }
        };
    }
    let name = bare.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.') || [".localhost", ".local", ".internal", ".lan", ".home.arpa"].iter().any(|s| name.ends_with(s))
}

/// Normalises a browser origin (`scheme://host[:port]`) the way browsers serialise it:
/// lowercase scheme and host, default port dropped. Paths, queries, userinfo and
/// non-HTTP schemes are refused.
pub fn normalize_origin(raw: &str) -> Result<String, &'static str> {
    let raw = raw.trim();
    if !raw.contains("://") {
        return Err("is not an origin (scheme://host[:port])");
    }
    let url = Url::parse(raw).map_err(|_| "has an invalid host or port")?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must use http or https");
    }
    if url.host_str().is_none_or(str::is_empty)
        || !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("must be scheme://host[:port] with no path, query or credentials");
    }
    // Serialised as a browser sends it (WHATWG URL: lowercase, default port dropped,
    // IP addresses canonical), so that comparison is plain string equality.
    Ok(url.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_parsed_as_whole_authorities() {
        for ok in ["localhost", "localhost:8080", "127.0.0.1:1", "[::1]", "[::1]:65535", "a-b.example", "x%41y", "a_b"]
        {
            assert!(authority_host(ok).is_some(), "{ok}");
        }
        assert_eq!(authority_host("[::1]:80"), Some("[::1]"));
        assert_eq!(authority_host("Example.COM:443"), Some("Example.COM"));
        for bad in [
            "[::1]@evil.example",
            "[::1]evil",
            "[::1].evil.example:443",
            "[::1]:8080:80",
            "[::1",
            "[]",
            "[v1.x]",
            "[fe80::1%25eth0]",
            "u@localhost",
            "localhost:",
            "localhost:65536",
            "localhost:080800",
            "localhost:8a",
            "a:1:2",
            "",
            ":80",
            "a b",
            "a/b",
            "a\"b",
            "a\\b",
            "x%4",
            "x%zz",
        ] {
            assert_eq!(authority_host(bad), None, "{bad}");
        }
    }

    #[test]
    fn host_parts() {
        assert_eq!(host_part("a.example:80"), "a.example");
        assert_eq!(host_part("[::1]:80"), "[::1]");
        assert_eq!(host_part("[::1]"), "[::1]");
        assert_eq!(host_part("a.example"), "a.example");
        assert_eq!(bracket_ipv6("::1"), "[::1]");
        assert_eq!(bracket_ipv6("[::1]"), "[::1]");
        assert_eq!(bracket_ipv6("127.0.0.1"), "127.0.0.1");
    }

    #[test]
    fn public_and_loopback_addresses() {
        for (ip, public) in [
            ("8.8.8.8", true),
            ("10.1.1.1", false),
            ("100.64.0.1", false),
            ("::ffff:127.0.0.1", false),
            ("2001:4860::1", true),
        ] {
            assert_eq!(is_public(ip.parse().unwrap()), public, "{ip}");
        }
        for loopback in ["localhost", "LOCALHOST", "127.0.0.1", "127.1.2.3", "[::1]", "::1", "[::ffff:127.0.0.1]"] {
            assert!(is_loopback_host(loopback), "{loopback}");
        }
        for other in ["localhost.example", "10.0.0.1", "[::2]", "example.com"] {
            assert!(!is_loopback_host(other), "{other}");
        }
    }

    #[test]
    fn local_hosts() {
        for local in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "[::1]",
            "[fd00::1]",
            "localhost",
            "mcp-server",
            "svc.internal",
            "a.localhost",
        ] {
            assert!(is_local_host(local), "{local}");
        }
        for public in ["8.8.8.8", "api.example.com", "[2001:db8::1]", "mcp.github.com"] {
            assert!(!is_local_host(public), "{public}");
        }
    }

    #[test]
    fn origins_are_normalised_and_checked() {
        assert_eq!(normalize_origin("HTTP://LocalHost:80/").unwrap(), "http://localhost");
        assert_eq!(normalize_origin("https://a.example:8443").unwrap(), "https://a.example:8443");
        assert_eq!(normalize_origin("http://[::1]:6274").unwrap(), "http://[::1]:6274");
        assert_eq!(normalize_origin("http://a:080").unwrap(), "http://a");
        assert_eq!(normalize_origin("http://[::ffff:1.2.3.4]").unwrap(), "http://[::ffff:102:304]");
        for bad in [
            "a.example",
            "ftp://a",
            "http://u@a",
            "http://a/path",
            "http://a?x",
            "http://",
            "http://:",
            "http://3[::00ms1]:62",
        ] {
            assert!(normalize_origin(bad).is_err(), "{bad}");
        }
    }
}
