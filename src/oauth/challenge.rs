//! `WWW-Authenticate` challenges (RFC 9110 §11.2, §11.6.1; RFC 6750 §3) with the
//! `resource_metadata` parameter of RFC 9728 §5.1: building the proxy's own, and parsing
//! those of a remote MCP server.
//!
//! The parser implements the full RFC 9110 grammar rather than substring search
//! (ToolHive's parser finds `realm=` inside other parameters and reads one header line
//! only): several challenges per field and several field lines, `token68` credentials,
//! quoted strings with `\` escapes and commas, optional whitespace around `=`, empty list
//! elements, case-insensitive scheme and parameter names.

use std::fmt::Write;

/// RFC 6750 §3.1 error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BearerError {
    /// The request is malformed (several credentials, an empty token).
    InvalidRequest,
    /// The token is expired, revoked, malformed or not for this resource.
    InvalidToken,
    /// The token lacks a required scope.
    InsufficientScope,
}

impl BearerError {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            BearerError::InvalidRequest => "invalid_request",
            BearerError::InvalidToken => "invalid_token",
            BearerError::InsufficientScope => "insufficient_scope",
        }
    }
}

/// A Bearer challenge under construction.
#[derive(Debug, Default, Clone)]
pub struct BearerChallenge<'a> {
    pub realm: Option<&'a str>,
    pub error: Option<BearerError>,
    pub error_description: Option<&'a str>,
    pub scope: Option<&'a str>,
    pub resource_metadata: Option<&'a str>,
}

impl BearerChallenge<'_> {
    /// The header value, e.g. `Bearer realm="x", error="invalid_token", resource_metadata="…"`.
    pub fn render(&self) -> String {
        let mut out = String::from("Bearer");
        let mut first = true;
        let mut param = |name: &str, value: &str| {
            let _ = write!(out, "{} {name}=\"{}\"", if first { "" } else { "," }, sanitise(value));
            first = false;
        };
        if let Some(realm) = self.realm {
            param("realm", realm);
        }
        if let Some(error) = self.error {
            param("error", error.as_str());
        }
        if let Some(description) = self.error_description {
            param("error_description", description);
        }
        if let Some(scope) = self.scope {
            param("scope", scope);
        }
        if let Some(url) = self.resource_metadata {
            param("resource_metadata", url);
        }
        out
    }
}

/// Makes a value safe for a quoted-string (RFC 9110 §5.6.4). Characters RFC 6750 §3
/// forbids in `error_description` (controls, `"` and `\` outside the allowed set) are
/// replaced one for one, so an attacker-controlled detail can never break the header.
/// Public so the property tests and fuzz targets check `render` against it.
pub fn sanitise(value: &str) -> String {
    value
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii_control() || !c.is_ascii() => ' ',
            c => c,
        })
        .collect()
}

/// One parsed challenge: a scheme and either parameters or a `token68`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    /// The auth scheme as sent (compare case-insensitively).
    pub scheme: String,
    /// Parameters with lowercased names, in order; a repeated name is kept once (first).
    pub params: Vec<(String, String)>,
    /// The `token68` form, if the challenge used it.
    pub token68: Option<String>,
}

impl Challenge {
    /// The value of parameter `name` (case-insensitive).
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// Whether this is a `Bearer` challenge.
    pub fn is_bearer(&self) -> bool {
        self.scheme.eq_ignore_ascii_case("bearer")
    }
}

