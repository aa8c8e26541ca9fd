//! OAuth 2.0 Token Exchange (RFC 8693 §2): the request a client sends to trade a subject
//! token for another token, and the checks on the answer. Protocol only: which token is
//! exchanged, and what is cached, is the caller's ([`crate::exchange`]).

use serde_json::Value;

use super::http::ControlClient;
use super::token::{self, TokenEndpoint, TokenError, Tokens};

/// RFC 8693 §2.1 `grant_type`.
pub(crate) const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// RFC 8693 §3 token type identifiers.
pub(crate) const ACCESS_TOKEN: &str = "urn:ietf:params:oauth:token-type:access_token";
pub(crate) const ID_TOKEN: &str = "urn:ietf:params:oauth:token-type:id_token";
pub(crate) const JWT: &str = "urn:ietf:params:oauth:token-type:jwt";

/// One token exchange request (RFC 8693 §2.1). An access token is always requested:
/// it is what the target gets as a bearer token.
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) subject_token: &'a str,
    /// One of the RFC 8693 §3 URNs.
    pub(crate) subject_token_type: &'a str,
    pub(crate) audience: Option<&'a str>,
    /// Space-separated (RFC 6749 §3.3).
    pub(crate) scope: Option<&'a str>,
}

impl ExchangeRequest<'_> {
    /// The form's members, in the order RFC 8693 §2.1 lists them; client authentication
    /// is added by the token endpoint.
    pub(crate) fn form(&self) -> Vec<(&str, &str)> {
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", self.subject_token),
            ("subject_token_type", self.subject_token_type),
            ("requested_token_type", ACCESS_TOKEN),
        ];
        if let Some(audience) = self.audience {
            form.push(("audience", audience));
        }
        if let Some(scope) = self.scope {
            form.push(("scope", scope));
        }
        form
    }
}

/// Sends `request` to `endpoint` and returns the issued token. The answer must carry
/// `token_type` (a bearer token: the proxy sends it as one) and `issued_token_type`, which
/// RFC 8693 §2.2.1 requires and ToolHive checks too.
pub(crate) async fn exchange(
    endpoint: &TokenEndpoint,
    http: &ControlClient,
    request: &ExchangeRequest<'_>,
) -> Result<Tokens, TokenError> {
    let answer = endpoint.post(http, request.form()).await?;
    let tokens = token::parse(&answer)?;
    for member in ["token_type", "issued_token_type"] {
        if answer.body.get(member).and_then(Value::as_str).is_none_or(str::is_empty) {
            return Err(TokenError::Incomplete(member));
        }
    }
    Ok(tokens)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_form_is_rfc_8693s() {
        let req = ExchangeRequest {
            subject_token: "subj",
            subject_token_type: ID_TOKEN,
            audience: Some("https://api.example"),
            scope: Some("read write"),
        };
        assert_eq!(
            req.form(),
            [
                ("grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"),
                ("subject_token", "subj"),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:id_token"),
                ("requested_token_type", "urn:ietf:params:oauth:token-type:access_token"),
                ("audience", "https://api.example"),
                ("scope", "read write"),
            ]
        );
        let bare =
            ExchangeRequest { subject_token: "s", subject_token_type: ACCESS_TOKEN, audience: None, scope: None };
        assert_eq!(bare.form().len(), 4, "no empty audience or scope");
    }
}
