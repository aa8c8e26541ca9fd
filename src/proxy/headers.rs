//! Header rules for a forwarding intermediary (RFC 9110 §7.6).
//!
//! - Hop-by-hop fields are removed in both directions (RFC 9110 §7.6.1): `Connection`, every
//!   field it names, and the fields that are hop-by-hop by definition.
//! - `X-Forwarded-For/-Host/-Proto` describe the client to servers on this machine or a
//!   private network, and are never sent to third-party targets, where they leak the
//!   user's address and, with `X-Forwarded-Proto: http` in front of an https server, cause
//!   redirect loops (ToolHive #5567). Whatever a client sent in these fields is dropped
//!   either way: a client must not be able to forge them. `X-Real-IP` (nginx's name for
//!   the same fact) is dropped too and never set.
//! - A field whose name has an underscore where a reserved name has a hyphen
//!   (`Content_Length`, `X_Forwarded_For`, …) is dropped: CGI, WSGI and PHP stacks map
//!   `_` to `-` (RFC 3875 §4.1.18), so such a target would read it as a second length or a
//!   forged forwarding field. nginx drops every such name by default.
//! - Fields the operator configured (`--remote-forward-headers*`, [`ForwardHeaders`]) are
//!   added to every request for the target, and a client's field of the same name is
//!   dropped: the configured value wins, as ToolHive's `Header.Set` has it. Which names
//!   the operator may not configure is [`crate::config`]'s rule.
//! - Everything else, including the MCP headers (`Mcp-Session-Id`, `MCP-Protocol-Version`,
//!   `Last-Event-ID`, `Mcp-Method`, `Mcp-Name`, `Mcp-Param-*`), passes unchanged.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

pub(crate) const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub(crate) const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub(crate) const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Removes hop-by-hop fields in place, including those listed in `Connection`.
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Fields named by `Connection` need `Connection` present, which `is_hop_by_hop` covers.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    // Collected before anything is removed: removing `Connection` would lose them.
    let listed = connection_listed(headers);
    remove_where(headers, is_hop_by_hop);
    for name in listed {
        headers.remove(name);
    }
}

/// A `Content-Length` value: digits only, as RFC 9110 §8.6 has it (no sign, no spaces,
/// no list), at most 15 of them (far past any body, and no overflow). Requests are held to
/// this; a target's answer may repeat one value as a list ([`response_content_length`]).
pub(crate) fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 15 {
        return None;
    }
    // `to_digit(10)` takes ASCII digits only; 15 of them never overflow, checked all the same.
    value.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(char::from(d).to_digit(10)?)))
}

/// Folds one `Content-Length` field of a target's answer into the length seen so far
/// (`None` before the first): a list of one repeated value (`2, 2`) is that value, as
/// RFC 9110 §8.6 lets a recipient read it and as hyper's client does; any other list, or
/// a value that differs from an earlier field's, is invalid. Both engines use it.
pub(crate) fn response_content_length(value: &[u8], so_far: Option<u64>) -> Option<u64> {
    let mut length = so_far;
    for element in value.split(|&b| b == b',') {
        let n = content_length(element.trim_ascii())?;
        if length.is_some_and(|l| l != n) {
            return None;
        }
        length = Some(n);
    }
    length
}

/// A target's `Content-Length` that hyper's client accepted as a list of one repeated
/// value (`2, 2`) becomes that value alone, as the own engine sends it: the client gets
/// one length, never a list it may read differently.
pub(crate) fn single_content_length(headers: &mut HeaderMap) {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else { return };
    let repeated = value.as_bytes().contains(&b',') || headers.get_all(header::CONTENT_LENGTH).iter().nth(1).is_some();
    if !repeated {
        return;
    }
    let length = headers
        .get_all(header::CONTENT_LENGTH)
        .iter()
        .try_fold(None, |so_far, v| response_content_length(v.as_bytes(), so_far).map(Some));
    if let Some(Some(n)) = length {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
}

/// Fields that are hop-by-hop whether or not `Connection` names them (RFC 9110 §7.6.1,
/// plus the legacy `Keep-Alive` and `Proxy-Connection` that HTTP/1.0 peers still send),
/// lowercase.
pub(crate) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "proxy-authenticate",
    "proxy-authorization",
    "keep-alive",
    "proxy-connection",
];

