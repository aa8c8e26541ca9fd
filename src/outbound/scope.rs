//! Which scope to ask for: MCP 2025-11-25 §Scope Selection Strategy, the step-up union of
//! MCP 2026-07-28 §Step-Up Authorization Flow, and reading the scope a `403
//! insufficient_scope` challenge asks for (RFC 6750 §3.1).

use http::HeaderMap;
use http::header::WWW_AUTHENTICATE;

use crate::oauth::challenge::find_bearer;
use crate::outbound::discover::Discovery;

/// MCP 2025-11-25 §Scope Selection Strategy: explicit scopes; else the challenge's; else the
/// resource's `scopes_supported`; else none. A step-up asks for the union of what was asked
/// before and what the challenge names. `offline_access` is added only where the server
/// lists it (MCP 2026-07-28 §Refresh Tokens).
pub(super) fn select_scope(
    explicit: &[String],
    discovery: &Discovery,
    previous: Option<&str>,
    step_up: Option<&str>,
) -> Option<String> {
    let base: Option<String> = if !explicit.is_empty() {
        Some(explicit.join(" "))
    } else {
        discovery.challenge_scope.clone().or_else(|| discovery.resource_scopes.as_ref().map(|s| s.join(" ")))
    };
    let mut scopes: Vec<String> = Vec::new();
    for s in previous.or(base.as_deref()).into_iter().chain(step_up).flat_map(str::split_whitespace) {
        if !scopes.iter().any(|have| have == s) {
            scopes.push(s.to_owned());
        }
    }
    let offline =
        discovery.server.metadata.scopes_supported.as_ref().is_some_and(|s| s.iter().any(|x| x == "offline_access"));
    if offline && !scopes.is_empty() && !scopes.iter().any(|s| s == "offline_access") {
        scopes.push("offline_access".to_owned());
    }
    (!scopes.is_empty()).then(|| scopes.join(" "))
}

/// The `scope` of a `Bearer error="insufficient_scope"` challenge (empty when it names
/// none); `None` for any other answer.
pub(super) fn insufficient_scope(headers: &HeaderMap) -> Option<String> {
    let lines = headers.get_all(WWW_AUTHENTICATE).iter().filter_map(|v| v.to_str().ok());
    let challenge = find_bearer(lines)?;
    (challenge.param("error") == Some("insufficient_scope"))
        .then(|| challenge.param("scope").unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oauth::metadata::AuthorizationServerMetadata;
    use crate::outbound::discover::AuthServer;
    use url::Url;

    fn discovery(challenge: Option<&str>, resource: Option<&[&str]>, offline: bool) -> Discovery {
        let url = Url::parse("https://as.example/x").unwrap();
        Discovery {
            resource_takes_dpop: false,
            server: AuthServer {
                issuer: Some("https://as.example".into()),
                metadata: AuthorizationServerMetadata {
                    scopes_supported: offline.then(|| vec!["offline_access".to_owned()]),
                    ..Default::default()
                },
                authorization_endpoint: Some(url.clone()),
                no_pkce_s256: false,
                token_endpoint: url,
                registration_endpoint: None,
                device_authorization_endpoint: None,
            },
            challenge_scope: challenge.map(str::to_owned),
            resource_scopes: resource.map(|r| r.iter().map(|s| (*s).to_owned()).collect()),
            published_resource: None,
        }
    }

    #[test]
    fn scope_selection_follows_the_mcp_order() {
        let d = discovery(Some("a b"), Some(&["c"]), false);
        assert_eq!(select_scope(&["x".into()], &d, None, None).as_deref(), Some("x"));
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("a b"), "the challenge is authoritative");
        let d = discovery(None, Some(&["c", "d"]), false);
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("c d"));
        let d = discovery(None, None, false);
        assert_eq!(select_scope(&[], &d, None, None), None, "no scope parameter when nothing defines one");
        assert_eq!(
            select_scope(&[], &d, Some("a b"), Some("b c")).as_deref(),
            Some("a b c"),
            "step-up asks for the union"
        );
        let d = discovery(Some("a"), None, true);
        assert_eq!(select_scope(&[], &d, None, None).as_deref(), Some("a offline_access"));
    }

    #[test]
    fn insufficient_scope_reads_only_that_error() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append(WWW_AUTHENTICATE, v.parse().unwrap());
            }
            h
        };
        let h = headers(&[r#"Bearer error="insufficient_scope", scope="a b""#]);
        assert_eq!(insufficient_scope(&h).as_deref(), Some("a b"));
        let h = headers(&[r#"Basic realm="x""#, r#"Bearer error="insufficient_scope""#]);
        assert_eq!(insufficient_scope(&h).as_deref(), Some(""), "no scope named: an empty step-up");
        assert_eq!(insufficient_scope(&headers(&[r#"Bearer error="invalid_token""#])), None);
        assert_eq!(insufficient_scope(&headers(&[])), None);
    }
}
