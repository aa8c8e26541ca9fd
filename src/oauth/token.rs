//! The token endpoint (RFC 6749 §4.1.3, §6; OAuth 2.1 §4.1.3, §4.3): code exchange,
//! refresh, the client credentials grant (RFC 6749 §4.4) and the JWT bearer grant
//! (RFC 7523 §2.1), with RFC 8707 `resource` on all, and client authentication as the
//! client was registered (RFC 7591 §2 `token_endpoint_auth_method`) or with a signed
//! assertion (`private_key_jwt`, RFC 7523 §2.2), and with DPoP a proof on every request
//! and one resend after a `use_dpop_nonce` refusal (RFC 9449 §5, §8).

use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;
use url::Url;

use crate::oauth::assertion::{AssertionKey, JWT_BEARER_ASSERTION_TYPE};
use crate::oauth::dpop::{Dpop, Htu, USE_DPOP_NONCE};
use crate::oauth::http::{ControlClient, FetchError, JsonAnswer};

/// `grant_type` of the JWT bearer grant (RFC 7523 §2.1).
pub(crate) const JWT_BEARER_GRANT: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/// How a client authenticates at the token endpoint.
#[derive(Clone)]
pub(crate) enum ClientAuth {
    /// A public client: `client_id` in the form (OAuth 2.1 §2.4), no secret.
    None,
    /// `client_secret_basic` (RFC 6749 §2.3.1).
    Basic(SecretString),
    /// `client_secret_post` (RFC 6749 §2.3.1).
    Post(SecretString),
    /// `private_key_jwt` (RFC 7523 §2.2): a fresh assertion for `audience` on every request.
    PrivateKeyJwt { key: Arc<AssertionKey>, audience: String },
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientAuth::None => f.write_str("none"),
            ClientAuth::Basic(_) => f.write_str("client_secret_basic"),
            ClientAuth::Post(_) => f.write_str("client_secret_post"),
            ClientAuth::PrivateKeyJwt { key, .. } => write!(f, "private_key_jwt ({})", key.alg().name()),
        }
    }
}

impl ClientAuth {
    /// The method for a client with `secret`, registered with `method` (RFC 7591 name).
    pub(crate) fn from_method(method: Option<&str>, secret: Option<SecretString>) -> ClientAuth {
        match (method, secret) {
            (_, None) | (Some("none"), _) => ClientAuth::None,
            (Some("client_secret_post"), Some(s)) => ClientAuth::Post(s),
            (_, Some(s)) => ClientAuth::Basic(s),
        }
    }
}

/// Tokens from a token response. Secrets stay wrapped until they are put on the wire.
#[derive(Clone)]
pub(crate) struct Tokens {
    pub(crate) access_token: SecretString,
    pub(crate) refresh_token: Option<SecretString>,
    /// When the access token expires, if the server said.
    pub(crate) expires_at: Option<Instant>,
    /// Granted scopes, if the server said.
    pub(crate) scope: Option<String>,
    /// `token_type` `DPoP` (RFC 9449 §5): the token is bound to the proof's key and goes
    /// out with the `DPoP` scheme and a proof per request.
    pub(crate) dpop_bound: bool,
}

/// Why a token request failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum TokenError {
    /// The server refused (RFC 6749 §5.2), e.g. `invalid_grant` for a dead refresh token.
    #[error("the token endpoint refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused { status: u16, error: String, description: Option<String> },
    /// A success without an access token (RFC 6749 §5.1 requires one).
    #[error("the token endpoint refused: invalid_response (no access_token in the token response)")]
    NoAccessToken,
    /// A token type other than `Bearer` (RFC 6749 §7.1), or `DPoP` when the request carried
    /// a proof (RFC 9449 §5), which the proxy cannot send.
    #[error("the token endpoint refused: unsupported_token_type ({0})")]
    UnsupportedTokenType(String),
    /// A success without a member the grant requires (RFC 8693 §2.2.1: `token_type` and
    /// `issued_token_type`).
    #[error("the token endpoint refused: invalid_response (no {0} in the token response)")]
    Incomplete(&'static str),
    /// The server could not be asked, or answered nonsense.
    #[error(transparent)]
    Fetch(#[from] FetchError),
}

impl TokenError {
    /// Whether the server said the grant itself is dead (`invalid_grant`, RFC 6749 §5.2): a
    /// new authorization is needed.
    pub(crate) fn is_invalid_grant(&self) -> bool {
        matches!(self, TokenError::Refused { error, .. } if error == "invalid_grant")
    }
}

/// Ends a grant's form with `scope` (when asked for) and RFC 8707's `resource`, in that
/// order: the one tail every grant shares (the device flow's requests too).
pub(crate) fn scope_and_resource<'a>(
    form: &mut Vec<(&'static str, &'a str)>,
    scope: Option<&'a str>,
    resource: Option<&'a str>,
) {
    form.extend(scope.map(|s| ("scope", s)));
    form.extend(resource.map(|r| ("resource", r)));
}