/// Whether `name` (as the `http` crate keeps it, lowercase) is in [`HOP_BY_HOP`]: no
/// hashing, and nothing built per call.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(&name.as_str())
}

/// Fields that describe the client to the server, lowercase; only the proxy may set them.
pub(crate) const FORWARDING: [&str; 5] =
    ["x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "forwarded", "x-real-ip"];

/// Request fields a client must not be able to send to the target: forwarding fields, and
/// names disguised as a reserved one (see [`is_disguised`]).
fn is_client_forgeable(name: &HeaderName) -> bool {
    FORWARDING.contains(&name.as_str()) || is_disguised(name.as_str())
}

/// Whether `name`, with each `_` read as `-` (case-insensitively), is a hop-by-hop,
/// framing or forwarding field. Dispatched on the length first: most names are compared
/// with nothing, and none is allocated.
pub(crate) fn is_disguised(name: &str) -> bool {
    let reserved: &[&str] = match name.len() {
        9 => &["x-real-ip"],
        10 => &["keep-alive"],
        14 => &["content-length"],
        15 => &["x-forwarded-for"],
        16 => &["proxy-connection", "x-forwarded-host"],
        17 => &["transfer-encoding", "x-forwarded-proto"],
        18 => &["proxy-authenticate"],
        19 => &["proxy-authorization"],
        _ => return false,
    };
    name.as_bytes().contains(&b'_')
        && reserved
            .iter()
            .any(|r| r.bytes().zip(name.bytes()).all(|(r, n)| r == n.to_ascii_lowercase() || (r == b'-' && n == b'_')))
}

/// Removes every field whose name satisfies `matches`. Most messages carry none: one pass
/// over the few names present is cheaper than a hashed removal per candidate name, and
/// nothing is allocated unless something is removed.
fn remove_where(headers: &mut HeaderMap, matches: fn(&HeaderName) -> bool) {
    if !headers.keys().any(matches) {
        return;
    }
    let found: Vec<HeaderName> = headers.keys().filter(|name| matches(name)).cloned().collect();
    for name in found {
        headers.remove(name);
    }
}

/// One option of a `Connection` field (RFC 9110 §7.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionOption<'a> {
    Close,
    KeepAlive,
    /// A field that is hop-by-hop for this message.
    Field(&'a [u8]),
}

/// The options of one `Connection` field value, empty list elements skipped: the one
/// parser of `Connection` for both engines, requests and responses.
pub(crate) fn connection_options(value: &[u8]) -> impl Iterator<Item = ConnectionOption<'_>> {
    value.split(|&b| b == b',').map(<[u8]>::trim_ascii).filter(|t| !t.is_empty()).map(|token| {
        if token.eq_ignore_ascii_case(b"close") {
            ConnectionOption::Close
        } else if token.eq_ignore_ascii_case(b"keep-alive") {
            ConnectionOption::KeepAlive
        } else {
            ConnectionOption::Field(token)
        }
    })
}

/// The field names listed in every `Connection` header line (empty, so unallocated, in
/// the common case of only `keep-alive`/`close`).
fn connection_listed(headers: &HeaderMap) -> Vec<HeaderName> {
    let mut listed = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        for option in connection_options(value.as_bytes()) {
            if let ConnectionOption::Field(token) = option
                && let Ok(name) = HeaderName::from_bytes(token)
            {
                listed.push(name);
            }
        }
    }
    listed
}

/// Replaces any client-sent forwarding fields; when `describe_client` is set, adds
/// `X-Forwarded-For` (the immediate client), `-Host` (the Host it addressed) and `-Proto`.
pub(crate) fn set_forwarded(
    headers: &mut HeaderMap,
    describe_client: bool,
    client_ip: IpAddr,
    client_host: Option<&HeaderValue>,
) {
    remove_where(headers, is_client_forgeable);
    if !describe_client {
        return;
    }
    headers.insert(X_FORWARDED_FOR, ip_header_value(client_ip));
    if let Some(host) = client_host {
        headers.insert(X_FORWARDED_HOST, host.clone());
    }
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
}

