//! What the own HTTP/1.1 path accepts of a request's syntax (RFC 9112 §2.2, §3.2.1; RFC
//! 9110 §7.6.1): the meaning of each header field name to it ([`field`]), the `Connection`
//! values it reads, the origin-form targets it takes, and bare line feeds. [`super::request`]
//! judges a head with these; anything they do not accept goes to hyper's engine.

use crate::proxy::headers::{self, ConnectionOption};

/// What a request header field means to the own path.
pub(super) enum Field {
    /// Forwarded unchanged.
    Other,
    /// Not the own path's to judge (the field's name, for [`Why::Field`]).
    Refuse(&'static str),
    /// Hop-by-hop or forwarding fields: not passed on.
    Drop,
    Host,
    ContentLength,
    Connection,
    Authorization,
}

pub(super) fn field(name: &str) -> Field {
    let is = |s: &str| name.eq_ignore_ascii_case(s);
    // Dispatch on the length first: most fields compare against nothing.
    match name.len() {
        2 if is("te") => Field::Drop,
        4 if is("host") => Field::Host,
        6 if is("expect") => Field::Refuse("expect"),
        6 if is("origin") => Field::Refuse("origin"),
        7 if is("upgrade") => Field::Refuse("upgrade"),
        7 if is("trailer") => Field::Drop,
        9 if is("forwarded") || is("x-real-ip") => Field::Drop,
        10 if is("connection") => Field::Connection,
        10 if is("keep-alive") => Field::Drop,
        13 if is("authorization") => Field::Authorization,
        14 if is("content-length") => Field::ContentLength,
        15 if is("x-forwarded-for") => Field::Drop,
        16 if is("x-forwarded-host") || is("proxy-connection") => Field::Drop,
        17 if is("transfer-encoding") => Field::Refuse("transfer-encoding"),
        17 if is("x-forwarded-proto") => Field::Drop,
        18 if is("proxy-authenticate") => Field::Drop,
        19 if is("proxy-authorization") => Field::Drop,
        _ => Field::Other,
    }
}

/// `Connection` names only `keep-alive` and `close`: `Some(close?)`. A field named in
/// it would have to be removed too; such rare requests go to hyper's path.
pub(super) fn connection_close(value: &[u8]) -> Option<bool> {
    let mut close = false;
    for option in headers::connection_options(value) {
        match option {
            ConnectionOption::Close => close = true,
            ConnectionOption::KeepAlive => {}
            ConnectionOption::Field(_) => return None,
        }
    }
    Some(close)
}

/// A line feed without its carriage return anywhere in the head (RFC 9112 §2.2: a
/// recipient may accept one; the own path leaves that to hyper).
pub(super) fn has_bare_lf(head: &[u8]) -> bool {
    memchr::memchr_iter(b'\n', head).any(|i| i.checked_sub(1).and_then(|before| head.get(before)) != Some(&b'\r'))
}

/// An origin-form target (RFC 9112 §3.2.1) of unreserved characters, sub-delims,
/// `:@/?` and well-formed percent-escapes: what every MCP client sends. Others (and
/// their 400s) are hyper's.
pub(super) fn plain_origin_form(target: &[u8]) -> bool {
    if target.first() != Some(&b'/') {
        return false;
    }
    let mut bytes = target.iter();
    while let Some(&b) = bytes.next() {
        match b {
            b'%' => {
                if !(bytes.next().is_some_and(u8::is_ascii_hexdigit) && bytes.next().is_some_and(u8::is_ascii_hexdigit))
                {
                    return false;
                }
            }
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => {}
            b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
            | b':' | b'@' | b'/' | b'?' => {}
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_field_table_follows_the_one_list() {
        // `field` dispatches on length for speed; what it drops or refuses must be exactly
        // what hyper's path removes (headers::HOP_BY_HOP and FORWARDING), in any case.
        for name in headers::HOP_BY_HOP.iter().chain(&headers::FORWARDING) {
            for spelling in [name.to_string(), name.to_ascii_uppercase()] {
                assert!(!matches!(field(&spelling), Field::Other), "{spelling} would be forwarded");
            }
        }
        for name in ["content-type", "mcp-session-id", "accept", "cookie", "x-forwarded", "forwarded-for"] {
            assert!(matches!(field(name), Field::Other), "{name}");
        }
    }
}