/// A token endpoint and the client that talks to it.
#[derive(Clone, Debug)]
pub(crate) struct TokenEndpoint {
    pub(crate) url: Url,
    pub(crate) client_id: String,
    pub(crate) auth: ClientAuth,
    /// With DPoP on, every request carries a proof of this key (RFC 9449 §5).
    pub(crate) dpop: Option<Arc<Dpop>>,
}

impl TokenEndpoint {
    /// Redeems an authorization code (with the PKCE verifier).
    pub(crate) async fn exchange_code(
        &self,
        http: &ControlClient,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
        resource: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let mut form = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        scope_and_resource(&mut form, None, resource);
        self.request(http, form).await
    }

    /// Uses a refresh token (RFC 6749 §6), with the same `resource` (RFC 8707 §2.2).
    pub(crate) async fn refresh(
        &self,
        http: &ControlClient,
        refresh_token: &SecretString,
        resource: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let mut form = vec![("grant_type", "refresh_token"), ("refresh_token", refresh_token.expose_secret())];
        scope_and_resource(&mut form, None, resource);
        let mut tokens = self.request(http, form).await?;
        // Servers that do not rotate refresh tokens omit them; the old one stays valid.
        if tokens.refresh_token.is_none() {
            tokens.refresh_token = Some(refresh_token.clone());
        }
        Ok(tokens)
    }

    /// The client credentials grant (RFC 6749 §4.4): the client's own authentication is
    /// the grant.
    pub(crate) async fn client_credentials(
        &self,
        http: &ControlClient,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let mut form = vec![("grant_type", "client_credentials")];
        scope_and_resource(&mut form, scope, resource);
        self.request(http, form).await
    }

    /// The JWT bearer grant (RFC 7523 §2.1): `assertion` is the grant, the client
    /// authenticates (or not) as configured.
    pub(crate) async fn jwt_bearer(
        &self,
        http: &ControlClient,
        assertion: &SecretString,
        scope: Option<&str>,
        resource: Option<&str>,
    ) -> Result<Tokens, TokenError> {
        let mut form = vec![("grant_type", JWT_BEARER_GRANT), ("assertion", assertion.expose_secret())];
        scope_and_resource(&mut form, scope, resource);
        self.request(http, form).await
    }

    async fn request(&self, http: &ControlClient, form: Vec<(&str, &str)>) -> Result<Tokens, TokenError> {
        parse_bound(&self.post(http, form).await?, self.dpop.is_some())
    }

    /// POSTs a token request with this client's authentication, and returns the answer
    /// whatever its status (for grants that read more of it than [`parse`] does). A client
    /// without an ID (RFC 8693 servers that trust the subject token alone, such as
    /// Google's STS) sends none.
    /// With DPoP on, the request carries a proof, and a `use_dpop_nonce` refusal (RFC 9449
    /// §8) is answered by one resend with the server's nonce.
    pub(crate) async fn post(&self, http: &ControlClient, form: Vec<(&str, &str)>) -> Result<JsonAnswer, TokenError> {
        let Some(dpop) = &self.dpop else { return self.post_to(&self.url, http, form).await };
        let to = Htu::from_url(&self.url);
        let answer = self.post_once(&self.url, http, form.clone(), Some(&dpop.proof("POST", &to, None))).await?;
        let challenged = answer.status == 400
            && answer.body.get("error").and_then(Value::as_str) == Some(USE_DPOP_NONCE)
            && answer.dpop_nonce.is_some();
        if let Some(nonce) = &answer.dpop_nonce {
            dpop.remember_nonce(&to.origin, nonce);
        }
        if !challenged {
            return Ok(answer);
        }
        tracing::debug!("the token endpoint asks for a DPoP nonce; sending again with it");
        let answer = self.post_once(&self.url, http, form, Some(&dpop.proof("POST", &to, None))).await?;
        if let Some(nonce) = &answer.dpop_nonce {
            dpop.remember_nonce(&to.origin, nonce);
        }
        Ok(answer)
    }

