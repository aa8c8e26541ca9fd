//! Reading the bearer token from a request (RFC 6750 §2.1). Only the `Authorization`
//! header is accepted: tokens in the query string (RFC 6750 §2.3) leak into logs and
//! histories, and MCP forbids them (MCP 2025-11-25 Authorization §Token Requirements).

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};

/// Why no token could be taken from the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerProblem {
    /// No `Authorization: Bearer` credentials at all (another scheme counts as none, so
    /// that the client is told how to get a token).
    Missing,
    /// Credentials are present but unusable: several headers, or an empty token.
    Malformed,
}

/// The token from `Authorization: Bearer <token>` (scheme case-insensitive).
pub fn bearer_token(headers: &HeaderMap) -> Result<&str, BearerProblem> {
    bearer_token_of(headers.get_all(AUTHORIZATION).iter().map(HeaderValue::as_bytes))
}

/// The same, from a request's raw `Authorization` values: the own HTTP/1.1 path reads them
/// in place, without building a `HeaderValue` (a copy and a check of ~1 KiB per request).
pub(crate) fn bearer_token_of<'a>(mut values: impl Iterator<Item = &'a [u8]>) -> Result<&'a str, BearerProblem> {
    let Some(value) = values.next() else { return Err(BearerProblem::Missing) };
    if values.next().is_some() {
        return Err(BearerProblem::Malformed);
    }
    let value = trim_ows(value);
    let (scheme, token) = match memchr::memchr(b' ', value) {
        Some(space) => (&value[..space], &value[space + 1..]),
        None => (value, &[][..]),
    };
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        // Another scheme, or one with bytes no header value may carry: no bearer token.
        return if is_field_text(value) { Err(BearerProblem::Missing) } else { Err(BearerProblem::Malformed) };
    }
    // A token is visible ASCII (RFC 6750 §2.1 `b64token` is narrower still, but opaque
    // tokens bound for introspection are taken as their issuer wrote them).
    let token = trim_ows(token);
    if token.is_empty() || !is_visible_ascii(token) {
        return Err(BearerProblem::Malformed);
    }
    std::str::from_utf8(token).map_err(|_| BearerProblem::Malformed)
}

/// Without leading and trailing spaces and tabs (RFC 9110 §5.6.3 `OWS`).
fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Visible ASCII only (0x21..=0x7E). Checked a block at a time without an early exit, so
/// the compiler vectorises it: a JWT is ~1 KiB and this runs on every request.
fn is_visible_ascii(bytes: &[u8]) -> bool {
    bytes.chunks(64).all(|block| block.iter().fold(true, |ok, b| ok & b.is_ascii_graphic()))
}

/// What `HeaderValue::to_str` accepts: visible ASCII, spaces and tabs.
fn is_field_text(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| matches!(b, b' ' | b'\t') || b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn get(values: &[&str]) -> Result<String, BearerProblem> {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        bearer_token(&h).map(str::to_owned)
    }

    #[test]
    fn cases() {
        assert_eq!(get(&["Bearer abc.def"]).unwrap(), "abc.def");
        assert_eq!(get(&["bearer abc"]).unwrap(), "abc", "scheme is case-insensitive");
        assert_eq!(get(&["BEARER   abc  "]).unwrap(), "abc");
        assert_eq!(get(&[]), Err(BearerProblem::Missing));
        assert_eq!(get(&["Basic dXNlcjpwdw=="]), Err(BearerProblem::Missing));
        assert_eq!(get(&["Bearer"]), Err(BearerProblem::Malformed));
        assert_eq!(get(&["Bearer "]), Err(BearerProblem::Malformed));
        assert_eq!(get(&["Bearer a b"]), Err(BearerProblem::Malformed));
        assert_eq!(get(&["Bearer a\tb"]), Err(BearerProblem::Malformed));
        assert_eq!(get(&["Bearer a", "Bearer b"]), Err(BearerProblem::Malformed));
        assert_eq!(get(&["\tBearer\t abc"]), Err(BearerProblem::Missing), "the scheme ends at a space");
        assert_eq!(get(&["Bearer  \tabc\t"]).unwrap(), "abc");
    }

    #[test]
    fn raw_values_are_checked_byte_by_byte() {
        let take = |raw: &[u8]| bearer_token_of(std::iter::once(raw)).map(str::to_owned);
        let long = format!("Bearer {}", "eyJ0eXAi.".repeat(120));
        assert_eq!(take(long.as_bytes()).unwrap(), &long[7..]);
        for bad in
            [&b"Bearer ab\x7fc"[..], b"Bearer \xc3\xa9t\xc3\xa9", b"Bearer a\x00b", b"Bearer a\rb", b"Bearer a\nb"]
        {
            assert_eq!(take(bad), Err(BearerProblem::Malformed), "{bad:?}");
        }
        // A bad byte at every position of a long token, in every block and at its edges.
        let good = long.clone().into_bytes();
        for at in 7..good.len() {
            let mut bad = good.clone();
            bad[at] = 0x80;
            assert_eq!(take(&bad), Err(BearerProblem::Malformed), "byte {at}");
        }
        assert_eq!(take(b"Basic \xff"), Err(BearerProblem::Malformed), "not even field text");
        assert_eq!(take(b"Basic dXNlcg=="), Err(BearerProblem::Missing));
    }
}
