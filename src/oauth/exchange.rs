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

/// One token exchange request (RFC 8693 §2.1).
pub(crate) struct ExchangeRequest<'a> {
    pub(crate) subject_token: &'a str,
    /// One of the RFC 8693 §3 URNs.
    pub(crate) subject_token_type: &'a str,
    /// [`ACCESS_TOKEN`] for a token the target gets as a bearer token; an ID-JAG for the
    /// `id-jag` grant ([`super::id_jag`]).
    pub(crate) requested_token_type: &'a str,
    pub(crate) audience: Option<&'a str>,
    /// RFC 8707 / RFC 8693 §2.1 `resource`.
    pub(crate) resource: Option<&'a str>,
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
            ("requested_token_type", self.requested_token_type),
        ];
        if let Some(audience) = self.audience {
            form.push(("audience", audience));
        }
        if let Some(resource) = self.resource {
            form.push(("resource", resource));
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
            requested_token_type: ACCESS_TOKEN,
            audience: Some("https://api.example"),
            resource: None,
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
        let bare = ExchangeRequest {
            subject_token: "s",
            subject_token_type: ACCESS_TOKEN,
            requested_token_type: ACCESS_TOKEN,
            audience: None,
            resource: None,
            scope: None,
        };
        assert_eq!(bare.form().len(), 4, "no empty audience or scope");
    }

    /// Serves one canned answer on 127.0.0.1 and hands back the request it got.
    async fn one_answer(answer: &'static str) -> (url::Url, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            // Bounded: a small form arrives in a few reads.
            for _ in 0..16 {
                let n = s.read(&mut buf).await.unwrap();
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got);
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let len =
                        head.lines().find_map(|l| l.strip_prefix("content-length: ")).map_or(0, |v| v.parse().unwrap());
                    if n == 0 || body.len() >= len {
                        break;
                    }
                }
            }
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{answer}",
                answer.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, task)
    }

    #[tokio::test]
    async fn the_answer_must_be_rfc_8693s_and_the_client_authenticates_as_configured() {
        use secrecy::ExposeSecret;

        use crate::oauth::token::ClientAuth;
        let http = ControlClient::new(None).unwrap();
        let request = ExchangeRequest {
            subject_token: "subj",
            subject_token_type: ACCESS_TOKEN,
            requested_token_type: ACCESS_TOKEN,
            audience: None,
            resource: None,
            scope: None,
        };
        let good = r#"{"access_token":"new","token_type":"Bearer","issued_token_type":"urn:ietf:params:oauth:token-type:access_token","expires_in":60}"#;
        let (url, seen) = one_answer(good).await;
        let auth = ClientAuth::Basic(secrecy::SecretString::from("s3cret".to_owned()));
        let endpoint = TokenEndpoint { url, client_id: "proxy".into(), auth, dpop: None };
        let tokens = exchange(&endpoint, &http, &request).await.unwrap();
        assert_eq!(tokens.access_token.expose_secret(), "new");
        assert!(tokens.expires_at.is_some());
        let seen = seen.await.unwrap();
        // base64("proxy:s3cret")
        assert!(seen.contains("authorization: Basic cHJveHk6czNjcmV0\r\n"), "{seen}");
        let form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange&subject_token=subj\
            &subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token\
            &requested_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Aaccess_token";
        assert!(seen.ends_with(form), "{seen}");

        // A client without an ID or secret sends neither; an answer without issued_token_type
        // or token_type is refused.
        let (url, seen) = one_answer(r#"{"access_token":"new","token_type":"Bearer"}"#).await;
        let endpoint = TokenEndpoint { url, client_id: String::new(), auth: ClientAuth::None, dpop: None };
        let err = exchange(&endpoint, &http, &request).await.err().expect("incomplete");
        assert!(matches!(err, TokenError::Incomplete("issued_token_type")), "{err}");
        let seen = seen.await.unwrap();
        assert!(!seen.contains("client_id") && !seen.contains("authorization:"), "{seen}");
        let (url, _) = one_answer(r#"{"access_token":"new","issued_token_type":"x"}"#).await;
        let endpoint = TokenEndpoint { url, client_id: String::new(), auth: ClientAuth::None, dpop: None };
        let err = exchange(&endpoint, &http, &request).await.err().expect("no token_type");
        assert!(matches!(err, TokenError::Incomplete("token_type")), "{err}");
    }
}