    /// POSTs `form` to another endpoint of the same server with this client's
    /// authentication: the device authorization endpoint takes it as the token endpoint
    /// does (RFC 8628 §3.1). No DPoP proof: that request yields no token (RFC 9449 §5).
    pub(crate) async fn post_to(
        &self,
        url: &Url,
        http: &ControlClient,
        form: Vec<(&str, &str)>,
    ) -> Result<JsonAnswer, TokenError> {
        self.post_once(url, http, form, None).await
    }

    async fn post_once(
        &self,
        url: &Url,
        http: &ControlClient,
        mut form: Vec<(&str, &str)>,
        proof: Option<&str>,
    ) -> Result<JsonAnswer, TokenError> {
        let assertion;
        let basic = match &self.auth {
            // A public client without an id (a JWT bearer grant needs none, RFC 7523 §3.1)
            // sends none.
            ClientAuth::None if self.client_id.is_empty() => None,
            ClientAuth::None => {
                if !self.client_id.is_empty() {
                    form.push(("client_id", &self.client_id));
                }
                None
            }
            ClientAuth::PrivateKeyJwt { key, audience } => {
                assertion = key.client_assertion(&self.client_id, audience);
                form.push(("client_id", &self.client_id));
                form.push(("client_assertion_type", JWT_BEARER_ASSERTION_TYPE));
                form.push(("client_assertion", &assertion));
                None
            }
            ClientAuth::Post(secret) => {
                form.push(("client_id", &self.client_id));
                form.push(("client_secret", secret.expose_secret()));
                None
            }
            ClientAuth::Basic(secret) => Some((self.client_id.as_str(), secret.expose_secret())),
        };
        Ok(http.post_form_dpop(url, &form, basic, proof).await?)
    }
}

/// A token endpoint's refusal (RFC 6749 §5.2): any answer that is not a 2xx.
pub(crate) fn refusal(answer: &JsonAnswer) -> Result<(), TokenError> {
    if (200..300).contains(&answer.status) {
        return Ok(());
    }
    let text = |k: &str| answer.body.get(k).and_then(Value::as_str).map(str::to_owned);
    Err(TokenError::Refused {
        status: answer.status,
        error: text("error").unwrap_or_else(|| format!("HTTP {}", answer.status)),
        description: text("error_description").map(|d| d.chars().take(200).collect()),
    })
}

/// The tokens of a token endpoint's answer (RFC 6749 §5.1), or its refusal (§5.2).
pub(crate) fn parse(answer: &JsonAnswer) -> Result<Tokens, TokenError> {
    parse_bound(answer, false)
}

/// [`parse`] for a request that carried a DPoP proof (`proof_sent`): a `DPoP` token is
/// accepted only then (RFC 9449 §5). A `Bearer` answer to a proof is a server that does
/// not bind tokens; the token is used as a bearer token (RFC 9449 §7.1).
pub(crate) fn parse_bound(answer: &JsonAnswer, proof_sent: bool) -> Result<Tokens, TokenError> {
    refusal(answer)?;
    let text = |k: &str| answer.body.get(k).and_then(Value::as_str).map(str::to_owned);
    let access = text("access_token").filter(|t| !t.is_empty()).ok_or(TokenError::NoAccessToken)?;
    let mut dpop_bound = false;
    if let Some(kind) = text("token_type") {
        if proof_sent && kind.eq_ignore_ascii_case("dpop") {
            dpop_bound = true;
        } else if !kind.eq_ignore_ascii_case("bearer") {
            return Err(TokenError::UnsupportedTokenType(kind));
        }
    }
    let expires_in = seconds(&answer.body, "expires_in");
    Ok(Tokens {
        access_token: SecretString::from(access),
        refresh_token: text("refresh_token").filter(|t| !t.is_empty()).map(SecretString::from),
        expires_at: expires_in.map(|s| Instant::now() + Duration::from_secs(s)),
        scope: text("scope"),
        dpop_bound,
    })
}

