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
    bearer_token_of(headers.get_all(AUTHORIZATION).iter())
}

/// The same, from a request's `Authorization` values (for callers without a header map).
pub fn bearer_token_of<'a>(mut values: impl Iterator<Item = &'a HeaderValue>) -> Result<&'a str, BearerProblem> {
    let Some(value) = values.next() else { return Err(BearerProblem::Missing) };
    if values.next().is_some() {
        return Err(BearerProblem::Malformed);
    }
    let value = value.to_str().map_err(|_| BearerProblem::Malformed)?.trim();
    let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(BearerProblem::Missing);
    }
    let token = token.trim();
    // A header value is visible ASCII, spaces and tabs (`to_str` above), so those two are
    // the only whitespace left to look for. memchr scans a ~1 KiB JWT in a few vector
    // steps; `contains(char::is_whitespace)` decoded it char by char, and was the largest
    // cost of a cached token's check (perf).
    if token.is_empty() || memchr::memchr2(b' ', b'\t', token.as_bytes()).is_some() {
        return Err(BearerProblem::Malformed);
    }
    Ok(token)
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
    }
}