/// Header fields the operator configured for the target (`--remote-forward-headers`,
/// `--remote-forward-headers-secret`), checked at startup. Their values may be credentials:
/// they are marked sensitive, and `Debug` shows the names only.
#[derive(Clone)]
pub struct ForwardHeaders {
    fields: Vec<(HeaderName, HeaderValue)>,
    /// The same fields as the own engine writes them (`name: value\r\n` each), made once.
    wire: Vec<u8>,
}

impl ForwardHeaders {
    /// The fields, in the order given; names are unique (the configuration refuses a name
    /// given twice).
    pub fn new(fields: Vec<(HeaderName, HeaderValue)>) -> ForwardHeaders {
        let mut wire = Vec::new();
        let fields = fields
            .into_iter()
            .map(|(name, mut value)| {
                value.set_sensitive(true);
                for part in [name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"] {
                    wire.extend_from_slice(part);
                }
                (name, value)
            })
            .collect();
        ForwardHeaders { fields, wire }
    }

    /// The one rule both engines follow: whether a client's field named `name` (any case)
    /// gives way to a configured one.
    pub(crate) fn replaces(&self, name: &str) -> bool {
        self.fields.iter().any(|(configured, _)| configured.as_str().eq_ignore_ascii_case(name))
    }

    /// hyper's engine and the stdio bridge: the configured fields set on `headers`. `insert`
    /// removes every earlier value of the name first: exactly the fields [`Self::replaces`]
    /// names, since `HeaderName`s are lowercase.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value) in &self.fields {
            headers.insert(name.clone(), value.clone());
        }
    }

    /// The own engine: the configured fields appended to a head being written, whose
    /// client fields [`Self::replaces`] names were left out.
    pub(crate) fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.wire);
    }
}

impl std::fmt::Debug for ForwardHeaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.fields.iter().map(|(name, _)| name.as_str())).finish()
    }
}