/// A number of seconds in an answer (`expires_in`, `interval`): a JSON number, or a string
/// holding one, which some servers send.
pub(crate) fn seconds(body: &Value, key: &str) -> Option<u64> {
    body.get(key).and_then(|v| v.as_u64().or_else(|| v.as_str().and_then(|s| s.trim().parse().ok())))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A token endpoint on 127.0.0.1 that answers one request with a token and hands back
    /// the raw request (head and form body).
    async fn capturing() -> (Url, tokio::sync::oneshot::Receiver<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Bounded: until the head and the body its content-length announces are in.
            for _ in 0..64 {
                let n = stream.read(&mut buf).await.unwrap();
                request.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let body = r#"{"access_token":"at","token_type":"Bearer","expires_in":60}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
            let _ = tx.send(String::from_utf8_lossy(&request).to_string());
        });
        (url, rx)
    }

    /// The client credentials grant with each client authentication: where the secret goes
    /// (Authorization header or form, never both), the private_key_jwt fields, and a public
    /// client without an id sending none.
    #[tokio::test]
    async fn client_authentication_methods_on_the_wire() {
        let http = ControlClient::new(None).unwrap();
        let key = {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let der = aws_lc_rs::signature::EcdsaKeyPair::generate_pkcs8(
                &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &rng,
            )
            .unwrap();
            let pem = format!(
                "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
                base64::engine::general_purpose::STANDARD.encode(der.as_ref())
            );
            Arc::new(AssertionKey::from_pem(pem.as_bytes(), None).unwrap())
        };
        let cases = [
            ("c", ClientAuth::Basic(SecretString::from("s:1"))),
            ("c", ClientAuth::Post(SecretString::from("s:1"))),
            ("c", ClientAuth::PrivateKeyJwt { key, audience: "https://as.example".into() }),
            ("", ClientAuth::None),
        ];
        for (id, auth) in cases {
            let (url, seen) = capturing().await;
            let method = format!("{auth:?}");
            let endpoint = TokenEndpoint { url, client_id: id.into(), auth, dpop: None };
            let tokens =
                endpoint.client_credentials(&http, Some("a b"), Some("https://mcp.example/mcp")).await.unwrap();
            assert_eq!(tokens.access_token.expose_secret(), "at");
            let request = seen.await.unwrap();
            let (head, body) = request.split_once("\r\n\r\n").unwrap();
            let form: Vec<(String, String)> = url::form_urlencoded::parse(body.as_bytes()).into_owned().collect();
            let get = |k: &str| form.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
            let authorization = head.lines().find_map(|l| l.strip_prefix("authorization: ").map(str::to_owned));
            assert_eq!(get("grant_type"), Some("client_credentials"));
            assert_eq!((get("scope"), get("resource")), (Some("a b"), Some("https://mcp.example/mcp")));
            match method.as_str() {
                "client_secret_basic" => {
                    // RFC 6749 §2.3.1: form-encoded before base64 (":" becomes %3A).
                    let expected = base64::engine::general_purpose::STANDARD.encode("c:s%3A1");
                    assert_eq!(authorization, Some(format!("Basic {expected}")));
                    assert_eq!((get("client_id"), get("client_secret")), (None, None));
                }
                "client_secret_post" => {
                    assert_eq!(authorization, None);
                    assert_eq!((get("client_id"), get("client_secret")), (Some("c"), Some("s:1")));
                }
                "private_key_jwt (ES256)" => {
                    assert_eq!(authorization, None);
                    assert_eq!(get("client_assertion_type"), Some(JWT_BEARER_ASSERTION_TYPE));
                    assert_eq!(get("client_assertion").map(|a| a.split('.').count()), Some(3));
                    assert_eq!((get("client_id"), get("client_secret")), (Some("c"), None));
                }
                "none" => {
                    assert_eq!(authorization, None);
                    assert_eq!(get("client_id"), None, "no id to send");
                }
                other => panic!("{other}"),
            }
        }
    }
}