/// Why a header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed WWW-Authenticate header: {0}")]
pub struct ChallengeParseError(&'static str);

/// Parses every challenge of every given field line, in order.
pub fn parse_challenges<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<Challenge>, ChallengeParseError> {
    let mut out = Vec::new();
    for line in lines {
        Parser { s: line.as_bytes(), i: 0 }.challenges(&mut out)?;
    }
    Ok(out)
}

/// The first `Bearer` challenge among all field lines, if any parse.
pub fn find_bearer<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<Challenge> {
    parse_challenges(lines).ok()?.into_iter().find(Challenge::is_bearer)
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    fn token(&mut self) -> Option<String> {
        let start = self.i;
        while self.peek().is_some_and(is_tchar) {
            self.i += 1;
        }
        (self.i > start).then(|| String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn quoted(&mut self) -> Result<String, ChallengeParseError> {
        self.i += 1; // opening quote
        let mut out = Vec::new();
        loop {
            match self.peek() {
                None => return Err(ChallengeParseError("unterminated quoted string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let escaped = self.s.get(self.i + 1).copied().ok_or(ChallengeParseError("dangling escape"))?;
                    out.push(escaped);
                    self.i += 2;
                }
                Some(b) => {
                    out.push(b);
                    self.i += 1;
                }
            }
        }
    }

    /// Skips list separators (commas and whitespace, including empty elements).
    fn skip_separators(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b',')) {
            self.i += 1;
        }
    }

    /// Whether a `name =` (auth-param) starts here, without consuming it.
    fn at_param(&self) -> bool {
        let mut j = self.i;
        while self.s.get(j).copied().is_some_and(is_tchar) {
            j += 1;
        }
        if j == self.i {
            return false;
        }
        while matches!(self.s.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        // `name=` but not `token68==` (a token68 may end in `=` padding).
        self.s.get(j) == Some(&b'=')
            && self.s.get(j + 1) != Some(&b'=')
            && !self.s[j + 1..].iter().take_while(|b| **b != b',').all(|b| *b == b'=' || *b == b' ' || *b == b'\t')
    }

    fn challenges(&mut self, out: &mut Vec<Challenge>) -> Result<(), ChallengeParseError> {
        loop {
            self.skip_separators();
            if self.peek().is_none() {
                return Ok(());
            }
            let scheme = self.token().ok_or(ChallengeParseError("expected an auth scheme"))?;
            let mut challenge = Challenge { scheme, params: Vec::new(), token68: None };
            if matches!(self.peek(), Some(b' ' | b'\t')) {
                self.skip_ws();
                if !self.at_param() && self.peek().is_some_and(is_token68_char) {
                    let start = self.i;
                    while self.peek().is_some_and(is_token68_char) {
                        self.i += 1;
                    }
                    while self.peek() == Some(b'=') {
                        self.i += 1;
                    }
                    challenge.token68 = Some(String::from_utf8_lossy(&self.s[start..self.i]).into_owned());
                } else {
                    self.params(&mut challenge)?;
                }
            }
            out.push(challenge);
        }
    }

    fn params(&mut self, challenge: &mut Challenge) -> Result<(), ChallengeParseError> {
        loop {
            self.skip_separators();
            if !self.at_param() {
                return Ok(()); // end of input, or the next challenge's scheme
            }
            let name = self.token().ok_or(ChallengeParseError("expected a parameter name"))?.to_ascii_lowercase();
            self.skip_ws();
            self.i += 1; // '='
            self.skip_ws();
            let value = match self.peek() {
                Some(b'"') => self.quoted()?,
                // Tolerated although not a token: servers send unquoted URLs
                // (`resource_metadata=https://…`, ToolHive #1406).
                _ => {
                    let start = self.i;
                    while self.peek().is_some_and(|b| b != b',' && b != b' ' && b != b'\t') {
                        self.i += 1;
                    }
                    if self.i == start {
                        return Err(ChallengeParseError("parameter without a value"));
                    }
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned()
                }
            };
            if challenge.param(&name).is_none() {
                challenge.params.push((name, value));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Vec<Challenge> {
        parse_challenges([s]).unwrap()
    }

    fn one(s: &str) -> Challenge {
        let mut all = parse(s);
        assert_eq!(all.len(), 1, "{s}: {all:?}");
        all.remove(0)
    }

    #[test]
    fn greenbytes_cases() {
        assert_eq!(one(r#"Basic realm="foo""#).param("realm"), Some("foo"));
        let c = one(r#"BASIC REALM="foo""#);
        assert_eq!((c.scheme.as_str(), c.param("realm")), ("BASIC", Some("foo")));
        assert_eq!(one(r#"Basic realm = "foo""#).param("realm"), Some("foo"));
        assert_eq!(one(r#"Basic , realm="foo""#).param("realm"), Some("foo"));
        let c = one(r#"Basic realm="foo", bar="xyz",, a=b,,,c=d"#);
        assert_eq!((c.param("bar"), c.param("a"), c.param("c")), (Some("xyz"), Some("b"), Some("d")));
        assert_eq!(one(r#"Basic realm="\f\o\o""#).param("realm"), Some("foo"));
        assert_eq!(one(r#"Basic realm="\"foo\"""#).param("realm"), Some("\"foo\""));
        let two = parse(r#"Basic realm="basic", Newauth realm="newauth""#);
        assert_eq!(two.len(), 2);
        assert_eq!((two[1].scheme.as_str(), two[1].param("realm")), ("Newauth", Some("newauth")));
        let two = parse(r#"Basic realm="basic", Newauth"#);
        assert_eq!(two.len(), 2);
        assert!(two[1].params.is_empty());
        assert_eq!(parse(r#", Basic realm="basic""#).len(), 1);
        let c = one(r#"Newauth realm="apps", type=1, title="Login to \"apps\", now""#);
        assert_eq!(c.param("title"), Some(r#"Login to "apps", now"#));
        let three = parse(r#"Newauth realm="newauth", basic=foo, Basic realm="basic""#);
        assert_eq!(three.len(), 2, "basic= is a parameter, not a scheme");
        assert_eq!(three[0].param("basic"), Some("foo"));
        assert_eq!(three[1].param("realm"), Some("basic"));
        assert_eq!(one(r#"Basic foo="realm=nottherealm", realm="basic""#).param("realm"), Some("basic"));
        assert_eq!(parse("A, B").len(), 2);
        assert!(parse_challenges([r#"Basic realm="unterminated"#]).is_err());
    }

    #[test]
    fn bearer_cases() {
        let c = one("Bearer abc==");
        assert_eq!(c.token68.as_deref(), Some("abc=="));
        let c = one(
            r#"bearer realm="mcp", error="invalid_token", error_description="expired", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp", scope="a b""#,
        );
        assert!(c.is_bearer());
        assert_eq!(c.param("RESOURCE_METADATA"), Some("https://mcp.example/.well-known/oauth-protected-resource/mcp"));
        assert_eq!(c.param("scope"), Some("a b"));
        let c = one("Bearer resource_metadata=https://mcp.example/.well-known/oauth-protected-resource");
        assert_eq!(c.param("resource_metadata"), Some("https://mcp.example/.well-known/oauth-protected-resource"));
        let found = find_bearer([r#"Basic realm="x""#, r#"DPoP algs="ES256", Bearer scope="s1 s2""#]).unwrap();
        assert_eq!(found.param("scope"), Some("s1 s2"));
        assert_eq!(
            one(r#"Bearer scope="first", scope="second""#).param("scope"),
            Some("first"),
            "a repeated parameter is not trusted twice"
        );
        assert!(find_bearer(["Basic realm=x"]).is_none());
    }

    #[test]
    fn renders_in_a_stable_order() {
        let c = BearerChallenge {
            realm: Some("https://idp.example"),
            error: Some(BearerError::InsufficientScope),
            scope: Some("mcp:read mcp:write"),
            resource_metadata: Some("http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp"),
            ..Default::default()
        };
        assert_eq!(
            c.render(),
            r#"Bearer realm="https://idp.example", error="insufficient_scope", scope="mcp:read mcp:write", resource_metadata="http://127.0.0.1:1/.well-known/oauth-protected-resource/mcp""#
        );
    }

    #[test]
    fn hostile_descriptions_cannot_break_the_header() {
        let c = BearerChallenge {
            error: Some(BearerError::InvalidToken),
            error_description: Some("a\"b\\c\r\nSet-Cookie: x"),
            ..Default::default()
        };
        let v = c.render();
        assert!(http::HeaderValue::from_str(&v).is_ok());
        assert_eq!(v, r#"Bearer error="invalid_token", error_description="a'b'c  Set-Cookie: x""#);
    }
}