fn ip_header_value(ip: IpAddr) -> HeaderValue {
    match ip {
        IpAddr::V4(v4) if v4.is_loopback() && v4.octets() == [127, 0, 0, 1] => HeaderValue::from_static("127.0.0.1"),
        IpAddr::V6(v6) if v6.is_loopback() => HeaderValue::from_static("::1"),
        other => HeaderValue::try_from(other.to_string()).unwrap_or_else(|_| HeaderValue::from_static("unknown")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(HeaderName::from_bytes(k.as_bytes()).unwrap(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn hop_by_hop_and_connection_listed_fields_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, X-Secret-Hop"),
            ("connection", "x-other"),
            ("x-secret-hop", "1"),
            ("x-other", "2"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("te", "trailers"),
            ("trailer", "x"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic x"),
            ("mcp-session-id", "abc"),
            ("mcp-protocol-version", "2025-11-25"),
            ("last-event-id", "7"),
            ("mcp-param-region", "eu"),
            ("cookie", "a=b"),
            ("accept", "application/json, text/event-stream"),
        ]);
        strip_hop_by_hop(&mut h);
        let mut left: Vec<_> = h.keys().map(|k| k.as_str().to_owned()).collect();
        left.sort();
        assert_eq!(
            left,
            ["accept", "cookie", "last-event-id", "mcp-param-region", "mcp-protocol-version", "mcp-session-id"]
        );
    }

    #[test]
    fn forwarded_fields_are_replaced_not_trusted() {
        let mut h =
            map(&[("x-forwarded-for", "6.6.6.6"), ("forwarded", "for=6.6.6.6"), ("x-forwarded-proto", "https")]);
        set_forwarded(&mut h, true, "127.0.0.1".parse().unwrap(), Some(&HeaderValue::from_static("localhost:1234")));
        assert_eq!(h["x-forwarded-for"], "127.0.0.1");
        assert_eq!(h["x-forwarded-host"], "localhost:1234");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert!(h.get("forwarded").is_none());
    }

    #[test]
    fn real_ip_and_disguised_names_never_reach_the_target() {
        let mut h = map(&[
            ("x-real-ip", "6.6.6.6"),
            ("content_length", "5"),
            ("transfer_encoding", "chunked"),
            ("x_forwarded_for", "6.6.6.6"),
            ("x_real_ip", "6.6.6.6"),
            ("proxy_connection", "x"),
            ("keep_alive", "1"),
            ("x_custom", "kept"),
            ("content-length", "2"),
        ]);
        set_forwarded(&mut h, false, "127.0.0.1".parse().unwrap(), None);
        let mut left: Vec<_> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["content-length", "x_custom"]);
        assert!(is_disguised("Content_Length") && is_disguised("X_Forwarded_Host"));
        assert!(!is_disguised("content-length") && !is_disguised("x_custom") && !is_disguised("content_lengthy"));
        // Every reserved name with a hyphen is in the length table.
        for reserved in HOP_BY_HOP.iter().chain(&FORWARDING).chain(&["content-length"]).filter(|r| r.contains('-')) {
            assert!(is_disguised(&reserved.replace('-', "_").to_ascii_uppercase()), "{reserved}");
        }
    }

    #[test]
    fn content_lengths_of_requests_are_plain_and_of_answers_may_repeat() {
        assert_eq!(content_length(b"42"), Some(42));
        for bad in [&b""[..], b"+2", b"-1", b" 2", b"2, 2", b"0x10", b"1234567890123456"] {
            assert_eq!(content_length(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
        assert_eq!(response_content_length(b"2, 2", None), Some(2));
        assert_eq!(response_content_length(b"2", Some(2)), Some(2));
        assert_eq!(response_content_length(b"2, 3", None), None);
        assert_eq!(response_content_length(b"3", Some(2)), None);
        assert_eq!(response_content_length(b"2,", None), None);
    }

    #[test]
    fn configured_fields_replace_the_clients_the_same_way_on_both_engines() {
        let configured = ForwardHeaders::new(vec![
            (HeaderName::from_static("x-api-key"), HeaderValue::from_static("s3cret")),
            (HeaderName::from_static("x-tenant"), HeaderValue::from_static("acme")),
        ]);
        let client = [("X-Api-Key", "forged"), ("x-api-key", "forged-too"), ("accept", "*/*"), ("x-other", "1")];
        // hyper's engine and the bridge.
        let mut h = map(&client);
        configured.apply(&mut h);
        let got: Vec<_> = h.iter().map(|(n, v)| (n.as_str(), v.to_str().unwrap())).collect();
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(h.get_all("x-api-key").iter().collect::<Vec<_>>(), ["s3cret"]);
        assert_eq!(h["x-tenant"], "acme");
        assert_eq!(h["accept"], "*/*");
        // The own engine: the fields it keeps, then the configured ones.
        let mut out = Vec::new();
        for (name, value) in client.iter().filter(|(n, _)| !configured.replaces(n)) {
            out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
        }
        configured.write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "accept: */*\r\nx-other: 1\r\nx-api-key: s3cret\r\nx-tenant: acme\r\n"
        );
        assert!(configured.replaces("X-TENANT") && !configured.replaces("x-tenant-id"));
        // Values never show in Debug output, of the set or of a header map holding them.
        let shown = format!("{configured:?} {h:?}");
        assert!(!shown.contains("s3cret") && !shown.contains("acme"), "{shown}");
        assert!(shown.contains("x-api-key"), "{shown}");
    }

    #[test]
    fn third_parties_learn_nothing_about_the_client() {
        let mut h = map(&[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-host", "evil")]);
        set_forwarded(&mut h, false, "10.0.0.9".parse().unwrap(), Some(&HeaderValue::from_static("localhost:1")));
        assert!(h.is_empty(), "{h:?}");
    }
}
