//! `WWW-Authenticate` (RFC 9110 §11.6.1): `parse_challenges`, `find_bearer` and
//! `BearerChallenge::render`.
//!
//! Input: the field value(s), one field line per `\n`-separated line.
//!
//! Invariants:
//! - `find_bearer` is the first Bearer challenge of `parse_challenges` (none on error);
//! - every parsed challenge is well formed (token scheme, lowercase unique parameter names,
//!   never both a token68 and parameters);
//! - parse → canonical render → parse is the identity (the parser loses nothing it kept);
//! - `BearerChallenge::render` of any values is a valid header value that parses back to
//!   one Bearer challenge with exactly those (sanitised) parameters, in order.

use thv::internals::{BearerChallenge, BearerError, Challenge, find_bearer, parse_challenges, sanitise};

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token68_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)
}

/// Renders challenges in the canonical form: every value as a quoted-string.
pub fn render_canonical(challenges: &[Challenge]) -> String {
    let mut out = String::new();
    for (i, c) in challenges.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&c.scheme);
        if let Some(t) = &c.token68 {
            out.push(' ');
            out.push_str(t);
        } else {
            for (j, (name, value)) in c.params.iter().enumerate() {
                out.push_str(if j == 0 { " " } else { ", " });
                out.push_str(name);
                out.push_str("=\"");
                for ch in value.chars() {
                    if ch == '"' || ch == '\\' {
                        out.push('\\');
                    }
                    out.push(ch);
                }
                out.push('"');
            }
        }
    }
    out
}

fn check_well_formed(c: &Challenge) {
    assert!(!c.scheme.is_empty() && c.scheme.bytes().all(is_tchar), "scheme {:?}", c.scheme);
    assert!(c.token68.is_none() || c.params.is_empty(), "token68 and params: {c:?}");
    if let Some(t) = &c.token68 {
        let body = t.trim_end_matches('=');
        assert!(!body.is_empty() && body.bytes().all(is_token68_char), "token68 {t:?}");
    }
    for (i, (name, _)) in c.params.iter().enumerate() {
        assert!(!name.is_empty() && name.bytes().all(is_tchar), "param name {name:?}");
        assert_eq!(name, &name.to_ascii_lowercase(), "param names are lowercased");
        assert!(
            c.params[..i].iter().all(|(n, _)| !n.eq_ignore_ascii_case(name)),
            "a repeated parameter is kept once: {c:?}"
        );
        assert_eq!(c.param(&name.to_ascii_uppercase()), Some(c.params[i].1.as_str()));
    }
}

pub fn run(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();

    let parsed = parse_challenges(lines.iter().copied());
    let bearer = find_bearer(lines.iter().copied());
    let mut values: Vec<String> = Vec::new();
    match &parsed {
        Ok(all) => {
            assert_eq!(bearer.as_ref(), all.iter().find(|c| c.is_bearer()), "find_bearer disagrees with parse");
            for c in all {
                check_well_formed(c);
                values.extend(c.params.iter().map(|(_, v)| v.clone()));
            }
            let canonical = render_canonical(all);
            let again = parse_challenges([canonical.as_str()])
                .unwrap_or_else(|e| panic!("canonical form {canonical:?} does not parse: {e}"));
            assert_eq!(&again, all, "parse(render(parse(x))) != parse(x); canonical form {canonical:?}");
        }
        Err(_) => assert!(bearer.is_none(), "find_bearer found a challenge in an unparsable header"),
    }

    // The proxy's own challenges, built from hostile values: the parsed values, else the
    // raw lines.
    if values.is_empty() {
        values = lines.iter().map(|l| (*l).to_owned()).collect();
    }
    let pick = |i: usize| values.get(i).map(String::as_str);
    let error = match data.first().map(|b| b % 4) {
        Some(1) => Some(BearerError::InvalidRequest),
        Some(2) => Some(BearerError::InvalidToken),
        Some(3) => Some(BearerError::InsufficientScope),
        _ => None,
    };
    let built = BearerChallenge {
        realm: pick(0),
        error,
        error_description: pick(1),
        scope: pick(2),
        resource_metadata: pick(3),
    };
    let rendered = built.render();
    assert!(http::HeaderValue::from_str(&rendered).is_ok(), "render made an invalid header value: {rendered:?}");
    let back = parse_challenges([rendered.as_str()])
        .unwrap_or_else(|e| panic!("our own challenge {rendered:?} does not parse: {e}"));
    assert_eq!(back.len(), 1, "{rendered:?} → {back:?}");
    let c = &back[0];
    assert!(c.is_bearer() && c.token68.is_none());
    let expected: Vec<(String, String)> = [
        ("realm", built.realm.map(sanitise)),
        ("error", built.error.map(|e| e.as_str().to_owned())),
        ("error_description", built.error_description.map(sanitise)),
        ("scope", built.scope.map(sanitise)),
        ("resource_metadata", built.resource_metadata.map(sanitise)),
    ]
    .into_iter()
    .filter_map(|(n, v)| v.map(|v| (n.to_owned(), v)))
    .collect();
    assert_eq!(c.params, expected, "render → parse lost or changed a parameter of {rendered:?}");
}