#[cfg(test)]
mod dpop_tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::oauth::dpop::DpopKey;
    use crate::oauth::dpop::tests::verify;

    fn answer(body: serde_json::Value) -> JsonAnswer {
        JsonAnswer { status: 200, body, max_age: None, dpop_nonce: None }
    }

    /// `DPoP` is accepted only as the answer to a request that carried a proof (RFC 9449
    /// §5); `Bearer` always (a server that does not bind); anything else never.
    #[test]
    fn token_type_dpop_only_with_a_proof() {
        let with = |kind: &str| answer(serde_json::json!({"access_token": "a", "token_type": kind}));
        assert!(parse_bound(&with("DPoP"), true).unwrap().dpop_bound);
        assert!(parse_bound(&with("dpop"), true).unwrap().dpop_bound, "case-insensitive");
        assert!(matches!(parse_bound(&with("DPoP"), false), Err(TokenError::UnsupportedTokenType(_))));
        assert!(matches!(parse(&with("DPoP")), Err(TokenError::UnsupportedTokenType(_))));
        assert!(!parse_bound(&with("Bearer"), true).unwrap().dpop_bound);
        assert!(matches!(parse_bound(&with("mac"), true), Err(TokenError::UnsupportedTokenType(_))));
    }

    /// Reads one request (head and its content-length body) from a connection.
    async fn read_request(stream: &mut tokio::net::TcpStream) -> String {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        // Bounded: until the head and the body its content-length announces are in.
        for _ in 0..64 {
            let n = stream.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&request).to_string();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                    .and_then(|v| v.parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    break;
                }
            }
            if n == 0 {
                break;
            }
        }
        String::from_utf8_lossy(&request).to_string()
    }

    /// A token endpoint that asks for a nonce (RFC 9449 §8) until the proof carries it,
    /// then issues a DPoP token; it records each request's proof.
    #[tokio::test]
    async fn an_authorization_server_nonce_is_honoured_with_one_resend() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/token", listener.local_addr().unwrap())).unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let mut proofs = Vec::new();
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().await.unwrap();
                let request = read_request(&mut stream).await;
                let proof =
                    request.lines().find_map(|l| l.strip_prefix("dpop: ").map(str::to_owned)).unwrap_or_default();
                let has_nonce = !proof.is_empty() && verify(&proof).1["nonce"] == "as-nonce-1";
                proofs.push(proof);
                let (status, body) = if has_nonce {
                    ("200 OK", r#"{"access_token":"at","token_type":"DPoP","expires_in":60}"#)
                } else {
                    ("400 Bad Request", r#"{"error":"use_dpop_nonce"}"#)
                };
                let head = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ndpop-nonce: as-nonce-1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(format!("{head}{body}").as_bytes()).await;
            }
            let _ = tx.send(proofs);
        });
        let dpop = Arc::new(Dpop::new(DpopKey::generate()));
        let endpoint =
            TokenEndpoint { url: url.clone(), client_id: "c".into(), auth: ClientAuth::None, dpop: Some(dpop.clone()) };
        let http = ControlClient::new(None).unwrap();
        let tokens = endpoint.client_credentials(&http, None, None).await.unwrap();
        assert!(tokens.dpop_bound);
        let proofs = rx.await.unwrap();
        assert_eq!(proofs.len(), 2, "one request, one resend");
        let (first, second) = (verify(&proofs[0]).1, verify(&proofs[1]).1);
        assert!(first.get("nonce").is_none());
        assert_eq!(second["nonce"], "as-nonce-1");
        for claims in [&first, &second] {
            assert_eq!((claims["htm"].as_str(), claims["htu"].as_str()), (Some("POST"), Some(url.as_str())));
            assert!(claims.get("ath").is_none(), "no ath at the token endpoint");
        }
        assert_ne!(first["jti"], second["jti"]);
    }
}
