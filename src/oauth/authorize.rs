//! The authorization request of the authorization code grant (RFC 6749 §4.1.1), as the
//! URL the user's browser opens: PKCE S256 (RFC 7636 §4.3), `state` (RFC 6749 §10.12), the
//! RFC 8707 `resource`, the scope, and whatever extra parameters the operator configured.
//!
//! Two departures from the RFC that providers ask for, both only on this request (the token
//! requests never carry them):
//! - the scope under another parameter name (Slack's `user_scope`; ToolHive's
//!   `--remote-auth-scope-param-name`, which also leaves the token request alone);
//! - extra parameters (Google's `access_type=offline`, Auth0's `audience`; mcp-remote's
//!   `--authorize-param`). They can never replace a parameter the flow owns: the
//!   configuration refuses those names ([`PROTOCOL_PARAMS`]).

use url::Url;

/// The parameters this request carries for the protocol's sake, never taken from the
/// operator: a different value would break the flow (or its security) in ways that surface
/// as an opaque error at the authorization server.
pub(crate) const PROTOCOL_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "resource",
    "scope",
];

/// What the operator adds to the authorization request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct AuthorizeExtras {
    /// The scope's parameter name instead of `scope`, when set.
    pub(crate) scope_param: Option<String>,
    /// Extra `key=value` parameters, in the order given (values are not secrets: they are
    /// in the URL the browser opens, and so in its history).
    pub(crate) params: Vec<(String, String)>,
}

/// One authorization request.
pub(crate) struct AuthorizeRequest<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) state: &'a str,
    pub(crate) code_challenge: &'a str,
    pub(crate) resource: &'a str,
    /// Space-separated scopes; `None` sends none.
    pub(crate) scope: Option<&'a str>,
}

impl AuthorizeRequest<'_> {
    /// The URL to open: `endpoint` with this request's parameters added to any query it has.
    pub(crate) fn url(&self, endpoint: &Url, extras: &AuthorizeExtras) -> Url {
        let mut url = endpoint.clone();
        {
            let mut q = url.query_pairs_mut();
            q.append_pair("response_type", "code")
                .append_pair("client_id", self.client_id)
                .append_pair("redirect_uri", self.redirect_uri)
                .append_pair("state", self.state)
                .append_pair("code_challenge", self.code_challenge)
                .append_pair("code_challenge_method", "S256")
                .append_pair("resource", self.resource);
            if let Some(scope) = self.scope {
                q.append_pair(extras.scope_param.as_deref().unwrap_or("scope"), scope);
            }
            for (key, value) in &extras.params {
                q.append_pair(key, value);
            }
            // OIDC Core §11: an OpenID provider grants offline_access (a refresh token) only
            // with explicit consent. An operator's own `prompt` says what they want instead.
            let offline = self.scope.is_some_and(|s| s.split(' ').any(|s| s == "offline_access"));
            if offline && !extras.params.iter().any(|(k, _)| k == "prompt") {
                q.append_pair("prompt", "consent");
            }
        }
        url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(scope: Option<&str>) -> AuthorizeRequest<'_> {
        AuthorizeRequest {
            client_id: "cid",
            redirect_uri: "http://localhost:8666/callback",
            state: "st",
            code_challenge: "ch",
            resource: "https://mcp.example/mcp",
            scope,
        }
    }

    fn pairs(url: &Url) -> Vec<(String, String)> {
        url.query_pairs().into_owned().collect()
    }

    #[test]
    fn the_protocol_parameters_and_the_scope() {
        let endpoint = Url::parse("https://as.example/authorize?tenant=t1").unwrap();
        let url = request(Some("a b")).url(&endpoint, &AuthorizeExtras::default());
        let got = pairs(&url);
        let want = [
            ("tenant", "t1"),
            ("response_type", "code"),
            ("client_id", "cid"),
            ("redirect_uri", "http://localhost:8666/callback"),
            ("state", "st"),
            ("code_challenge", "ch"),
            ("code_challenge_method", "S256"),
            ("resource", "https://mcp.example/mcp"),
            ("scope", "a b"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(!pairs(&request(None).url(&endpoint, &AuthorizeExtras::default())).iter().any(|(k, _)| k == "scope"));
    }

    #[test]
    fn the_scope_under_another_name_and_extra_parameters() {
        let endpoint = Url::parse("https://slack.example/oauth/v2/authorize").unwrap();
        let extras = AuthorizeExtras {
            scope_param: Some("user_scope".to_owned()),
            params: vec![("access_type".into(), "offline".into()), ("audience".into(), "https://api.example/".into())],
        };
        let got = pairs(&request(Some("chat:write users:read")).url(&endpoint, &extras));
        let get = |k: &str| got.iter().filter(|(n, _)| n == k).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        assert_eq!(get("user_scope"), ["chat:write users:read"]);
        assert!(get("scope").is_empty(), "the standard name is not sent beside the configured one");
        assert_eq!(get("access_type"), ["offline"]);
        assert_eq!(get("audience"), ["https://api.example/"]);
        assert_eq!(get("state"), ["st"], "the flow's own parameters are still there, once");
        // Without scopes, the renamed parameter is not sent empty either.
        assert!(!pairs(&request(None).url(&endpoint, &extras)).iter().any(|(k, _)| k.contains("scope")));
    }

    #[test]
    fn consent_for_offline_access_unless_the_operator_chose_a_prompt() {
        let endpoint = Url::parse("https://as.example/authorize").unwrap();
        let prompts = |extras: &AuthorizeExtras| {
            pairs(&request(Some("openid offline_access")).url(&endpoint, extras))
                .into_iter()
                .filter(|(k, _)| k == "prompt")
                .map(|(_, v)| v)
                .collect::<Vec<_>>()
        };
        assert_eq!(prompts(&AuthorizeExtras::default()), ["consent"]);
        let chosen = AuthorizeExtras { scope_param: None, params: vec![("prompt".into(), "select_account".into())] };
        assert_eq!(prompts(&chosen), ["select_account"]);
    }
}
